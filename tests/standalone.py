"""A Spark standalone cluster on localhost, started from the installed pyspark, for tests.

The same command lines as the README's "spark-submit on a standalone cluster": a master and N
one-core workers run by ``bin/spark-class`` (pip's pyspark ships no ``sbin/start-*.sh``), each in
its own process group so a test can kill one worker mid-stage and always stops them all.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyspark

from hybridrec.runtime.session import QUICK_JIT  # the quick (C1) JIT only, as `hybridrec sql` uses

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = Path(pyspark.__file__).parent
DELTA_PACKAGE = "io.delta:delta-spark_4.0_2.13:4.4.0"


def delta_jars() -> list[str]:
    """What the README's ``hybridrec jars`` prints: the resolved Delta jars (once per machine)."""
    from hybridrec.runtime.jars import resolved_jars
    from hybridrec.runtime.session import delta_maven_coordinates

    assert delta_maven_coordinates() == [DELTA_PACKAGE]
    return resolved_jars(delta_maven_coordinates(), {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spark_env() -> dict[str, str]:
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1"}


@dataclass
class Standalone:
    """A running master and its workers; ``stop()`` ends them all."""

    work: Path
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
            env=spark_env(), start_new_session=True)

    def start(self, workers: int = 2, cores: int = 1, memory: str = "3g", timeout: float = 120) -> "Standalone":
        self.work.mkdir(parents=True, exist_ok=True)
        self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.port), "--webui-port", str(self.ui_port)])
        for i in range(workers):
            self._spawn(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                       "--cores", str(cores), "--memory", memory,
                                       "--work-dir", str(self.work / f"worker{i}"),
                                       "--webui-port", str(free_port()), self.url])
        deadline = time.time() + timeout
        while self.alive_workers() < workers:
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"standalone cluster did not come up; see {self.work}/*.log")
            time.sleep(1)
        return self

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
                state = json.load(r)
        except OSError:
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def kill(self, name: str) -> None:
        """SIGKILL a daemon and everything it started (a worker takes its executors with it)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.procs)[::-1]:
            self.kill(name)


def build_pyfiles_zip(out: Path) -> Path:
    """Build the wheel as a user does, and the copy of it that ``--py-files`` ships (Spark sends only
    .zip/.egg/.py files to executors; a wheel of pure Python is such a zip under another name)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True)
    wheel = next(out.glob("hybridrec-*.whl"))
    zipped = wheel.with_name(wheel.name.replace("-py3-none-any.whl", "-pyfiles.zip"))
    shutil.copyfile(wheel, zipped)
    return zipped


def submit_args(master: str, pyfiles: Path, data: Path) -> list[str]:
    """spark-submit's flags for hybridrec on a cluster whose nodes share ``data`` (the README's)."""
    return [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", master,
        "--jars", ",".join(delta_jars()),
        "--conf", "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf", "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf", "spark.sql.catalogImplementation=hive",
        "--conf", f"spark.sql.warehouse.dir={data}/warehouse",
        "--conf", f"spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={data}/metastore_db;create=true",
        "--conf", "spark.sql.session.timeZone=UTC",
        # a tiny demo on two cores: Spark's 200 shuffle partitions and Delta's 50 would be all overhead
        "--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.databricks.delta.snapshotPartitions=2",
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", "spark.executor.memory=2g",
        # three JVMs (driver, two executors) on two cores running short jobs: the quick (C1) JIT
        # alone compiles Spark's generated code sooner (the whole run 227 s instead of 299 s)
        "--conf", f"spark.executor.extraJavaOptions={QUICK_JIT}",
        "--driver-java-options", f"-Dlog4j2.configurationFile=file:{ROOT}/lib/hybridrec/runtime/log4j2.properties {QUICK_JIT}",
        "--py-files", str(pyfiles),
    ]


VOLATILE = ("ingested_at", "quarantined_at", "computed_at")  # when a row was written


def table_frame(spark: "SparkSession", path: Path, data: Path) -> "pd.DataFrame":
    """A Delta table read by path, without the write-time columns, its data folder written <data>."""
    df = spark.read.format("delta").load(str(path))
    pdf = df.drop(*[c for c in VOLATILE if c in df.columns]).toPandas()
    for c in pdf.columns:
        if pdf[c].dtype == object:
            pdf[c] = pdf[c].map(lambda v: v.replace(str(data), "<data>") if isinstance(v, str) else v)
    return pdf


def _split(value: object) -> tuple[str, list[float]]:
    """A value as (its shape with every float written '#', the floats in order)."""
    import numpy as np

    if isinstance(value, (float, np.floating)):
        return "#", [float(value)]
    if isinstance(value, dict):
        value = sorted(value.items())
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [_split(v) for v in value]
        return "[" + ",".join(p[0] for p in parts) + "]", [f for p in parts for f in p[1]]
    return repr(value), []


def assert_same_table(a: "pd.DataFrame", b: "pd.DataFrame", name: str, rtol: float = 1e-5) -> None:
    """Row for row equal: everything but floats exactly; floats (also inside arrays and structs)
    within ``rtol`` - TensorFlow's CPU kernels sum in a thread- and batch-dependent order, so
    embeddings and what is learned from them may differ in the last float32 bits between layouts."""
    import numpy as np

    assert len(a) == len(b) > 0, f"{name}: {len(a)} rows vs {len(b)}"
    assert list(a.columns) == list(b.columns), name

    def rows(df: "pd.DataFrame") -> list[tuple[str, list[float]]]:
        out = [_split(list(r)) for r in df.itertuples(index=False, name=None)]
        return sorted(out, key=lambda r: (r[0], [round(f, 3) for f in r[1]]))

    ra, rb = rows(a), rows(b)
    assert [r[0] for r in ra] == [r[0] for r in rb], f"{name}: rows differ"
    for x, y in zip(ra, rb):
        np.testing.assert_allclose(x[1], y[1], rtol=rtol, atol=1e-5, err_msg=f"{name}: {x[0][:200]}")
