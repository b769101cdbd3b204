"""Faults and concurrency on the shared session: Delta conflicts are retried and never mix runs,
reruns are no-ops, a new run appends, an older run date is written (not skipped), and the fault
hook fails exactly a task's first attempt. (The driver kill, the second local run and the cluster's
task faults and lost worker are in tests/integration/test_cli.py, on the pipeline's own runs.)"""
from __future__ import annotations

import threading
from typing import Callable

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.storage import tables
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.storage.tables import ensure_table, replace_rows, retry_on_conflict, sql_str

COLS = [S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE]


def recs(spark: SparkSession, run: str, offset: int = 0, n: int = 40) -> DataFrame:
    return spark.range(n).select(
        (F.col("id") % 10).alias(S.CUSTOMER_ID), (F.col("id") / 10 + 1).cast("int").alias(S.RANK),
        (F.col("id") + offset).alias(S.ITEM_ID), (F.col("id") * 0.5).alias(S.SCORE),
        F.lit(None).cast("long").alias(S.BECAUSE_ITEM_ID), F.lit("neighbors").alias(S.SOURCE),
        F.lit(run).alias(S.RUN_ID))


def test_retry_on_conflict_retries_the_specific_delta_classes_then_names_the_table() -> None:
    from delta.exceptions import ConcurrentAppendException, ConcurrentDeleteReadException

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise (ConcurrentAppendException if len(calls) == 1 else ConcurrentDeleteReadException)("conflict")
        return "done"

    before = tables.conflicts_retried
    assert retry_on_conflict("db.t", flaky, attempts=3) == "done" and len(calls) == 3
    assert tables.conflicts_retried == before + 2

    def always() -> None:
        raise ConcurrentAppendException("conflict")

    with pytest.raises(UserError, match=r"table db.t: concurrent writes kept conflicting \(ConcurrentAppendException\) "
                                        r"after 2 attempts"):
        retry_on_conflict("db.t", always, attempts=2)

    def other() -> None:
        raise ValueError("not a conflict")

    with pytest.raises(ValueError):  # anything else is not retried
        retry_on_conflict("db.t", other)


@pytest.mark.stage
def test_concurrent_writers_of_one_table_never_mix_or_double_runs(spark: SparkSession,
                                                                   make_cfg: Callable[..., Config]) -> None:
    """Six writers at once: three replace run a with the same rows, three write runs b, c, d."""
    cfg = make_cfg()
    table = ensure_table(spark, cfg.storage, S.RECOMMENDATIONS)
    jobs = [("a", 0), ("a", 0), ("b", 100), ("a", 0), ("c", 200), ("d", 300)]
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def write(run: str, offset: int) -> None:
        try:
            start.wait()
            replace_rows(spark, table, recs(spark, run, offset), f"{S.RUN_ID} = {sql_str(run)}", compare_cols=COLS)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    got = spark.table(table)
    assert got.count() == 4 * 40
    assert got.groupBy(S.RUN_ID, S.CUSTOMER_ID, S.RANK).count().filter("count > 1").isEmpty()  # nothing doubled
    for run, offset in (("a", 0), ("b", 100), ("c", 200), ("d", 300)):
        mine = got.filter(F.col(S.RUN_ID) == run).select(*COLS)
        want = recs(spark, run, offset).select(*COLS)
        assert mine.exceptAll(want).isEmpty() and want.exceptAll(mine).isEmpty(), run  # never mixed


@pytest.mark.stage
def test_idempotency_hazards(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    """Same run id twice: no new version. A new run appends. An older run date runs and is written
    (a backfill), and the latest view keeps showing the newest run date."""
    from hybridrec.stages.recommend import run_recommend
    from tests.integration.test_recommend import load_world
    from tests.unit.test_scoring import random_world

    _, NN, R = random_world(3, customers=12, grid=True)
    cfg = make_cfg("recommend.top_n=3", "run.id=2026-11-02", "run.date=2026-11-02")
    load_world(spark, cfg, NN, R, "2026-11-02")
    first = run_recommend(spark, cfg)
    history = lambda: spark.sql(f"DESCRIBE HISTORY {cfg.table(S.RECOMMENDATIONS)}").count()
    versions = history()
    run_recommend(spark, cfg)
    assert history() == versions  # same run again: a no-op
    older = make_cfg("recommend.top_n=3", "run.id=2026-11-01", "run.date=2026-11-01", database=cfg.storage.database)
    load_world(spark, older, NN, R, "2026-11-01")
    back = run_recommend(spark, older)
    assert history() == versions + 1 and back.rows == first.rows  # the backfill is written, not skipped
    table = spark.table(cfg.table(S.RECOMMENDATIONS))
    assert {r[0] for r in table.select(S.RUN_ID).distinct().collect()} == {"2026-11-01", "2026-11-02"}
    latest = spark.table(cfg.table(S.RECOMMENDATIONS_LATEST)).select(S.RUN_ID).distinct().collect()
    assert [r[0] for r in latest] == ["2026-11-02"]


def test_the_fault_hook_fails_only_first_attempts(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off unless set; when set, the first attempt of each task raises (Spark's retry is what
    tests/integration/test_cli.py exercises on the standalone cluster)."""
    from hybridrec.runtime.faults import ENV, maybe_fail

    maybe_fail("embed")  # unset: nothing happens (and outside a task too)
    monkeypatch.setenv(ENV, "embed:raise")
    maybe_fail("embed")  # on the driver (no task): nothing happens

    def run(batches):  # type: ignore[no-untyped-def]
        from hybridrec.runtime.faults import maybe_fail as fail

        fail("embed")
        yield from batches

    # Python workers get the variable through the context's executor environment (set per UDF)
    env = spark.sparkContext.environment
    try:
        env[ENV] = "embed:raise"
        # local[2] allows no retry: the injected fault surfaces as the task's error
        with pytest.raises(Exception, match="injected fault in stage embed"):
            spark.range(4, numPartitions=2).mapInPandas(run, "id long").collect()
        env[ENV] = "similarity:raise"
        assert spark.range(4, numPartitions=2).mapInPandas(run, "id long").count() == 4  # other stages unaffected
    finally:
        env.pop(ENV, None)


def test_arrow_batches_are_capped_inside_the_block_and_the_setting_restored(spark: SparkSession) -> None:
    from hybridrec.runtime.guards import ARROW_BATCH_ROWS, arrow_batch_rows

    @F.pandas_udf("long")  # type: ignore[call-overload]
    def size(s: pd.Series) -> pd.Series:
        return pd.Series([len(s)] * len(s))

    before = spark.conf.get(ARROW_BATCH_ROWS, None)
    df = spark.range(0, 1000, 1, numPartitions=1)
    with arrow_batch_rows(spark, 64):
        inside = max(r[0] for r in df.select(size(F.col("id"))).collect())
    assert inside == 64 and spark.conf.get(ARROW_BATCH_ROWS, None) == before
    outside = max(r[0] for r in df.select(size(F.col("id"))).collect())
    assert outside > 64
