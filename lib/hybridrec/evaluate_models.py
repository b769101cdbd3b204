"""The models the evaluation compares, each trained on the training part only and each returning
the top-n (customer_id, rank, item_id, score) of the evaluated customers, never an item the
customer rated in training.

* ``popular``: most rated items in training (ties: smaller item id).
* ``item_knn``: rating-based item-item cosine (:mod:`hybridrec.ratingsim`) through the product's
  scoring (sum of sim * rating over liked items).
* ``als``: Spark ML ALS on implicit feedback (the rating as confidence), scores = user . item factors.
* ``visual``: poster neighbours with no category blocking (one block of every item).
* ``hybrid``: the paper's method - poster neighbours within the configured categories (this run's
  ``item_neighbors`` when the similarity stage wrote image-only ones).
* ``hybrid_rating``: hybrid blended with rating cosine (``evaluate.blend_weight`` / ``blend_shrinkage``).

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
    cache: dict[str, DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class DenseModel:
    """Scores = user factors . item factors (popularity: one factor, every user's = 1)."""

    item_ids: np.ndarray  # sorted
    item_factors: np.ndarray  # (items, f)
    user_ids: np.ndarray | None = None  # sorted; None = every customer has factor 1
    user_factors: np.ndarray | None = None


def dense_top_n(customers: np.ndarray, items: np.ndarray, model: DenseModel, n: int) -> pd.DataFrame:
    """Top-n unrated items per customer of one batch, ties by smaller item id."""
    cust_ids, crow = np.unique(customers, return_inverse=True)
    n_items = len(model.item_ids)
    col = np.searchsorted(model.item_ids, items)
    known = (col < n_items) & (model.item_ids[np.minimum(col, n_items - 1)] == items)
    out = []
    step = max(1, MAX_CELLS // max(n_items, 1))
    for lo in range(0, len(cust_ids), step):
        hi = min(lo + step, len(cust_ids))
        if model.user_factors is None or model.user_ids is None:
            users = np.ones((hi - lo, 1))
        else:
            pos = np.searchsorted(model.user_ids, cust_ids[lo:hi])
            pos_c = np.minimum(pos, len(model.user_ids) - 1)
            found = (pos < len(model.user_ids)) & (model.user_ids[pos_c] == cust_ids[lo:hi])
            users = np.where(found[:, None], model.user_factors[pos_c], 0.0)
        scores = users @ model.item_factors.T
        sel = known & (crow >= lo) & (crow < hi)
        scores[crow[sel] - lo, col[sel]] = -np.inf
        order = np.lexsort((np.broadcast_to(np.arange(n_items), scores.shape), -scores), axis=-1)[:, :n]
        top = np.take_along_axis(scores, order, axis=1)
        r, c = np.nonzero(np.isfinite(top))
        out.append(pd.DataFrame({S.CUSTOMER_ID: cust_ids[lo + r], S.RANK: (c + 1).astype(np.int32),
                                 S.ITEM_ID: model.item_ids[order[r, c]], S.SCORE: top[r, c]}))
    if not out:
        return pd.DataFrame({S.CUSTOMER_ID: [], S.RANK: [], S.ITEM_ID: [], S.SCORE: []})
    return pd.concat(out, ignore_index=True)


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
    from hybridrec.ratingsim import RatingSimParams, rating_neighbors

    if "rating" not in inputs.cache:
        sc = cfg.similarity
        params = RatingSimParams(sc.top_k, sc.rating_min_support, sc.rating_max_history)
        inputs.cache["rating"] = rating_neighbors(inputs.train, params).localCheckpoint(eager=True)
    return inputs.cache["rating"]


def neighbors_for(spark: SparkSession, cfg: Config, model: str, inputs: ModelInputs) -> DataFrame:
    """(item_id, neighbor_id, similarity) of a neighbour model, from the training part only."""
    from hybridrec.ratingsim import blend_neighbors

    if model == "item_knn":
        return _rating(cfg, inputs)
    if model == "visual":
        return _image(spark, cfg, inputs, "none")
    if model == "hybrid":
        return _image(spark, cfg, inputs, None)
    if model == "hybrid_rating":
        ec = cfg.evaluate
        return blend_neighbors(_image(spark, cfg, inputs, None), _rating(cfg, inputs), ec.blend_weight,
                               ec.blend_shrinkage, cfg.similarity.top_k)
    raise UserError(f"evaluate: unknown model '{model}'")


def recommend_with(spark: SparkSession, cfg: Config, model: str, inputs: ModelInputs) -> DataFrame:
    """The model's top-n (customer_id, rank, item_id, score) for the evaluated customers."""
    from hybridrec.recommend import neighbor_matrix, popularity_fallback, recommend
    from hybridrec.tables import ensure_table

    rc = cfg.recommend
    history = inputs.train.join(inputs.customers, S.CUSTOMER_ID, "left_semi")
    if model == "popular":
        return dense_recommend(spark, history, popularity_model(inputs.train), inputs.n, rc.partitions, rc.batch_rows)
    if model == "als":
        return dense_recommend(spark, history, als_model(inputs.train, cfg), inputs.n, rc.partitions, rc.batch_rows)
    nm = neighbor_matrix(neighbors_for(spark, cfg, model, inputs))
    items = spark.table(ensure_table(spark, cfg, S.ITEMS))
    recs = recommend(spark, history, nm, popularity_fallback(inputs.train, items), inputs.n, rc.threshold,
                     rc.partitions, rc.batch_rows)
    return recs.select(S.CUSTOMER_ID, F.col(S.RANK).cast("int").alias(S.RANK), S.ITEM_ID, S.SCORE)
