"""The embedded local session: Delta on the JVM, not on the Python workers' import path."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pandas as pd
import pytest
from pyspark.sql import SparkSession

if TYPE_CHECKING:
    from hybridrec.config import Config


def test_python_workers_import_no_jar_but_delta_works(spark: SparkSession, tmp_path: object) -> None:
    from hybridrec.runtime.session import drop_jar_python_includes

    def worker_path(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import sys

        for _ in batches:
            yield pd.DataFrame({"entry": [p for p in sys.path if p.lower().endswith(".jar") and "delta" in p] or [""]})

    entries = {r["entry"] for r in spark.range(0, 4, 1, 4).mapInPandas(worker_path, "entry string").collect()}
    assert entries == {""}  # every task's worker: no Delta jar (nor its 32 dependencies) on sys.path
    assert drop_jar_python_includes(spark) == 0  # build_session already dropped them
    assert "delta-spark" in str(spark.sparkContext._jsc.sc().listJars())  # the JVM keeps them
    path = str(tmp_path) + "/t"
    spark.range(3).write.format("delta").save(path)
    assert spark.read.format("delta").load(path).count() == 3


def test_a_table_from_an_earlier_release_gains_the_new_nullable_columns(spark: SparkSession,
                                                                        make_cfg: Callable[..., "Config"]) -> None:
    """item_categories as the first release created it (no model_version): ensure_table adds the
    column, the old rows read null; a table lacking a required column stops with one line."""
    from pyspark.sql.types import StructType

    from hybridrec import schemas as S
    from hybridrec.errors import UserError
    from hybridrec.storage.tables import ensure_table

    cfg = make_cfg()
    old = StructType([f for f in S.ITEM_CATEGORIES_SCHEMA.fields if f.name != S.MODEL_VERSION])
    full = ensure_table(spark, cfg.storage, S.ITEM_CATEGORIES, old)
    spark.sql(f"INSERT INTO {full} VALUES (7, map('Drama', 0.5F), array('Drama'), array(0.1F), true, 'train', "
              "'/m/head.keras', 'r0', timestamp'2026-01-01 00:00:00')")
    assert S.MODEL_VERSION not in spark.table(full).columns
    assert ensure_table(spark, cfg.storage, S.ITEM_CATEGORIES) == full
    rows = spark.table(full).select(S.ITEM_ID, S.MODEL_VERSION).collect()
    assert [(r[S.ITEM_ID], r[S.MODEL_VERSION]) for r in rows] == [(7, None)]
    comment = {f.name: f.metadata.get("comment") for f in spark.table(full).schema.fields}[S.MODEL_VERSION]
    assert comment and "MLflow" in comment

    broken = ensure_table(spark, cfg.storage, "not_ours", StructType(old.fields[:2]))
    with pytest.raises(UserError, match=r"lacks the required column\(s\) predicted_genres.*incompatible"):
        ensure_table(spark, cfg.storage, "not_ours", StructType(old.fields[:3]))
    assert spark.table(broken).columns == [S.ITEM_ID, S.GENRE_PROBS]


def test_the_first_run_resolves_the_jars_once_into_a_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capfd: pytest.CaptureFixture[str],
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Ivy's ~90 lines go to a log file and the run prints one line; later runs resolve nothing; a
    manifest whose jars have gone resolves again; an unresolvable coordinate is one line naming the log."""
    import logging


    from hybridrec.errors import UserError
    from hybridrec.runtime import jars as J
    from hybridrec.runtime.session import delta_maven_coordinates

    monkeypatch.setenv("HYBRIDREC_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="hybridrec.runtime.jars")
    coords = delta_maven_coordinates()
    first = J.resolved_jars(coords, {"spark.sql.shuffle.partitions": "3"})  # a non-Ivy key changes nothing
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing of Ivy's reaches the terminal
    lines = [r.getMessage() for r in caplog.records if r.name == "hybridrec.runtime.jars"]
    assert len(lines) == 1 and "33 jars" in lines[0] and ".log" in lines[0], lines
    logs = list((tmp_path / "cache" / "jars").glob("*.log"))
    assert len(logs) == 1 and "delta-spark_4.0_2.13" in logs[0].read_text()
    assert len(first) == 33 and all(Path(j).is_file() for j in first)
    assert any(Path(j).name.startswith("io.delta_delta-spark_4.0_2.13-") for j in first)

    caplog.clear()
    assert J.resolved_jars(coords, {}) == first  # the manifest: no child process, no line
    assert not [r for r in caplog.records if r.name == "hybridrec.runtime.jars"]

    manifest = next((tmp_path / "cache" / "jars").glob("*.txt"))
    manifest.write_text(manifest.read_text() + str(tmp_path / "gone.jar") + "\n")
    assert J.read_manifest(manifest) is None
    assert J.resolved_jars(coords, {}) == first  # resolved again
    assert [r for r in caplog.records if r.name == "hybridrec.runtime.jars"]

    with pytest.raises(UserError, match=r"could not resolve the jars io\.delta:no-such-artifact_2\.13:0\.0\.1 .*"
                                        r"the resolution log is .*\.log$") as exc:
        J.resolved_jars(["io.delta:no-such-artifact_2.13:0.0.1"], {})
    assert "\n" not in str(exc.value)


def test_customer_partitions_default_to_the_larger_of_parallelism_and_shuffle_partitions(spark: SparkSession) -> None:
    from hybridrec.runtime.batches import default_partitions

    before = spark.conf.get("spark.sql.shuffle.partitions")
    base = spark.sparkContext.defaultParallelism
    try:
        spark.conf.set("spark.sql.shuffle.partitions", str(base + 10))
        assert default_partitions(spark) == base + 10
        spark.conf.set("spark.sql.shuffle.partitions", "1")
        assert default_partitions(spark) == base
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", str(before))
