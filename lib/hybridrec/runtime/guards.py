"""Session settings held for one block of work, and Spark's Python-worker crashes as one line."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from pyspark.sql import SparkSession

from hybridrec.errors import UserError

ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
# what Spark says when the OS (or a memory limit) kills a Python worker under a task
WORKER_CRASH_MARKS = ("Python worker exited unexpectedly", "Python worker failed to connect back")


@contextmanager
def arrow_batch_rows(spark: SparkSession, rows: int) -> Iterator[None]:
    """Rows per Arrow batch into Python UDFs inside the block (Spark's default is 10,000: fine for
    numbers, gigabytes for images), restored afterwards."""
    before = spark.conf.get(ARROW_BATCH_ROWS, None)
    spark.conf.set(ARROW_BATCH_ROWS, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(ARROW_BATCH_ROWS)
        else:
            spark.conf.set(ARROW_BATCH_ROWS, before)


def is_worker_crash(exc: BaseException) -> bool:
    text = str(exc)
    return any(mark in text for mark in WORKER_CRASH_MARKS)


@contextmanager
def worker_crash_as_error(what: str) -> Iterator[None]:
    """A Python worker killed under a task (out of memory, most often) becomes one line naming
    ``what`` and what to change, instead of a Py4J stack trace; other errors pass unchanged."""
    try:
        yield
    except Exception as exc:  # Py4JJavaError / PySparkException: the message is what tells
        if not is_worker_crash(exc):
            raise
        raise UserError(f"{what}: a Python worker died under a task (killed by the OS: most often out of "
                        f"memory); lower the batch sizes ({what}.batch_size, embed.arrow_batch_size) or give "
                        "the executors more memory (the executor's log has the details)") from None
