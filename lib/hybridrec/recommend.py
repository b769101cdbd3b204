"""Recommend stage: ``item_neighbors`` + ``ratings`` -> ``recommendations`` (Spark plumbing around
:mod:`hybridrec.scoring`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.scoring import Fallback, NeighborMatrix, score_stream
from hybridrec.tables import ensure_table, replace_rows, sql_str
from hybridrec.views import latest_run_query

OUTPUT_COLUMNS = [S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE]
FALLBACK_DEPTH = 500


def neighbor_matrix(neighbors: DataFrame) -> NeighborMatrix:
    """Collect (item_id, neighbor_id, similarity) as a CSR matrix (Arrow transfer; ~12 bytes a pair)."""
    pdf = cast(pd.DataFrame, neighbors.select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY).toPandas())
    return NeighborMatrix.from_pairs(pdf[S.ITEM_ID].to_numpy(np.int64), pdf[S.NEIGHBOR_ID].to_numpy(np.int64),
                                     pdf[S.SIMILARITY].to_numpy(np.float64))


def popularity_fallback(ratings: DataFrame, items: DataFrame) -> Fallback:
    """Most-rated items overall and per genre (top FALLBACK_DEPTH each) and items' genres."""
    counts = ratings.groupBy(S.ITEM_ID).count()
    ranked = cast(pd.DataFrame, counts.join(items.select(S.ITEM_ID, S.GENRES), S.ITEM_ID, "left").toPandas())
    ranked = ranked.sort_values(["count", S.ITEM_ID], ascending=[False, True])
    overall = ranked[S.ITEM_ID].astype(int).tolist()[:FALLBACK_DEPTH]
    item_genres = {int(i): tuple(g) if g is not None else () for i, g in zip(ranked[S.ITEM_ID], ranked[S.GENRES])}
    by_genre: dict[str, list[int]] = {}
    for item in ranked[S.ITEM_ID].astype(int):
        for g in item_genres[item]:
            lst = by_genre.setdefault(g, [])
            if len(lst) < FALLBACK_DEPTH:
                lst.append(item)
    return Fallback(item_genres, by_genre, overall)


def recommend(spark: SparkSession, ratings: DataFrame, nm: NeighborMatrix, fallback: Fallback | None,
              top_n: int, threshold: float, partitions: int, batch_rows: int) -> DataFrame:
    """Score every customer of ``ratings`` (customer_id, item_id, rating) against the broadcast
    neighbour matrix, partitioned by customer, streamed in bounded batches."""
    b_nm = spark.sparkContext.broadcast(nm)
    b_fb = spark.sparkContext.broadcast(fallback)
    parts = partitions or spark.sparkContext.defaultParallelism

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in score_stream(batches, b_nm.value, top_n, threshold, b_fb.value, batch_rows):
            yield frame[OUTPUT_COLUMNS]

    schema = S.RECOMMENDATIONS_SCHEMA
    out_schema = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields if f.name in OUTPUT_COLUMNS)
    return (ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING)
            .repartition(parts, S.CUSTOMER_ID).sortWithinPartitions(S.CUSTOMER_ID)
            .mapInPandas(run, out_schema))  # type: ignore[arg-type]


@dataclass
class RecommendReport:
    run_id: str
    customers: int = 0
    rows: int = 0
    fallback_customers: int = 0

    def lines(self) -> list[str]:
        return [f"{self.rows} recommendations for {self.customers} customers "
                f"({self.fallback_customers} served by the popularity fallback)"]


def run_recommend(spark: SparkSession, cfg: Config) -> RecommendReport:
    """Recommendations for every customer with ratings, from this run's ``item_neighbors``;
    this run's rows are replaced in one commit, and ``recommendations_latest`` shows the newest run."""
    rc = cfg.recommend
    out = ensure_table(spark, cfg, S.RECOMMENDATIONS)
    neighbors = spark.table(ensure_table(spark, cfg, S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == cfg.run_id)
    if neighbors.limit(1).count() == 0:
        raise UserError(f"no item_neighbors for run {cfg.run_id}: run the similarity stage for this run first")
    ratings = spark.table(ensure_table(spark, cfg, S.RATINGS))
    items = spark.table(ensure_table(spark, cfg, S.ITEMS))
    nm = neighbor_matrix(neighbors)
    recs = recommend(spark, ratings, nm, popularity_fallback(ratings, items), rc.top_n, rc.threshold,
                     rc.partitions, rc.batch_rows)
    recs = recs.select(*[F.col(c) for c in OUTPUT_COLUMNS], F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    report = RecommendReport(run_id=cfg.run_id)
    report.rows = recs.count()
    report.customers = recs.select(S.CUSTOMER_ID).distinct().count()
    report.fallback_customers = recs.filter(F.col(S.SOURCE) != "neighbors").select(S.CUSTOMER_ID).distinct().count()
    replace_rows(spark, out, recs, f"{S.RUN_ID} = {sql_str(cfg.run_id)}",
                 compare_cols=[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE])
    recs.unpersist()
    spark.sql(f"CREATE OR REPLACE VIEW {cfg.table(S.RECOMMENDATIONS_LATEST)} "
              f"COMMENT 'Recommendations of the newest run' AS {latest_run_query(out)}")
    return report
