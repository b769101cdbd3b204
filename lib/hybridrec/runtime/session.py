"""The one SparkSession builder every job uses.

* ``spark.mode: cluster`` — spark-submit or Databricks already configured the session; we
  take it (``getOrCreate``) and override no setting (only ``--packages`` jars leave the Python
  workers' import path: see ``drop_jar_python_includes``).
* ``spark.mode: local`` — the embedded default: ``local[*]`` with Delta's SQL extension and
  catalog, a warehouse and a persistent Derby metastore under ``storage.data_dir`` (tables
  survive between runs and a new session finds them by name), and Delta's jars resolved by
  Spark's Ivy from ``~/.m2`` / Maven Central — once per machine, quietly, with its report in a
  log file (:mod:`hybridrec.runtime.jars`); later sessions get the resolved paths as
  ``spark.jars``. Nobody downloads a jar by hand.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from pyspark.sql import SparkSession

from hybridrec.config import Config, StorageConf
from hybridrec.errors import UserError
from hybridrec.runtime.jars import resolved_jars

log = logging.getLogger(__name__)

SCALA_BINARY = "2.13"
SPARK_LINE = "4.0"
# The PyPI package delta-spark 4.4.1 is the Python side; the newest Scala artifact published on
# Maven Central for Spark 4.0 is 4.4.0 (4.4.1 was never published there: the jar 404s), and the
# Python API is a thin wrapper that works against it.
DELTA_JAR_VERSION = "4.4.0"
LOG4J_CONF = Path(__file__).parent / "log4j2.properties"
# Native (C++) logs of TensorFlow and its gRPC/absl: oneDNN and CPU-feature notices, and a NodeDef
# "error" line at every model build, none of them a problem. Off unless spark.log_level is DEBUG
# or TRACE; a value the user set in the environment is kept.
QUIET_NATIVE_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "ABSL_MIN_LOG_LEVEL": "3"}
_LOCAL_SESSIONS: list[SparkSession] = []  # sessions whose JVM this process launched


def is_debug(cfg: Config) -> bool:
    return cfg.spark.log_level.upper() in ("DEBUG", "TRACE")


def native_log_env(cfg: Config) -> dict[str, str]:
    """The environment that silences TensorFlow's native logs (empty at DEBUG)."""
    return {} if is_debug(cfg) else {k: os.environ.get(k, v) for k, v in QUIET_NATIVE_ENV.items()}


def delta_maven_coordinates() -> list[str]:
    """Maven coordinates of the Delta jars for this Spark line (transitive deps follow)."""
    return [f"io.delta:delta-spark_{SPARK_LINE}_{SCALA_BINARY}:{DELTA_JAR_VERSION}"]


def local_spark_conf(cfg: Config, jars: Sequence[str] | None = None) -> dict[str, str]:
    """The settings of the embedded local session, derived from config (pure; testable): Delta's
    already resolved ``jars`` when given, else its Maven coordinates for Spark's Ivy."""
    data = cfg.data_dir
    metastore = data / "metastore_db"
    conf = {
        "spark.master": cfg.spark.master,
        "spark.app.name": cfg.spark.app_name,
        **({"spark.jars": ",".join(jars)} if jars else {"spark.jars.packages": ",".join(delta_maven_coordinates())}),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.warehouse.dir": str(data / "warehouse"),
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={data} -Dlog4j2.configurationFile=file:{LOG4J_CONF} "
                                         f"{cfg.spark.java_options}".strip(),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        # Delta rebuilds table state with this many tasks (default 50): far too many on one machine.
        "spark.databricks.delta.snapshotPartitions": "4",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Python workers import hybridrec from where the driver did (this clone's lib/), not from
        # whichever clone last made the shared virtualenv's editable install.
        "spark.executorEnv.PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **{f"spark.executorEnv.{k}": v for k, v in native_log_env(cfg).items()},
    }
    conf.update(cfg.spark.conf)
    return conf


# The quick (C1) JIT only. C1 alone reserves a 48 MB code cache, which Spark's generated code
# fills within a minute of a pipeline ("CodeCache is full. Compiler has been disabled."): reserve
# the 240 MB the full JIT does.
QUICK_JIT = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"


def for_one_query(cfg: Config) -> Config:
    """The config of a local JVM started for one query (``hybridrec sql``): the quick (C1) JIT
    only, unless ``spark.java_options`` says otherwise. Such a JVM lives seconds, and C1 alone
    compiles Spark's generated code sooner (25 s instead of 34 s on two cores); jobs keep the
    full JIT, which pays off in a JVM that runs for minutes."""
    if cfg.spark.java_options.strip():
        return cfg
    return dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, java_options=QUICK_JIT))


