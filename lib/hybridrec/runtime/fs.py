"""File-system look-ups through Hadoop's FileSystem, so every scheme Spark reads works the same
(local paths, file:, dbfs:, /Volumes, s3a:, abfss:, gs:). Only names, sizes and tiny manifests
reach the driver; data files are read by Spark."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from hybridrec.errors import UserError


@dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    length: int


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm
    jsc: Any = spark.sparkContext._jsc
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(jsc.hadoopConfiguration()), jpath


def exists(spark: SparkSession, path: str) -> bool:
    fs, jpath = _fs(spark, path)
    return bool(fs.exists(jpath))


def is_dir(spark: SparkSession, path: str) -> bool:
    fs, jpath = _fs(spark, path)
    return bool(fs.exists(jpath) and fs.getFileStatus(jpath).isDirectory())


def list_files(spark: SparkSession, directory: str, suffixes: tuple[str, ...] | None = None) -> list[FileInfo]:
    """Plain files directly in ``directory`` (zero-byte files included), sorted by name."""
    fs, jpath = _fs(spark, directory)
    out = []
    for st in fs.listStatus(jpath):
        if not st.isFile():
            continue
        name = st.getPath().getName()
        if suffixes is None or name.endswith(suffixes):
            out.append(FileInfo(name, st.getPath().toString(), int(st.getLen())))
    return sorted(out, key=lambda f: f.name)


def read_small_text(spark: SparkSession, path: str, max_bytes: int = 1 << 20) -> str:
    """Read a small text file (a manifest) on the driver."""
    fs, jpath = _fs(spark, path)
    stream = fs.open(jpath)
    try:
        jvm: Any = spark.sparkContext._jvm
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    if len(data) > max_bytes:  # never a silent cut
        raise UserError(f"{path} has {len(data)} bytes, more than the {max_bytes} read on the driver")
    return bytes(data).decode("utf-8")
