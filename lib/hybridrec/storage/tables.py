"""Delta table helpers: create with comments, upsert only what changed, replace a run's rows.

Writes retry on Delta's optimistic-concurrency conflicts (another run committed to the same table
between our read and our commit): the whole step is recomputed against the new table state - an
upsert re-diffs, a replace re-compares, so a concurrent identical write turns ours into a no-op -
and after ``CONFLICT_ATTEMPTS`` tries the run stops with one line naming the table.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from hybridrec.config import StorageConf
from hybridrec.errors import UserError
from hybridrec.runtime.session import ensure_database
from hybridrec.schemas import (RANK, RANK_CHECK, TABLE_CHECKS, TABLE_CLUSTERING, TABLE_COMMENTS, TABLE_PROPERTIES,
                               TABLE_SCHEMAS)

log = logging.getLogger(__name__)
_MIGRATED: set[tuple[str, str, str]] = set()  # (Spark application, table, schema) ensure_table checked
T = TypeVar("T")
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF_S = 0.5
conflicts_retried = 0  # process-wide count of conflicting commits that were retried (tests, logs)


def conflict_classes() -> tuple[type[BaseException], ...]:
    """Delta's concurrent-modification exceptions (importing them installs their conversion from
    the JVM's exceptions)."""
    from delta.exceptions import (ConcurrentAppendException, ConcurrentDeleteDeleteException,
                                  ConcurrentDeleteReadException, ConcurrentTransactionException,
                                  ConcurrentWriteException, MetadataChangedException, ProtocolChangedException)

    return (ConcurrentAppendException, ConcurrentDeleteReadException, ConcurrentDeleteDeleteException,
            ConcurrentTransactionException, ConcurrentWriteException, MetadataChangedException,
            ProtocolChangedException)


def retry_on_conflict(full_name: str, step: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run ``step``; on a Delta conflict run it again (jittered exponential backoff)."""
    global conflicts_retried
    classes = conflict_classes()
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except classes as exc:
            if attempt == attempts:
                raise UserError(f"table {full_name}: concurrent writes kept conflicting ({type(exc).__name__}) "
                                f"after {attempts} attempts; another run is writing it - rerun when it is done") \
                    from None
            conflicts_retried += 1
            wait = CONFLICT_BACKOFF_S * 2 ** (attempt - 1) * (1 + random.random())
            log.warning("table %s: %s from a concurrent commit; retrying in %.1fs (attempt %d of %d)",
                        full_name, type(exc).__name__, wait, attempt + 1, attempts)
            time.sleep(wait)
    raise AssertionError("unreachable")


def ensure_table(spark: SparkSession, storage: StorageConf, name: str, schema: StructType | None = None,
                 comment: str | None = None) -> str:
    """Create the Delta table ``name`` in the configured database if absent; return its full name."""
    ensure_database(spark, storage)
    full = storage.table(name)
    schema = schema or TABLE_SCHEMAS.get(name)
    if spark.catalog.tableExists(full.replace("`", "")):
        checked = (spark.sparkContext.applicationId, full, schema.simpleString() if schema is not None else "")
        if schema is not None and checked not in _MIGRATED:  # once per table, schema and session
            add_missing_columns(spark, full, schema)
            _MIGRATED.add(checked)
        return full
    if schema is None:
        raise KeyError(f"no schema declared for table {name}")
    builder = DeltaTable.createIfNotExists(spark).tableName(full).addColumns(schema) \
        .comment(comment or TABLE_COMMENTS.get(name, name))
    if name in TABLE_CLUSTERING:
        builder = builder.clusterBy(*TABLE_CLUSTERING[name])
    for key, value in TABLE_PROPERTIES.get(name, {}).items():
        builder = builder.property(key, value)
    builder.execute()
    for check, expr in TABLE_CHECKS.get(name, {}).items():
        if check not in constraints(spark, full):
            try:
                spark.sql(f"ALTER TABLE {full} ADD CONSTRAINT {check} CHECK ({expr})")
            except Exception:  # noqa: BLE001 - a concurrent run added it first
                if check not in constraints(spark, full):
                    raise
    return full


def add_missing_columns(spark: SparkSession, full_name: str, schema: StructType) -> list[str]:
    """The additive migration: columns a later release declared (nullable, so the rows already there
    read as null) are added to an existing table; returns their names. A missing required column
    means the table is not this version's: one line, nothing changed."""
    def missing() -> list:
        have = {f.name.lower() for f in spark.table(full_name).schema.fields}
        return [f for f in schema.fields if f.name.lower() not in have]

    todo = missing()
    if not todo:
        return []
    required = [f.name for f in todo if not f.nullable]
    if required:
        raise UserError(f"table {full_name} lacks the required column(s) {', '.join(required)}: it was written "
                        "by an incompatible version of hybridrec; drop it or use another storage.database")
    cols = ", ".join(f"{f.name} {f.dataType.simpleString()} COMMENT {sql_str(f.metadata.get('comment', f.name))}"
                     for f in todo)
    try:
        spark.sql(f"ALTER TABLE {full_name} ADD COLUMNS ({cols})")
    except Exception:  # noqa: BLE001 - a concurrent run added them first
        if missing():
            raise
    log.info("table %s: added column(s) %s", full_name, ", ".join(f.name for f in todo))
    return [f.name for f in todo]


def constraints(spark: SparkSession, full_name: str) -> dict[str, str]:
    """The table's CHECK constraints: name -> expression (Delta keeps them as table properties)."""
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {full_name}").collect()}
    prefix = "delta.constraints."
    return {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)}


def ensure_rank_bound(spark: SparkSession, full_name: str, top_n: int) -> None:
    """A CHECK that every rank is within 1..top_n. A run with a larger top_n widens it (the rows
    already there satisfy the wider bound); a smaller one keeps the wider bound of earlier runs."""
    current = constraints(spark, full_name).get(RANK_CHECK)
    if current is not None:
        bound = int(current.rsplit("<=", 1)[1].strip().rstrip(")"))
        if bound >= top_n:
            return
        spark.sql(f"ALTER TABLE {full_name} DROP CONSTRAINT {RANK_CHECK}")
    spark.sql(f"ALTER TABLE {full_name} ADD CONSTRAINT {RANK_CHECK} CHECK ({RANK} >= 1 AND {RANK} <= {top_n})")


@dataclass(frozen=True)
class UpsertResult:
    """Rows of a source that an upsert inserted, updated, or left unchanged."""

    inserted: int
    updated: int
    unchanged: int


def upsert_changed(spark: SparkSession, full_name: str, source: DataFrame, keys: list[str],
                   change_col: str, order_col: str) -> UpsertResult:
    """See :func:`_upsert_changed`; retried as a whole on Delta conflicts."""
    return retry_on_conflict(full_name, lambda: _upsert_changed(spark, full_name, source, keys, change_col, order_col))


def _upsert_changed(spark: SparkSession, full_name: str, source: DataFrame, keys: list[str],
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
    """See :func:`_replace_rows`; retried as a whole on Delta conflicts."""
    return retry_on_conflict(full_name, lambda: _replace_rows(spark, full_name, df, predicate, compare_cols))


def _replace_rows(spark: SparkSession, full_name: str, df: DataFrame, predicate: str,
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
    view = f"_hybridrec_replace_{abs(hash((full_name, predicate))):x}_{random.getrandbits(32):x}"
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


def table_exists(spark: SparkSession, storage: StorageConf, name: str) -> bool:
    """Whether ``name`` exists in the configured database (without creating it)."""
    return bool(spark.catalog.tableExists(storage.table(name).replace("`", "")))
