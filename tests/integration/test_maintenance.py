"""The maintenance stage: retention keeps the newest runs, OPTIMIZE runs (clustering the
recommendations), VACUUM keeps time travel within its safe window, and the counts add up."""
from __future__ import annotations

from typing import Callable

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.stages.maintenance import RUN_TABLES, run_maintenance, runs_to_drop
from hybridrec.storage.tables import ensure_table
from tests.integration.test_faults import recs


def test_runs_to_drop_keeps_the_newest() -> None:
    assert runs_to_drop(["2026-11-02", "2026-11-01", "2026-11-03", "2026-11-01"], 2) == ["2026-11-01"]
    assert runs_to_drop(["a"], 5) == []


@pytest.mark.stage
def test_retention_optimize_and_a_safe_vacuum(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg("maintenance.retention_runs=2")
    table = ensure_table(spark, cfg.storage, S.RECOMMENDATIONS)
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        recs(spark, day).write.format("delta").mode("append").saveAsTable(table)
    before = DeltaTable.forName(spark, table).history(1).first()["version"]
    report = run_maintenance(spark, cfg)
    runs = sorted(r[0] for r in spark.table(table).select(S.RUN_ID).distinct().collect())
    assert runs == ["2026-11-02", "2026-11-03"]
    assert report.runs_dropped[S.RECOMMENDATIONS] == ["2026-11-01"] and report.rows_deleted == 40
    assert report.rows_in == 120 and report.rows_out == 80
    ops = [r["operation"] for r in DeltaTable.forName(spark, table).history().collect()]
    assert "DELETE" in ops and "OPTIMIZE" in ops
    assert S.RECOMMENDATIONS in report.optimized and S.RECOMMENDATIONS in report.vacuumed
    # VACUUM kept the files younger than 7 days: the table as it was before maintenance still reads
    old = spark.read.format("delta").option("versionAsOf", before).table(table)
    assert old.count() == 120
    # the recommendations table is liquid-clustered by run and customer
    detail = spark.sql(f"DESCRIBE DETAIL {table}").first()
    assert list(detail["clusteringColumns"]) == [S.RUN_ID, S.CUSTOMER_ID]
    assert set(report.runs_dropped) <= set(RUN_TABLES)


def test_an_unsafe_vacuum_retention_is_a_config_error(make_cfg: Callable[..., Config]) -> None:
    with pytest.raises(UserError, match="maintenance.vacuum_hours.*at least 168"):
        make_cfg("maintenance.vacuum_hours=1")
