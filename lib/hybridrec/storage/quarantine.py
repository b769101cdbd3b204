"""The one writer of ``quarantine``: bad input rows and files, each with its stage and a reason.

Every stage that sets input aside builds its rows with :func:`quarantine_rows` (the table's
columns, stamped with the run and the time) and writes them one of two ways:

* :func:`replace_quarantine` - the stage's rows of this run are replaced as a whole (ingest: a
  rerun of the same run never doubles them, and an unchanged rerun writes nothing);
* :func:`append_quarantine` - appended (embed: an extractor never retries what it refused, so
  the rows of earlier runs stay and new ones add to them).
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.storage.tables import replace_rows, sql_str


def quarantine_rows(bad: DataFrame, stage: str, run_id: str) -> DataFrame:
    """``bad`` (source_file, record, reason) as ``quarantine`` rows of ``stage`` and this run."""
    return bad.select(
        F.lit(stage).alias(S.STAGE), F.col(S.SOURCE_FILE), F.col(S.RECORD), F.col(S.REASON),
        F.lit(run_id).alias(S.RUN_ID), F.current_timestamp().alias(S.QUARANTINED_AT),
    )


def replace_quarantine(spark: SparkSession, table: str, rows: DataFrame, run_id: str, stage_prefix: str) -> bool:
    """Replace this run's rows of the stages named ``<stage_prefix>*`` with ``rows`` in one commit
    (nothing is written when they are already equal). Returns whether it wrote."""
    return replace_rows(spark, table, rows, f"{S.RUN_ID} = {sql_str(run_id)} AND {S.STAGE} LIKE "
                                            f"{sql_str(stage_prefix + '%')}",
                        compare_cols=[S.STAGE, S.SOURCE_FILE, S.RECORD, S.REASON])


def append_quarantine(spark: SparkSession, table: str, rows: DataFrame) -> None:
    """Append ``rows`` (from :func:`quarantine_rows`)."""
    rows.select(*spark.table(table).columns).write.format("delta").mode("append").saveAsTable(table)
