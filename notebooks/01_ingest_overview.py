# Databricks notebook source
# MAGIC %md
# MAGIC # hybridrec - what the last ingest brought in
# MAGIC Thin on purpose: parameters -> SQL over the hybridrec tables -> a table or a plot.
# MAGIC Runs on Databricks (widgets) or locally: `python notebooks/01_ingest_overview.py`.

# COMMAND ----------
from __future__ import annotations

try:  # Unity Catalog: catalog.schema (the bundle's dev and prod targets have different catalogs)
    dbutils.widgets.text("catalog", "hybridrec_prod")  # type: ignore[name-defined]  # noqa: F821
    dbutils.widgets.text("schema", "hybridrec")  # type: ignore[name-defined]  # noqa: F821
    DATABASE = ".".join(f"`{dbutils.widgets.get(w)}`" for w in ("catalog", "schema")  # type: ignore[name-defined]  # noqa: F821
                        if dbutils.widgets.get(w))  # type: ignore[name-defined]  # noqa: F821
except NameError:  # not on Databricks: use the embedded default's session and tables
    from hybridrec.config import load_config
    from hybridrec.runtime.session import build_session

    _cfg = load_config()
    spark = build_session(_cfg)
    DATABASE = _cfg.storage.qualified_database

# COMMAND ----------
# Genre distribution of the crawl (the paper's Fig. 2)
genres = spark.sql(f"""
    SELECT genre, count(*) AS movies
    FROM {DATABASE}.items LATERAL VIEW explode(genres) g AS genre
    GROUP BY genre ORDER BY movies DESC
""")
genres.show(25, truncate=False)

# COMMAND ----------
# Quarantine of the latest run, by stage and reason
spark.sql(f"""
    SELECT stage, reason, count(*) AS n
    FROM {DATABASE}.quarantine
    WHERE run_id = (SELECT max(run_id) FROM {DATABASE}.quarantine)
    GROUP BY stage, reason ORDER BY stage, n DESC
""").show(50, truncate=False)

# COMMAND ----------
# Ratings per customer and per item: how long is the tail?
spark.sql(f"""
    SELECT percentile_approx(n, array(0.5, 0.9, 0.99)) AS ratings_per_item_p50_p90_p99
    FROM (SELECT item_id, count(*) AS n FROM {DATABASE}.ratings GROUP BY item_id)
""").show(truncate=False)
