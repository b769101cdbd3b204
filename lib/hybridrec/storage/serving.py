"""``recommendations_current``: the serving copy of the newest lists, one row per (customer, rank).

Each run MERGEs its lists in: a row whose item, score, "because" item or source changed is
updated, a new (customer, rank) inserted, and a (customer, rank) the run no longer has deleted;
unchanged rows are not touched. Delta's Change Data Feed is on for the table, so
``table_changes('<catalog>.<schema>.recommendations_current', <version>)`` gives an online store
exactly what changed since it last synced. A backfill (a run older than the newest run in
``recommendations``) leaves the serving copy alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import StorageConf
from hybridrec.storage.tables import ensure_rank_bound, ensure_table, retry_on_conflict

KEY = (S.CUSTOMER_ID, S.RANK)
COMPARED = (S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE)


@dataclass(frozen=True)
class CurrentChanges:
    inserted: int
    updated: int
    deleted: int
    version: int  # the table version the MERGE wrote (its change feed: table_changes(name, version, version))

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


def merge_current(spark: SparkSession, storage: StorageConf, recs: DataFrame, run_id: str,
                  top_n: int) -> CurrentChanges | None:
    """MERGE this run's ``recs`` (recommendations' columns) into ``recommendations_current``.
    Returns what changed, or None when a newer run already owns the serving copy."""
    newest = spark.table(storage.table(S.RECOMMENDATIONS)).agg(F.max(S.RUN_ID)).first()[0]  # type: ignore[index]
    if newest is not None and newest > run_id:
        return None
    full = ensure_table(spark, storage, S.RECOMMENDATIONS_CURRENT)
    ensure_rank_bound(spark, full, top_n)
    same = " AND ".join(f"t.{c} <=> s.{c}" for c in COMPARED)
    source = recs.select(*S.RECOMMENDATIONS_CURRENT_SCHEMA.fieldNames())

    def merge() -> CurrentChanges:
        (DeltaTable.forName(spark, full).alias("t")
         .merge(source.alias("s"), " AND ".join(f"t.{c} = s.{c}" for c in KEY))
         .whenMatchedUpdate(condition=f"NOT ({same})",
                            set={c: f"s.{c}" for c in S.RECOMMENDATIONS_CURRENT_SCHEMA.fieldNames()})
         .whenNotMatchedInsertAll()
         .whenNotMatchedBySourceDelete()
         .execute())
        last = DeltaTable.forName(spark, full).history(1).first()
        m = last["operationMetrics"]  # type: ignore[index]
        return CurrentChanges(int(m.get("numTargetRowsInserted", 0)), int(m.get("numTargetRowsUpdated", 0)),
                              int(m.get("numTargetRowsDeleted", 0)), int(last["version"]))  # type: ignore[index]

    return retry_on_conflict(full, merge)
