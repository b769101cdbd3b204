# Databricks notebook source
# MAGIC %md
# MAGIC # hybridrec - recommendations, genres, classifier and evaluation at a glance
# MAGIC SQL over the analyst views the pipeline maintains, and a few plots. Runs on Databricks
# MAGIC (widgets; `spark` is provided) or headless: `python notebooks/02_analyst.py` on the local tables.

# COMMAND ----------
from __future__ import annotations

import os
from pathlib import Path

try:
    spark  # type: ignore[used-before-def]  # noqa: B018  (Databricks and the tests provide it)
except NameError:
    from hybridrec.config import load_config
    from hybridrec.runtime.session import build_session

    _cfg = load_config(os.environ.get("HYBRIDREC_CONF"))
    spark = build_session(_cfg)
    DATABASE = _cfg.database
try:  # Unity Catalog: catalog.schema (the bundle's dev and prod targets have different catalogs)
    dbutils.widgets.text("catalog", "hybridrec_prod")  # type: ignore[name-defined]  # noqa: F821
    dbutils.widgets.text("schema", "hybridrec")  # type: ignore[name-defined]  # noqa: F821
    DATABASE = ".".join(f"`{dbutils.widgets.get(w)}`" for w in ("catalog", "schema")  # type: ignore[name-defined]  # noqa: F821
                        if dbutils.widgets.get(w))  # type: ignore[name-defined]  # noqa: F821
except NameError:
    DATABASE = globals().get("DATABASE", "hybridrec")
PLOT_DIR = Path(globals().get("PLOT_DIR", "notebook-plots"))
PLOT_DIR.mkdir(parents=True, exist_ok=True)
RESULTS: dict[str, object] = {}

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# COMMAND ----------
# Per genre: catalogue, ratings and the newest recommendations' share
genre_stats = spark.sql(f"SELECT * FROM {DATABASE}.genre_stats ORDER BY movies DESC").toPandas()
RESULTS["genre_stats"] = genre_stats
print(genre_stats.to_string(index=False))
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.bar(genre_stats["genre"], genre_stats["movies"])
ax.set_title("Movies per genre")
ax.tick_params(axis="x", labelrotation=60)
fig.tight_layout()
fig.savefig(PLOT_DIR / "genres.png")

# COMMAND ----------
# The newest evaluation: nDCG@10 per model (all customers and the cold-start slice)
ndcg = spark.sql(f"""
    SELECT model, slice, round(value, 4) AS ndcg_at_10, customers
    FROM {DATABASE}.evaluation_latest WHERE metric = 'ndcg' AND k = 10 ORDER BY slice, value DESC
""").toPandas()
RESULTS["ndcg"] = ndcg
print(ndcg.to_string(index=False))
overall = ndcg[ndcg["slice"] == "all"]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(overall["model"], overall["ndcg_at_10"])
ax.set_title("nDCG@10 by model (newest evaluation)")
ax.tick_params(axis="x", labelrotation=45)
fig.tight_layout()
fig.savefig(PLOT_DIR / "ndcg.png")

# COMMAND ----------
# The classifier of the newest train run (the paper's Table 2), and the newest recommendations
RESULTS["classifier"] = spark.sql(f"""
    SELECT genre, round(f1, 3) AS f1, round(roc_auc, 3) AS roc_auc, round(f1_random, 3) AS f1_random
    FROM {DATABASE}.classifier_metrics_latest WHERE stage = 'head' AND fold IS NULL ORDER BY f1 DESC
""").toPandas()
print(RESULTS["classifier"].to_string(index=False))
RESULTS["recommendations"] = spark.sql(f"""
    SELECT customer_id, rank, title, round(score, 3) AS score, because_title, source
    FROM {DATABASE}.recommendations_latest_titled ORDER BY customer_id, rank LIMIT 20
""").toPandas()
print(RESULTS["recommendations"].to_string(index=False))
