"""The models the evaluation compares, each trained on the training part only and each returning
the top-n (customer_id, rank, item_id, score) of the evaluated customers, never an item the
customer rated in training.

* ``popular``: most rated items in training (ties: smaller item id).
* ``item_knn``: rating-based item-item cosine (:mod:`hybridrec.ratingsim`) through the product's
  scoring (sum of sim * rating over liked items).
* ``als``: Spark ML ALS on implicit feedback (the rating as confidence), scores = user . item factors.
* ``visual``: poster neighbours with no category blocking (one block of every item).
* ``paper``: the paper's method - poster neighbours within the configured categories (this run's
  ``item_neighbors`` when the similarity stage wrote image-only ones).
* ``paper_rating``: paper blended with rating cosine (``evaluate.blend_weight`` / ``blend_shrinkage``).
* ``hybrid``: the default recommender - rating neighbours (shrunk by ``similarity.rating_shrinkage``)
  for items with ratings, and the cold-start model (:mod:`hybridrec.coldstart`) fitted on a
  carve-out of the training part for the items with few or none.
* ``random``: a seeded random order (a floor); ``genre_affinity``: each item scores the customer's
  share of liked training ratings in the item's genres (the floor of the new-item protocol).

With ``candidates`` (the new-item protocol) every model ranks only those items: dense models are
restricted to them, neighbour models keep only neighbours among them and serve no fallback.

Neighbour models go through :func:`hybridrec.recommend.recommend` exactly as the recommend stage
does (with its labelled popularity fallback for customers left without candidates).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError

OUTPUT = f"{S.CUSTOMER_ID} long, {S.RANK} int, {S.ITEM_ID} long, {S.SCORE} double"
MAX_CELLS = 4_000_000  # customers x items scored at once by a dense model


@dataclass
class ModelInputs:
    train: DataFrame  # customer_id, item_id, rating, timestamp (the training part only)
    customers: DataFrame  # customer_id of the evaluated customers
    n: int  # list length
    candidates: DataFrame | None = None  # item_id: rank only these (the new-item protocol); None = every item
    cache: dict[str, DataFrame] = field(default_factory=dict)


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
        order = np.lexsort((np.broadcast_to(np.arange(n_items), scores.shape), -scores), axis=-1)[:, :n]
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
    """Top-n of every customer of ``ratings`` under a dense model, streamed per customer partition."""
    from hybridrec.scoring import customer_chunks

    b_model = spark.sparkContext.broadcast(model)
    parts = partitions or spark.sparkContext.defaultParallelism

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in customer_chunks(batches, batch_rows):
            yield dense_top_n(chunk[S.CUSTOMER_ID].to_numpy(np.int64), chunk[S.ITEM_ID].to_numpy(np.int64),
                              b_model.value, n)

    return ratings.select(S.CUSTOMER_ID, S.ITEM_ID).repartition(parts, S.CUSTOMER_ID) \
        .sortWithinPartitions(S.CUSTOMER_ID).mapInPandas(run, OUTPUT)  # type: ignore[arg-type]


def popularity_model(train: DataFrame) -> DenseModel:
    pdf = cast(pd.DataFrame, train.groupBy(S.ITEM_ID).agg(F.countDistinct(S.CUSTOMER_ID).alias("n"))
                .orderBy(S.ITEM_ID).toPandas())
    return DenseModel(pdf[S.ITEM_ID].to_numpy(np.int64), pdf["n"].to_numpy(np.float64)[:, None])


def als_model(train: DataFrame, cfg: Config) -> DenseModel:
    """Spark ML ALS with implicit preferences (confidence 1 + alpha * rating)."""
    from pyspark.ml.recommendation import ALS

    ec = cfg.evaluate
    bounds = train.agg(F.max(S.CUSTOMER_ID), F.max(S.ITEM_ID), F.min(S.CUSTOMER_ID), F.min(S.ITEM_ID)).first()
    if bounds is not None and any(v is not None and abs(int(v)) >= 2**31 for v in bounds):
        raise UserError("evaluate model als: customer or item ids exceed ALS's 32-bit integer ids; "
                        "drop 'als' from evaluate.models")
    data = train.select(F.col(S.CUSTOMER_ID).cast("int").alias("u"), F.col(S.ITEM_ID).cast("int").alias("i"),
                        F.col(S.RATING).cast("float").alias("r"))
    als = ALS(userCol="u", itemCol="i", ratingCol="r", implicitPrefs=True, rank=ec.als_rank, regParam=ec.als_reg,
              alpha=ec.als_alpha, maxIter=ec.als_iterations, seed=ec.seed, coldStartStrategy="drop")
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


def _image(spark: SparkSession, cfg: Config, inputs: ModelInputs, blocks: str | None) -> DataFrame:
    """Poster neighbours within ``blocks`` (None: the configured categories). For the configured
    blocks, this run's ``item_neighbors`` are reused when they hold image similarity only
    (``similarity.rating_weight`` 0: nothing learned from ratings, so nothing held out leaks in);
    otherwise they are computed here."""
    from hybridrec.similarity import SimilarityReport, image_neighbors

    key = f"image:{blocks}"
    if key in inputs.cache:
        return inputs.cache[key]
    stored = None
    if blocks is None and cfg.similarity.rating_weight == 0:
        name = cfg.table(S.ITEM_NEIGHBORS)
        if spark.catalog.tableExists(name.replace("`", "")):
            stored = spark.table(name).filter(F.col(S.RUN_ID) == cfg.run_id)
            stored = stored if not stored.isEmpty() else None
    if stored is None:
        stored = image_neighbors(spark, cfg, SimilarityReport(cfg.run_id), blocks)
    inputs.cache[key] = stored.select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.SHARED_GENRES, S.RANK) \
        .localCheckpoint(eager=True)
    return inputs.cache[key]


def _rating(cfg: Config, inputs: ModelInputs) -> DataFrame:
    from hybridrec.ratingsim import configured_rating_neighbors

    if "rating" not in inputs.cache:
        inputs.cache["rating"] = configured_rating_neighbors(cfg, inputs.train).localCheckpoint(eager=True)
    return inputs.cache["rating"]


def neighbors_for(spark: SparkSession, cfg: Config, model: str, inputs: ModelInputs) -> DataFrame:
    """(item_id, neighbor_id, similarity) of a neighbour model, from the training part only."""
    from hybridrec.ratingsim import blend_neighbors, shrunk_rating_neighbors

    if model == "item_knn":
        return _rating(cfg, inputs)
    if model == "visual":
        return _image(spark, cfg, inputs, "none")
    if model == "paper":
        return _image(spark, cfg, inputs, None)
    if model == "hybrid":  # item_knn's neighbours, shrunk as the similarity stage does for the hybrid
        return shrunk_rating_neighbors(cfg, _rating(cfg, inputs))
    if model == "paper_rating":
        ec = cfg.evaluate
        return blend_neighbors(_image(spark, cfg, inputs, None), _rating(cfg, inputs), ec.blend_weight,
                               ec.blend_shrinkage, cfg.similarity.top_k)
    raise UserError(f"evaluate: unknown model '{model}'")


def recommend_with(spark: SparkSession, cfg: Config, model: str, inputs: ModelInputs) -> DataFrame:
    """The model's top-n (customer_id, rank, item_id, score) for the evaluated customers."""
    from hybridrec.recommend import cold_scorer, neighbor_matrix, popularity_fallback, recommend
    from hybridrec.scoring import Fallback
    from hybridrec.tables import ensure_table

    rc = cfg.recommend
    history = inputs.train.join(inputs.customers, S.CUSTOMER_ID, "left_semi")
    items = spark.table(ensure_table(spark, cfg, S.ITEMS))
    keep = None
    if inputs.candidates is not None:
        keep = cast(pd.DataFrame, inputs.candidates.toPandas())[S.ITEM_ID].to_numpy(np.int64)
    dense = {"popular": lambda: popularity_model(inputs.train), "als": lambda: als_model(inputs.train, cfg),
             "random": lambda: random_model(inputs.train, items, cfg.evaluate.seed),
             "genre_affinity": lambda: genre_affinity_model(inputs.train, items, rc.threshold)}
    # a customer with no training rating (new-item protocol) still gets the dense models' and the
    # cold-start model's list: one placeholder row (an unknown item, rated 0)
    absent = inputs.customers.join(history, S.CUSTOMER_ID, "left_anti").select(
        S.CUSTOMER_ID, F.lit(-1).cast("long").alias(S.ITEM_ID), F.lit(0.0).alias(S.RATING),
        F.lit(None).cast("timestamp").alias(S.TIMESTAMP))
    with_absent = history.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP).unionByName(absent)
    if model in dense:
        dm = dense[model]()
        dm = dm.restricted(keep) if keep is not None else dm
        return dense_recommend(spark, with_absent, dm, inputs.n, rc.partitions, rc.batch_rows)
    neighbors = neighbors_for(spark, cfg, model, inputs)
    fallback: Fallback | None = popularity_fallback(inputs.train, items)
    if inputs.candidates is not None:  # only candidates can be recommended: neighbours into them, no fallback
        neighbors = neighbors.join(inputs.candidates.withColumnRenamed(S.ITEM_ID, S.NEIGHBOR_ID), S.NEIGHBOR_ID,
                                   "left_semi")
        fallback = None
    nm = neighbor_matrix(neighbors)
    cold = None
    if model == "hybrid":
        cold = cold_scorer(spark, cfg, inputs.train, items, keep)
        history = with_absent
    recs = recommend(spark, history, nm, fallback, inputs.n, rc.threshold, rc.partitions, rc.batch_rows, cold)
    return recs.select(S.CUSTOMER_ID, F.col(S.RANK).cast("int").alias(S.RANK), S.ITEM_ID, S.SCORE)
