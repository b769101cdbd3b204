"""Dense models: every item scored for every customer as user factors . item factors, the top-n
unrated kept - the popularity, ALS, random and genre-affinity recommenders.

* ``popular``: most rated items in the fitted ratings (ties: smaller item id).
* ``als``: Spark ML ALS on implicit feedback (the rating as confidence; the ratings >=
  ``als_min_rating`` are the interactions, 0 = every rating), scores = user . item factors.
* ``random``: a seeded random order (a floor); ``genre_affinity``: each item scores the customer's
  share of liked ratings in the item's genres (the floor of the new-item protocol).

A customer with no fitted rating still gets a list (a placeholder history row); with
``candidates`` (the new-item protocol) the model is restricted to those items.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from typing import Sequence, cast

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf, RecommendConf
from hybridrec.errors import UserError
from hybridrec.models.base import FitData, Fitted, Recommender, history_of, interactions, with_placeholders
from hybridrec.models.topk import top_k_columns
from hybridrec.models.tuning import CUT_OFF, carve_out, coordinate_search
from hybridrec.runtime.batches import map_customer_chunks

OUTPUT = f"{S.CUSTOMER_ID} long, {S.RANK} int, {S.ITEM_ID} long, {S.SCORE} double"
MAX_CELLS = 4_000_000  # customers x items scored at once by a dense model
# ALS cuts its factors' lineage every this many iterations (into the session's checkpoint folder,
# which hybridrec.runtime.session sets): without it, a 20-iteration fit builds a plan so deep that
# deserialising a task overflows the executor's stack (StackOverflowError).
ALS_CHECKPOINT_EVERY = 5


@dataclass(frozen=True)
class DenseModel:
    """Scores = user factors . item factors (popularity: one factor, every user's = 1)."""

    item_ids: np.ndarray  # sorted
    item_factors: np.ndarray  # (items, f)
    user_ids: np.ndarray | None = None  # sorted; None = every customer has factor 1
    user_factors: np.ndarray | None = None
    random_seed: int | None = None  # set: scores are a seeded hash of (customer, item) instead

    def restricted(self, keep: np.ndarray) -> "DenseModel":
        """The same model over the items of ``keep`` only."""
        mask = np.isin(self.item_ids, keep)
        return DenseModel(self.item_ids[mask], self.item_factors[mask], self.user_ids, self.user_factors,
                          self.random_seed)


def dense_top_n(customers: np.ndarray, items: np.ndarray, model: DenseModel, n: int) -> pd.DataFrame:
    """Top-n unrated items per customer of one batch, ties by smaller item id."""
    cust_ids, crow = np.unique(customers, return_inverse=True)
    n_items = len(model.item_ids)
    if n_items == 0:  # e.g. popularity restricted to items nobody rated
        return pd.DataFrame({S.CUSTOMER_ID: np.zeros(0, np.int64), S.RANK: np.zeros(0, np.int32),
                             S.ITEM_ID: np.zeros(0, np.int64), S.SCORE: np.zeros(0)})
    col = np.searchsorted(model.item_ids, items)
    known = (col < n_items) & (model.item_ids[np.minimum(col, n_items - 1)] == items)
    out = []
    step = max(1, MAX_CELLS // max(n_items, 1))
    for lo in range(0, len(cust_ids), step):
        hi = min(lo + step, len(cust_ids))
        if model.random_seed is not None:
            users = np.zeros((hi - lo, 1))
        elif model.user_factors is None or model.user_ids is None:
            users = np.ones((hi - lo, 1))
        else:
            pos = np.searchsorted(model.user_ids, cust_ids[lo:hi])
            pos_c = np.minimum(pos, len(model.user_ids) - 1)
            found = (pos < len(model.user_ids)) & (model.user_ids[pos_c] == cust_ids[lo:hi])
            users = np.where(found[:, None], model.user_factors[pos_c], 0.0)
        scores = users @ model.item_factors.T
        if model.random_seed is not None:
            scores = _hash_scores(cust_ids[lo:hi], model.item_ids, model.random_seed)
        sel = known & (crow >= lo) & (crow < hi)
        scores[crow[sel] - lo, col[sel]] = -np.inf
        order = top_k_columns(scores, n)
        top = np.take_along_axis(scores, order, axis=1)
        r, c = np.nonzero(np.isfinite(top))
        out.append(pd.DataFrame({S.CUSTOMER_ID: cust_ids[lo + r], S.RANK: (c + 1).astype(np.int32),
                                 S.ITEM_ID: model.item_ids[order[r, c]], S.SCORE: top[r, c]}))
    return pd.concat(out, ignore_index=True)


def _hash_scores(customers: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random score in [0, 1) per (customer, item), the same in every task."""
    x = (customers.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
         ^ items.astype(np.uint64)[None, :] * np.uint64(0xC2B2AE3D27D4EB4F) ^ np.uint64(seed * 0x165667B1 + 1))
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def dense_recommend(spark: SparkSession, ratings: DataFrame, model: DenseModel, n: int, partitions: int = 0,
                    batch_rows: int = 200_000) -> DataFrame:
    """Top-n (customer_id, rank, item_id, score) of every customer of ``ratings`` under a dense
    model, streamed per customer partition."""
    b_model = spark.sparkContext.broadcast(model)

    def top(chunk: pd.DataFrame) -> pd.DataFrame:
        return dense_top_n(chunk[S.CUSTOMER_ID].to_numpy(np.int64), chunk[S.ITEM_ID].to_numpy(np.int64),
                           b_model.value, n)

    return map_customer_chunks(ratings.select(S.CUSTOMER_ID, S.ITEM_ID), top, OUTPUT, partitions=partitions,
                               max_rows=batch_rows)


def popularity_model(train: DataFrame) -> DenseModel:
    pdf = cast(pd.DataFrame, train.groupBy(S.ITEM_ID).agg(F.countDistinct(S.CUSTOMER_ID).alias("n"))
                .orderBy(S.ITEM_ID).toPandas())
    return DenseModel(pdf[S.ITEM_ID].to_numpy(np.int64), pdf["n"].to_numpy(np.float64)[:, None])


def als_model(train: DataFrame, ec: EvaluateConf) -> DenseModel:
    """Spark ML ALS with implicit preferences (confidence 1 + alpha * rating) over the ratings >=
    ``ec.als_min_rating``."""
    train = interactions(train, ec.als_min_rating)
    bounds = train.agg(F.max(S.CUSTOMER_ID), F.max(S.ITEM_ID), F.min(S.CUSTOMER_ID), F.min(S.ITEM_ID)).first()
    if bounds is not None and any(v is not None and abs(int(v)) >= 2**31 for v in bounds):
        raise UserError("evaluate model als: customer or item ids exceed ALS's 32-bit integer ids; "
                        "drop 'als' from evaluate.models")
    data = train.select(F.col(S.CUSTOMER_ID).cast("int").alias("u"), F.col(S.ITEM_ID).cast("int").alias("i"),
                        F.col(S.RATING).cast("float").alias("r"))
    als = ALS(userCol="u", itemCol="i", ratingCol="r", implicitPrefs=True, rank=ec.als_rank, regParam=ec.als_reg,
              alpha=ec.als_alpha, maxIter=ec.als_iterations, seed=ec.seed, coldStartStrategy="drop",
              checkpointInterval=ALS_CHECKPOINT_EVERY)
    fitted = als.fit(data)
    items = cast(pd.DataFrame, fitted.itemFactors.orderBy("id").toPandas())
    users = cast(pd.DataFrame, fitted.userFactors.orderBy("id").toPandas())
    return DenseModel(items["id"].to_numpy(np.int64), np.stack(items["features"].to_numpy()).astype(np.float64),
                      users["id"].to_numpy(np.int64), np.stack(users["features"].to_numpy()).astype(np.float64))


def random_model(train: DataFrame, items: DataFrame, seed: int) -> DenseModel:
    ids = np.sort(cast(pd.DataFrame, items.select(S.ITEM_ID).toPandas())[S.ITEM_ID].to_numpy(np.int64))
    return DenseModel(ids, np.zeros((len(ids), 1)), random_seed=seed)


def genre_affinity_model(train: DataFrame, items: DataFrame, threshold: float) -> DenseModel:
    """user factor g = the customer's share of liked training ratings (> threshold) in genre g;
    item factor g = 1 when the item has genre g: an item scores the customer's share of its genres."""
    genres = cast(pd.DataFrame, items.select(S.ITEM_ID, S.GENRES).toPandas())
    names = sorted({g for gs in genres[S.GENRES] for g in (gs if gs is not None else [])})
    col = {g: i for i, g in enumerate(names)}
    genres = genres.sort_values(S.ITEM_ID)
    item_f = np.zeros((len(genres), max(len(names), 1)))
    for r, gs in enumerate(genres[S.GENRES]):
        for g in gs if gs is not None else []:
            item_f[r, col[g]] = 1.0
    liked = train.filter(F.col(S.RATING) > threshold).join(items.select(S.ITEM_ID, S.GENRES), S.ITEM_ID) \
        .select(S.CUSTOMER_ID, F.explode(S.GENRES).alias("_g")).groupBy(S.CUSTOMER_ID, "_g").count()
    shares = cast(pd.DataFrame, liked.toPandas())
    users = np.sort(shares[S.CUSTOMER_ID].unique().astype(np.int64))
    user_f = np.zeros((len(users), item_f.shape[1]))
    if len(shares):
        user_f[np.searchsorted(users, shares[S.CUSTOMER_ID].to_numpy(np.int64)),
               shares["_g"].map(col).to_numpy(np.int64)] = shares["count"].to_numpy(np.float64)
        user_f /= np.maximum(user_f.sum(1, keepdims=True), 1.0)
    return DenseModel(genres[S.ITEM_ID].to_numpy(np.int64), item_f, users, user_f)


# ---- the registered recommenders ----------------------------------------------------------------
class FittedDense(Fitted):
    """A dense model fitted on ``ratings``: lists for their customers (or any others)."""

    def __init__(self, data: FitData, model: DenseModel, source: str, partitions: int, batch_rows: int) -> None:
        self.data, self.model, self.source = data, model, source
        self.partitions, self.batch_rows = partitions, batch_rows

    def recommend(self, customers: DataFrame | None, n: int, candidates: DataFrame | None = None) -> DataFrame:
        model = self.model
        if candidates is not None:
            keep = cast(pd.DataFrame, candidates.toPandas())[S.ITEM_ID].to_numpy(np.int64)
            model = model.restricted(keep)
        rows = with_placeholders(history_of(self.data.ratings, customers), customers)
        top = dense_recommend(self.data.spark, rows, model, n, self.partitions, self.batch_rows)
        return top.select(S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, F.lit(None).cast("long").alias(S.BECAUSE_ITEM_ID),
                          F.lit(self.source).alias(S.SOURCE))


class _Dense(Recommender):
    @abstractmethod
    def build(self, data: FitData) -> DenseModel:
        """The dense model fitted on ``data.ratings``."""

    def fit(self, data: FitData) -> Fitted:
        rc = self.conf.recommend
        return FittedDense(data, self.build(data), self.name, rc.partitions, rc.batch_rows)


class Popular(_Dense):
    name = "popular"

    def build(self, data: FitData) -> DenseModel:
        return popularity_model(data.ratings)


def tuned_als(data: FitData, ec: EvaluateConf) -> tuple[EvaluateConf, dict[str, float]]:
    """ALS's interaction threshold, rank, regularisation, alpha and iterations chosen on a temporal carve-out of the
    fitted ratings by coordinate search (:mod:`hybridrec.models.tuning`): each candidate is fitted
    on the carve-out's training part and its lists for the sampled customers scored on the driver."""
    carve = carve_out(data.ratings, ec.tune_customers, ec.seed)
    customers = carve.rows[S.CUSTOMER_ID].to_numpy(np.int64)
    items = carve.rows[S.ITEM_ID].to_numpy(np.int64)
    sample = np.unique(customers)

    def score(params: dict[str, object]) -> float:
        model = als_model(carve.train, replace(ec, **params))  # type: ignore[arg-type]
        assert model.user_ids is not None and model.user_factors is not None
        keep = np.isin(model.user_ids, sample)
        model = DenseModel(model.item_ids, model.item_factors, model.user_ids[keep], model.user_factors[keep])
        return carve.ndcg(dense_top_n(customers, items, model, CUT_OFF))

    start: dict[str, object] = {"als_min_rating": ec.als_min_rating, "als_rank": ec.als_rank, "als_reg": ec.als_reg,
                                "als_alpha": ec.als_alpha, "als_iterations": ec.als_iterations}
    grid: dict[str, Sequence[object]] = {"als_min_rating": ec.als_min_ratings, "als_rank": ec.als_ranks, "als_reg": ec.als_regs, "als_alpha": ec.als_alphas,
            "als_iterations": ec.als_iteration_grid}
    best, scores = coordinate_search(start, grid, score)
    return replace(ec, **best), scores  # type: ignore[arg-type]


class FittedAls(FittedDense):
    def __init__(self, data: FitData, model: DenseModel, rc: RecommendConf, settings: str) -> None:
        super().__init__(data, model, "als", rc.partitions, rc.batch_rows)
        self.settings = settings

    def lines(self) -> list[str]:
        return [f"als: {self.settings}"]


class Als(_Dense):
    name = "als"

    def build(self, data: FitData) -> DenseModel:
        return als_model(data.ratings, self.conf.evaluate)

    def fit(self, data: FitData) -> Fitted:
        ec, rc = self.conf.evaluate, self.conf.recommend
        how = "evaluate.als_* (als_tune: false)"
        if ec.als_tune:
            ec, scores = tuned_als(data, ec)
            how = f"chosen on a temporal carve-out from {len(scores)} candidates, best nDCG@10 {max(scores.values()):.4f}"
        settings = f"interactions = ratings >= {ec.als_min_rating:g}, rank {ec.als_rank}, reg {ec.als_reg:g}, alpha {ec.als_alpha:g}, {ec.als_iterations} iterations ({how})"
        return FittedAls(data, als_model(data.ratings, ec), rc, settings)


class RandomOrder(_Dense):
    name = "random"

    def build(self, data: FitData) -> DenseModel:
        return random_model(data.ratings, data.items, self.conf.evaluate.seed)


class GenreAffinity(_Dense):
    name = "genre_affinity"

    def build(self, data: FitData) -> DenseModel:
        return genre_affinity_model(data.ratings, data.items, self.conf.recommend.threshold)
