"""Recommend stage: ``item_neighbors`` + ``ratings`` -> ``recommendations`` (Spark plumbing around
:mod:`hybridrec.scoring`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.coldstart import ColdScorer, build_catalogue, fit_cold_model
from hybridrec.scoring import SOURCE_COLD_START, Fallback, NeighborMatrix, score_stream
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


@dataclass(frozen=True)
class ColdInputs:
    """What every fit of the cold-start model reads besides the ratings, collected once: the items'
    TMDB metadata and genres, and the poster vectors."""

    meta: pd.DataFrame  # item_id, genres, vote_count, vote_average
    vec_ids: np.ndarray
    vectors: np.ndarray

    @staticmethod
    def collect(spark: SparkSession, cfg: Config, items: DataFrame) -> "ColdInputs":
        from hybridrec.similarity import collect_vectors, embedding_vectors

        meta = cast(pd.DataFrame, items.select(S.ITEM_ID, S.GENRES, "vote_count", "vote_average").toPandas())
        return ColdInputs(meta, *collect_vectors(embedding_vectors(spark, cfg)))


def cold_scorer(spark: SparkSession, cfg: Config, ratings: DataFrame, items: DataFrame,
                candidates: np.ndarray | None = None) -> ColdScorer:
    """Fit the cold-start model on a carve-out of ``ratings`` (the training part: nothing else is
    read) and gather what scoring the cold items needs (:func:`fit_cold_scorer`). The slot
    threshold is ``cold_start.min_lift`` x the fitted base rate; when the conf's ``min_lift`` is
    null it is chosen on a temporal carve-out of ``ratings`` (:func:`fit_min_lift`)."""
    inputs = ColdInputs.collect(spark, cfg, items)
    lift = cfg.recommend.cold_start.min_lift
    if lift is None:
        lift, _ = fit_min_lift(spark, cfg, ratings, inputs)
    return fit_cold_scorer(spark, cfg, ratings, inputs, lift, candidates)


def fit_cold_scorer(spark: SparkSession, cfg: Config, ratings: DataFrame, inputs: ColdInputs, lift: float,
                    candidates: np.ndarray | None = None) -> ColdScorer:
    """The cold-start model fitted on a carve-out of ``ratings``, the items with fewer than
    ``cold_start.max_ratings`` ratings (only ``candidates`` among them when given) with their poster
    neighbours among the rated items, and the list policy with ``lift``."""
    cs = cfg.recommend.cold_start
    counts = cast(pd.DataFrame, ratings.groupBy(S.ITEM_ID).count().toPandas())
    fit_rows = cast(pd.DataFrame, _customer_sample(ratings, cs.fit_customers, cs.seed)
                    .select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING).toPandas())
    model = fit_cold_model(fit_rows, inputs.meta, inputs.vec_ids, inputs.vectors, features=cs.features,
                           fraction=cs.fit_fraction, seed=cs.seed, threshold=cfg.recommend.threshold,
                           relevant=cs.relevant, neighbours=cs.image_neighbors, l2=cs.l2)
    count_of = dict(zip(counts[S.ITEM_ID].astype(np.int64), counts["count"].astype(np.int64)))
    all_ids = inputs.meta[S.ITEM_ID].to_numpy(np.int64)
    cold_ids = np.array([i for i in all_ids if count_of.get(int(i), 0) < cs.max_ratings], dtype=np.int64)
    if candidates is not None:
        cold_ids = cold_ids[np.isin(cold_ids, candidates)]
    rated = counts[S.ITEM_ID].to_numpy(np.int64)
    cat = build_catalogue(inputs.meta, cold_ids, rated, inputs.vec_ids, inputs.vectors, cs.image_neighbors)
    return ColdScorer(cat, model, cs.slots, lift)


def _customer_sample(ratings: DataFrame, n: int, seed: int) -> DataFrame:
    """The ratings of at most ``n`` customers, a seeded sample (by a hash: the same on every run)."""
    customers = ratings.select(S.CUSTOMER_ID).distinct()
    if customers.count() <= n:
        return ratings
    keep = customers.orderBy(F.xxhash64(S.CUSTOMER_ID, F.lit(seed)), S.CUSTOMER_ID).limit(n)
    return ratings.join(keep, S.CUSTOMER_ID, "left_semi")


def fit_min_lift(spark: SparkSession, cfg: Config, ratings: DataFrame, inputs: ColdInputs
                 ) -> tuple[float, dict[float, float]]:
    """Choose ``min_lift`` from ``cold_start.lift_grid`` on a temporal carve-out of ``ratings``:
    each customer's latest ``fit_holdout`` share is held out, the hybrid (neighbours and cold model
    refitted on the rest) scores a sample of customers on the driver for every lift, and the lift
    with the best binary nDCG@top_n against the held-out ratings >= relevant wins (ties: the larger
    lift, i.e. fewer cold items). Returns the lift and the nDCG of every lift."""
    from hybridrec.evaluate import PART, TEST, TRAIN, split_ratings
    from hybridrec.ratingsim import hybrid_neighbors
    from hybridrec.ranking import ndcg_at
    from hybridrec.scoring import score_batch

    rc, cs = cfg.recommend, cfg.recommend.cold_start
    ec = replace(cfg.evaluate, split="temporal", holdout_fraction=cs.fit_holdout, holdout_last=0, min_ratings=5)
    split = split_ratings(ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP), ec) \
        .localCheckpoint(eager=True)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    held = split.filter((F.col(PART) == TEST) & (F.col(S.RATING) >= cs.relevant)).select(S.CUSTOMER_ID, S.ITEM_ID)
    nm = neighbor_matrix(hybrid_neighbors(cfg, train))
    cold = fit_cold_scorer(spark, cfg, train, inputs, lift=1.0)
    sample = _customer_sample(held, cs.fit_customers, cs.seed).select(S.CUSTOMER_ID).distinct()
    rows = cast(pd.DataFrame, train.join(sample, S.CUSTOMER_ID, "left_semi")
                .select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING).toPandas())
    truth = cast(pd.DataFrame, held.join(sample, S.CUSTOMER_ID, "left_semi").toPandas())
    gains = {int(c): {int(i): 1.0 for i in g[S.ITEM_ID]} for c, g in truth.groupby(S.CUSTOMER_ID)}
    scores: dict[float, float] = {}
    for lift in cs.lift_grid:
        frame = score_batch(rows[S.CUSTOMER_ID].to_numpy(np.int64), rows[S.ITEM_ID].to_numpy(np.int64),
                            rows[S.RATING].to_numpy(np.float64), nm, rc.top_n, rc.threshold, None,
                            replace(cold, lift=lift))
        lists = {int(c): g.sort_values(S.RANK)[S.ITEM_ID].tolist() for c, g in frame.groupby(S.CUSTOMER_ID)}
        scores[lift] = float(np.mean([ndcg_at(lists.get(c, []), g, rc.top_n) for c, g in gains.items()])) \
            if gains else 0.0
    best = max(scores, key=lambda x: (round(scores[x], 12), x))
    return best, scores


def recommend(spark: SparkSession, ratings: DataFrame, nm: NeighborMatrix, fallback: Fallback | None,
              top_n: int, threshold: float, partitions: int, batch_rows: int,
              cold: ColdScorer | None = None) -> DataFrame:
    """Score every customer of ``ratings`` (customer_id, item_id, rating) against the broadcast
    neighbour matrix (and, for the hybrid, the cold-start model), partitioned by customer, streamed
    in bounded batches."""
    b_nm = spark.sparkContext.broadcast(nm)
    b_fb = spark.sparkContext.broadcast(fallback)
    b_cold = spark.sparkContext.broadcast(cold)
    parts = partitions or spark.sparkContext.defaultParallelism

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hybridrec.faults import maybe_fail

        maybe_fail("recommend")
        for frame in score_stream(batches, b_nm.value, top_n, threshold, b_fb.value, batch_rows, b_cold.value):
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
    model: str = "paper"
    cold_items: int = 0
    cold_rows: int = 0
    cold_model: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.rows} recommendations for {self.customers} customers "
               f"({self.fallback_customers} served by the popularity fallback); model {self.model}"]
        if self.model == "hybrid":
            out.append(f"{self.cold_items} cold items (few or no ratings) scored by the cold-start model; "
                       f"{self.cold_rows} list positions went to them")
            out += self.cold_model
        return out


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
    report = RecommendReport(run_id=cfg.run_id, model=rc.model)
    cold = cold_scorer(spark, cfg, ratings, items) if rc.model == "hybrid" else None
    if cold is not None:
        report.cold_items = len(cold.catalogue.cold_ids)
        report.cold_model = cold.model.lines() + [
            f"a cold item takes one of the last {cold.slots} slots at >= {cold.lift:g} x the base rate "
            f"({'fitted on a temporal carve-out' if rc.cold_start.min_lift is None else 'recommend.cold_start.min_lift'})"]
    recs = recommend(spark, ratings, nm, popularity_fallback(ratings, items), rc.top_n, rc.threshold,
                     rc.partitions, rc.batch_rows, cold)
    recs = recs.select(*[F.col(c) for c in OUTPUT_COLUMNS], F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    report.rows = recs.count()
    report.customers = recs.select(S.CUSTOMER_ID).distinct().count()
    report.fallback_customers = recs.filter(F.col(S.SOURCE).startswith("fallback")).select(S.CUSTOMER_ID) \
        .distinct().count()
    report.cold_rows = recs.filter(F.col(S.SOURCE) == SOURCE_COLD_START).count()
    replace_rows(spark, out, recs, f"{S.RUN_ID} = {sql_str(cfg.run_id)}",
                 compare_cols=[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE])
    recs.unpersist()
    spark.sql(f"CREATE OR REPLACE VIEW {cfg.table(S.RECOMMENDATIONS_LATEST)} "
              f"COMMENT 'Recommendations of the newest run' AS {latest_run_query(out)}")
    return report
