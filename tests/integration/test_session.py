"""The embedded local session: Delta on the JVM, not on the Python workers' import path."""
from __future__ import annotations

from typing import Iterator

import pandas as pd
from pyspark.sql import SparkSession


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
