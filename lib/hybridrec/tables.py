"""Delta table helpers: create with comments, upsert only what changed, replace a run's rows."""
from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from hybridrec.config import Config
from hybridrec.schemas import TABLE_COMMENTS, TABLE_SCHEMAS
from hybridrec.session import ensure_database


def ensure_table(spark: SparkSession, cfg: Config, name: str, schema: StructType | None = None,
                 comment: str | None = None) -> str:
    """Create the Delta table ``name`` in the configured database if absent; return its full name."""
    ensure_database(spark, cfg)
    full = cfg.table(name)
    schema = schema or TABLE_SCHEMAS[name]
    (
        DeltaTable.createIfNotExists(spark)
        .tableName(full)
        .addColumns(schema)
        .comment(comment or TABLE_COMMENTS.get(name, name))
        .execute()
    )
    return full


@dataclass(frozen=True)
class UpsertResult:
    """Rows of a source that an upsert inserted, updated, or left unchanged."""

    inserted: int
    updated: int
    unchanged: int


def upsert_changed(spark: SparkSession, full_name: str, source: DataFrame, keys: list[str],
                   change_col: str, order_col: str) -> UpsertResult:
    """Upsert ``source`` into a Delta table, touching only new or changed rows.

    A source row is *new* if its key is absent; *changed* if ``change_col`` differs and its
    ``order_col`` (crawl date, rating time) is not older than the stored row's — the newest
    version wins. Everything else is unchanged and no commit is made when nothing changed, so a
    rerun of the same input leaves the table's history untouched. ``source`` must have unique
    keys.
    """
    target = spark.table(full_name).select(*keys, F.col(change_col).alias("_t_change"),
                                           F.col(order_col).alias("_t_order"))
    joined = source.join(target, on=keys, how="left")
    is_new = F.col("_t_change").isNull()
    is_changed = (F.col(change_col) != F.col("_t_change")) & (F.col(order_col) >= F.col("_t_order"))
    flagged = joined.withColumn("_action", F.when(is_new, "insert").when(is_changed, "update").otherwise("keep"))
    flagged = flagged.persist()
    try:
        counts = {r["_action"]: r["count"] for r in flagged.groupBy("_action").count().collect()}
        inserted, updated = counts.get("insert", 0), counts.get("update", 0)
        unchanged = counts.get("keep", 0)
        if inserted or updated:
            # Materialised with its lineage cut: MERGE scans its source twice, and re-running the
            # source's plan (Python UDFs: decoding, CNN inference) would double the stage's cost.
            changes = flagged.filter(F.col("_action") != "keep").select(*source.columns).localCheckpoint(eager=True)
            cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
            (
                DeltaTable.forName(spark, full_name).alias("t")
                .merge(changes.alias("s"), cond)
                .whenMatchedUpdateAll(condition=f"s.`{change_col}` <> t.`{change_col}` AND s.`{order_col}` >= t.`{order_col}`")
                .whenNotMatchedInsertAll()
                .execute()
            )
    finally:
        flagged.unpersist()
    return UpsertResult(inserted, updated, unchanged)


def replace_rows(spark: SparkSession, full_name: str, df: DataFrame, predicate: str,
                 compare_cols: list[str] | None = None) -> bool:
    """Atomically replace the rows matching ``predicate`` (e.g. one run's) with ``df``.

    With ``compare_cols``, nothing is written when the stored rows already equal ``df`` on those
    columns (as multisets), so a rerun makes no new table version. Returns whether it wrote.
    """
    if compare_cols is not None:
        stored = spark.table(full_name).where(predicate).select(*compare_cols)
        new = df.select(*compare_cols)
        if stored.isEmpty():  # first write of these rows: no full comparison needed
            if new.isEmpty():
                return False
        elif stored.exceptAll(new).isEmpty() and new.exceptAll(stored).isEmpty():
            return False
    columns = spark.table(full_name).columns
    view = f"_hybridrec_replace_{abs(hash((full_name, predicate))):x}"
    df.select(*columns).createOrReplaceTempView(view)
    try:
        # INSERT ... REPLACE WHERE keeps the table's schema and column comments as they are.
        spark.sql(f"INSERT INTO {full_name} REPLACE WHERE {predicate} SELECT * FROM {view}")
    finally:
        spark.catalog.dropTempView(view)
    return True


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
