"""Delta's jars for the embedded local session: resolved once by Spark's own Ivy, quietly.

``spark.jars.packages`` makes Spark's Ivy resolve the Delta jars at every session start, and Ivy
prints some 90 lines to the terminal each time (its settings, every module, the artifact report).
Instead, the first local run resolves them in a child process (the same pyspark, the same Ivy,
``~/.m2`` first and then Maven Central or the configured ``spark.jars.repositories``) whose output
goes to a log file, prints one line, and records the resolved jar paths in a manifest under
``$HYBRIDREC_CACHE/jars`` (default ``~/.cache/hybridrec/jars``). Every later session starts with
those paths as ``spark.jars``: no resolution, no output. A manifest whose jars have gone (an Ivy
cache wiped) is resolved again. Nobody downloads a jar by hand.

Run as ``python -m hybridrec.runtime.jars COORDS MANIFEST [CONF_JSON]`` it is that child process.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import unquote, urlparse

from hybridrec.errors import UserError

log = logging.getLogger(__name__)

# the user's Ivy settings that change what a resolution finds (passed to the child, part of the key)
IVY_KEYS = ("spark.jars.ivy", "spark.jars.ivySettings", "spark.jars.repositories", "spark.jars.excludes")


def cache_dir() -> Path:
    return Path(os.environ.get("HYBRIDREC_CACHE") or Path.home() / ".cache" / "hybridrec") / "jars"


def _key(coordinates: Sequence[str], ivy_conf: Mapping[str, str]) -> str:
    text = json.dumps([sorted(coordinates), sorted(ivy_conf.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_manifest(path: Path) -> list[str] | None:
    """The jar paths a manifest lists, or None when it is absent, empty or any jar has gone."""
    try:
        jars = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return None
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def resolved_jars(coordinates: Sequence[str], spark_conf: Mapping[str, str], timeout: float = 900.0) -> list[str]:
    """Local paths of ``coordinates`` and their dependencies, resolving them (once per machine) in
    a child process whose Ivy output goes to ``<cache>/jars/<key>.log``; one log line when it does.
    A failed resolution stops with one line that names the log."""
    ivy_conf = {k: str(v) for k, v in spark_conf.items() if k in IVY_KEYS}
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    key = _key(coordinates, ivy_conf)
    manifest, log_path = base / f"{key}.txt", base / f"{key}.log"
    with open(base / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second first run waits for the first's resolution
        jars = read_manifest(manifest)
        if jars is not None:
            return jars
        t0 = time.time()
        cmd = [sys.executable, "-m", "hybridrec.runtime.jars", ",".join(coordinates), str(manifest),
               json.dumps(ivy_conf)]
        with open(log_path, "w") as out:
            try:
                rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                    env={**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON",
                                                                                         sys.executable)}).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        jars = read_manifest(manifest) if rc == 0 else None
        if jars is None:
            raise UserError(f"could not resolve the jars {', '.join(coordinates)} with Spark's Ivy (from ~/.m2, "
                            f"Maven Central or spark.jars.repositories): {_last_error(log_path)}; "
                            f"the resolution log is {log_path}")
        log.info("resolved %s (%d jars, %.0f s) once with Spark's Ivy; its report: %s; later runs reuse them",
                 ", ".join(coordinates), len(jars), time.time() - t0, log_path)
        return jars


def _last_error(log_path: Path) -> str:
    """The most telling line of a failed resolution's log."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for marker in ("unresolved dependency", "UNRESOLVED DEPENDENCIES", "Exception", "Error"):
        hits = [ln for ln in lines if marker in ln]
        if hits:
            return hits[0][:300]
    return (lines[-1] if lines else "the resolver exited without output")[:300]


def _uri_to_path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri


def _resolve(coordinates: str, manifest: Path, ivy_conf: dict[str, str]) -> None:
    """The child process: a throwaway local session with ``spark.jars.packages`` (Spark's Ivy does
    the resolution) whose resulting ``spark.jars`` are written to the manifest."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[1]").appName("hybridrec-resolve-jars") \
        .config("spark.jars.packages", coordinates).config("spark.ui.enabled", "false")
    for k, v in ivy_conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    try:
        jars = [_uri_to_path(j) for j in spark.sparkContext.getConf().get("spark.jars", "").split(",") if j]
    finally:
        spark.stop()
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("".join(f"{j}\n" for j in jars))
    os.replace(tmp, manifest)
    print(f"{len(jars)} jars written to {manifest}")


if __name__ == "__main__":
    _resolve(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
