"""Analyst views over the tables, in the same database, each with a comment:

* ``recommendations_latest_titled`` - the newest run's recommendations with titles, genres and the
  "because you rated" title;
* ``genre_stats`` - per genre: movies, movies with a poster vector, ratings, mean rating, and the
  share of the newest run's recommendations;
* ``classifier_metrics_latest`` - the newest train run's per-genre metrics;
* ``evaluation_latest`` - the newest evaluate run, one row per model, metric, k and slice.

``recommendations_latest`` itself is (re)created by the recommend stage
(:func:`create_latest_recommendations_view`).
"""
from __future__ import annotations

from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import StorageConf
from hybridrec.storage.tables import ensure_table

VIEWS = ("recommendations_latest_titled", "genre_stats", "classifier_metrics_latest", "evaluation_latest")
# The tables the views read (each written by a pipeline stage).
VIEW_SOURCES = (S.ITEMS, S.RATINGS, S.ITEM_EMBEDDINGS, S.RECOMMENDATIONS, S.CLASSIFIER_METRICS, S.EVALUATION)


def latest_run_query(table: str) -> str:
    """The rows of ``table``'s newest run (the largest run id)."""
    return f"SELECT * FROM {table} WHERE {S.RUN_ID} = (SELECT max({S.RUN_ID}) FROM {table})"


def create_latest_recommendations_view(spark: SparkSession, storage: StorageConf) -> str:
    """(Re)create ``recommendations_latest``: the newest run's rows of ``recommendations``."""
    full = storage.table(S.RECOMMENDATIONS_LATEST)
    spark.sql(f"CREATE OR REPLACE VIEW {full} COMMENT 'Recommendations of the newest run' AS "
              f"{latest_run_query(ensure_table(spark, storage, S.RECOMMENDATIONS))}")
    return full


def create_views(spark: SparkSession, storage: StorageConf) -> list[str]:
    """(Re)create every analyst view; returns their qualified names."""
    t = {name: ensure_table(spark, storage, name) for name in VIEW_SOURCES}
    recs_latest = f"({latest_run_query(t[S.RECOMMENDATIONS])})"
    statements = {
        "recommendations_latest_titled": (
            "The newest run's recommendations with titles, genres and the 'because you rated' title",
            f"SELECT r.{S.CUSTOMER_ID}, r.{S.RANK}, r.{S.ITEM_ID}, i.{S.TITLE}, i.{S.GENRES}, i.release_year, "
            f"r.{S.SCORE}, r.{S.BECAUSE_ITEM_ID}, b.{S.TITLE} AS because_title, r.{S.SOURCE}, r.{S.RUN_ID} "
            f"FROM {recs_latest} r JOIN {t[S.ITEMS]} i ON i.{S.ITEM_ID} = r.{S.ITEM_ID} "
            f"LEFT JOIN {t[S.ITEMS]} b ON b.{S.ITEM_ID} = r.{S.BECAUSE_ITEM_ID}"),
        "genre_stats": (
            "Per genre: movies, movies with a poster vector, ratings, mean rating, share of the newest recommendations",
            f"WITH g AS (SELECT {S.ITEM_ID}, explode({S.GENRES}) AS {S.GENRE} FROM {t[S.ITEMS]}), "
            f"v AS (SELECT DISTINCT {S.ITEM_ID} FROM {t[S.ITEM_EMBEDDINGS]}), "
            f"r AS (SELECT {S.ITEM_ID}, count(*) AS n, sum({S.RATING}) AS s FROM {t[S.RATINGS]} GROUP BY {S.ITEM_ID}), "
            f"rec AS (SELECT {S.ITEM_ID}, count(*) AS n FROM {recs_latest} GROUP BY {S.ITEM_ID}), "
            f"tot AS (SELECT greatest(count(*), 1) AS n FROM {recs_latest}) "
            f"SELECT g.{S.GENRE}, count(*) AS movies, count(v.{S.ITEM_ID}) AS movies_with_vectors, "
            f"coalesce(sum(r.n), 0) AS ratings, round(sum(r.s) / sum(r.n), 3) AS mean_rating, "
            f"round(coalesce(sum(rec.n), 0) / first(tot.n), 4) AS share_of_recommendations "
            f"FROM g LEFT JOIN v ON v.{S.ITEM_ID} = g.{S.ITEM_ID} LEFT JOIN r ON r.{S.ITEM_ID} = g.{S.ITEM_ID} "
            f"LEFT JOIN rec ON rec.{S.ITEM_ID} = g.{S.ITEM_ID} CROSS JOIN tot GROUP BY g.{S.GENRE}"),
        "classifier_metrics_latest": ("The newest train run's per-genre classifier metrics (paper Table 2)",
                                      latest_run_query(t[S.CLASSIFIER_METRICS])),
        "evaluation_latest": ("The newest evaluate run: one row per model, metric, k and slice",
                              latest_run_query(t[S.EVALUATION])),
    }
    names = []
    for name, (comment, query) in statements.items():
        full = storage.table(name)
        spark.sql(f"CREATE OR REPLACE VIEW {full} COMMENT '{comment.replace(chr(39), '')}' AS {query}")
        names.append(full)
    return names
