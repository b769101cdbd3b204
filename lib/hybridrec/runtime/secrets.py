"""Databricks' ``dbutils`` outside a notebook, for secret-scope references (``{scope, key}``).

A python-wheel task has no ``dbutils`` global: on a Databricks Runtime it is built from the
active session (``pyspark.dbutils.DBUtils``, which only the runtime ships). Anywhere else there is
none, and :func:`hybridrec.config.resolve_secret` says in one line that the secret needs
Databricks (or names the environment variable to set instead)."""
from __future__ import annotations

import os
from typing import Any


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def databricks_dbutils() -> Any | None:
    """``dbutils`` of the Databricks Runtime this process runs on, else None."""
    if not on_databricks():
        return None
    try:
        from pyspark.dbutils import DBUtils  # Databricks Runtime only
    except ImportError:
        return None
    from pyspark.sql import SparkSession

    return DBUtils(SparkSession.getActiveSession() or SparkSession.builder.getOrCreate())