def metastore_in_use(data_dir: Path) -> bool:
    """Whether another process has booted the local Derby metastore under ``data_dir``: Derby holds
    an exclusive OS lock on ``metastore_db/dbex.lck`` while booted (a stale file is not locked)."""
    import fcntl

    lock = Path(data_dir) / "metastore_db" / "dbex.lck"
    if not lock.exists():
        return False
    with open(lock, "a") as f:  # append: never truncates Derby's file
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN)
    return False


def _busy(cfg: Config) -> UserError:
    return UserError(f"the local metastore {cfg.data_dir / 'metastore_db'} is in use by another hybridrec run "
                     "(Derby serves one process at a time); wait for it to finish, or use another storage.data_dir")


def drop_jar_python_includes(spark: SparkSession) -> int:
    """Stop sending the Delta jars to Python workers as import paths; returns how many were dropped.

    ``spark.jars.packages`` also lists every resolved jar (33 for Delta) as a Python include, and
    every Python task then re-adds them to the worker's ``sys.path`` and invalidates its import
    caches: about half a second per task before any work on a small machine (8.4 s against 3.5 s
    for 20 empty ``mapInPandas`` tasks on two cores). No worker imports from a jar; Delta's Python
    API runs on the driver. The same holds for spark-submit's ``--packages`` on a cluster; hybridrec's
    jobs run no Python code from a jar."""
    sc = spark.sparkContext
    includes = getattr(sc, "_python_includes", None)
    if not isinstance(includes, list):
        return 0
    kept = [p for p in includes if not str(p).lower().endswith(".jar")]
    dropped = len(includes) - len(kept)
    includes[:] = kept
    return dropped


def build_session(cfg: Config) -> SparkSession:
    """Return the SparkSession for this config (see module docstring). In local mode a second run
    on the same data folder stops at once with one line, before touching any table."""
    if cfg.spark.mode == "cluster":
        spark = SparkSession.builder.getOrCreate()
    else:
        if metastore_in_use(cfg.data_dir):
            raise _busy(cfg)
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        # Python workers run the driver's interpreter (so they see the same packages); pyspark
        # reads this variable when it creates the SparkContext.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.update(native_log_env(cfg))  # the driver's TensorFlow, and the workers the JVM starts
        builder = SparkSession.builder
        user_jars = {"spark.jars", "spark.jars.packages"} & set(cfg.spark.conf)
        jars = None if user_jars else resolved_jars(delta_maven_coordinates(), cfg.spark.conf)
        for key, value in local_spark_conf(cfg, jars).items():
            builder = builder.config(key, value)
        spark = builder.enableHiveSupport().getOrCreate()
        spark.sparkContext.setLogLevel(cfg.spark.log_level)
        _LOCAL_SESSIONS.append(spark)
    drop_jar_python_includes(spark)  # both modes
    if spark.sparkContext.getCheckpointDir() is None:  # a platform's own setting stays
        spark.sparkContext.setCheckpointDir(cfg.spark.checkpoint_dir or str(cfg.data_dir / "checkpoints"))
    try:
        ensure_database(spark, cfg.storage)
    except Exception as exc:  # lost the race to boot Derby (both checked before either booted it)
        if cfg.spark.mode != "cluster" and "SessionHiveMetaStoreClient" in str(exc) and metastore_in_use(cfg.data_dir):
            spark.stop()
            raise _busy(cfg) from None
        raise
    return spark


def stop_local_sessions(timeout: float = 120.0) -> None:
    """Stop every session whose JVM this process launched, and wait until that JVM has exited.

    Only then is the local Derby metastore's lock released, so a ``hybridrec sql`` started the
    moment a pipeline returns finds the metastore free. (pyspark's gateway JVM exits when its
    stdin closes.) Sessions of spark-submit or Databricks are never stopped here."""
    from pyspark import SparkContext

    while _LOCAL_SESSIONS:
        spark = _LOCAL_SESSIONS.pop()
        gateway = SparkContext._gateway
        proc = getattr(gateway, "proc", None)
        spark.stop()
        if gateway is not None:
            gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=timeout)
            except Exception:  # noqa: BLE001 - a JVM that will not exit is killed, not waited on forever
                proc.kill()
                proc.wait(timeout=30)


def ensure_database(spark: SparkSession, storage: StorageConf) -> None:
    """Create the configured database (schema) if needed, with a comment for analysts."""
    spark.sql(
        f"CREATE DATABASE IF NOT EXISTS {storage.qualified_database} "
        "COMMENT 'hybridrec: crawl, posters, ratings, embeddings, neighbours, recommendations'"
    )
