"""Maintenance: keep the newest ``maintenance.retention_runs`` runs of every run-stamped table,
OPTIMIZE every table (compaction, and liquid clustering where the table declares it), and VACUUM
files unreferenced for ``maintenance.vacuum_hours`` (never under Delta's safe 7 days, so running
readers and time travel within a week keep working).

Tables upserted in place (items, posters, ratings, item_embeddings) and the whole-table
``item_categories`` hold no old runs; they are optimized and vacuumed only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.storage.tables import retry_on_conflict, sql_str, table_exists

# Tables that keep every run's rows (replaced per run id): retention applies to them.
RUN_TABLES = (S.RECOMMENDATIONS, S.NEW_ITEM_RECOMMENDATIONS, S.EVALUATION, S.ITEM_NEIGHBORS, S.CLASSIFIER_METRICS,
              S.QUARANTINE)


@dataclass
class MaintenanceReport:
    run_id: str
    rows_before: int = 0
    rows_deleted: int = 0
    runs_dropped: dict[str, list[str]] = field(default_factory=dict)
    optimized: list[str] = field(default_factory=list)
    vacuumed: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.rows_before

    @property
    def rows_out(self) -> int:
        return self.rows_before - self.rows_deleted

    def lines(self) -> list[str]:
        dropped = {t: len(r) for t, r in self.runs_dropped.items() if r}
        return [f"retention: {self.rows_deleted} rows of {sum(dropped.values())} old runs deleted "
                f"({', '.join(f'{t} {n}' for t, n in dropped.items()) or 'nothing older than the kept runs'}); "
                f"optimized {len(self.optimized)} tables, vacuumed {len(self.vacuumed)}"]


def runs_to_drop(run_ids: list[str], keep: int) -> list[str]:
    """All but the ``keep`` newest run ids (run ids sort by date: the default is the run date)."""
    return sorted(set(run_ids), reverse=True)[keep:]


def run_maintenance(spark: SparkSession, cfg: Config) -> MaintenanceReport:
    mc = cfg.maintenance
    report = MaintenanceReport(run_id=cfg.run_id)
    for name in S.TABLE_SCHEMAS:
        full = cfg.storage.table(name)
        if not table_exists(spark, cfg.storage, name):
            continue
        rows = spark.table(full).count()
        report.rows_before += rows
        if name in RUN_TABLES:
            ids = [r[0] for r in spark.table(full).select(S.RUN_ID).distinct().collect()]
            drop = runs_to_drop(ids, mc.retention_runs)
            report.runs_dropped[name] = drop
            if drop:
                predicate = F.col(S.RUN_ID).isin(drop)
                deleted = spark.table(full).filter(predicate).count()
                retry_on_conflict(full, lambda: DeltaTable.forName(spark, full).delete(
                    f"{S.RUN_ID} IN ({', '.join(sql_str(r) for r in drop)})"))
                report.rows_deleted += deleted
        if mc.optimize:
            retry_on_conflict(full, lambda: spark.sql(f"OPTIMIZE {full}").collect())
            report.optimized.append(name)
        DeltaTable.forName(spark, full).vacuum(float(mc.vacuum_hours))
        report.vacuumed.append(name)
    return report
