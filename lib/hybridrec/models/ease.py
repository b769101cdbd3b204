"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form
item-item model, and a tuned baseline as strong as any a user would pick instead.

    G = X^T X (binary customer x item interactions - ratings >= ``ease_min_rating``, 0 = every
               rating - over the ``ease_items`` most-rated items, counting every rating)
    P = (G + lambda I)^-1,   B = I - P / diag(P)   (so diag(B) = 0)
    score(u, j) = sum over the customer's items k of B[k, j]

The Gram matrix is computed with Spark (each customer partition adds its X_p^T X_p; a tree
reduce sums them), so the driver holds N x N numbers whatever the number of customers; the
driver inverts it. Serving keeps each item's ``ease_top_k`` weights of largest magnitude and scores them the
way every neighbour model is scored (bounded customer batches on the executors, the "because"
item included), with every interaction counting 1 and every rated item excluded. ``lambda`` and
the interaction threshold are chosen together from ``ease_lambdas`` x ``ease_min_ratings`` on a
temporal carve-out of the fitted ratings (never the evaluation's test part): on MovieLens 100K's
temporal protocol the liked ratings (>= 4) alone give 0.185 nDCG@10 against 0.170 for every
rating, so the threshold is a setting to tune, not a constant.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf, RecommendConf
from hybridrec.models.base import FitData, Fitted, Recommender, interaction_values, interactions
from hybridrec.models.neighborhood import FittedNeighbors
from hybridrec.models.scoring import NeighborMatrix, score_batch
from hybridrec.models.tuning import CUT_OFF, best_of, carve_out


def top_items(ratings: DataFrame, n: int) -> np.ndarray:
    """The ``n`` most-rated items (ties: smaller id), sorted by id."""
    top = ratings.groupBy(S.ITEM_ID).count().orderBy(F.desc("count"), S.ITEM_ID).limit(n)
    return np.sort(cast(pd.DataFrame, top.toPandas())[S.ITEM_ID].to_numpy(np.int64))


def gram_matrix(ratings: DataFrame, item_ids: np.ndarray, max_rows: int = 200_000) -> np.ndarray:
    """X^T X over ``item_ids`` (binary interactions: a pair rated twice counts once). Each customer
    partition streams its rows as Arrow batches in customer chunks of about ``max_rows`` rows, adds
    every chunk's X_c^T X_c to one N x N sum of counts and hands on its upper triangle as one binary
    row of int32 (a quarter of the dense float64 matrix: at small sizes shipping 16 dense matrices
    cost more than the product; Arrow's 2 GiB value limit: N up to about 32,000); a tree reduce sums
    the partitions' triangles, so the driver holds a few N x N arrays whatever the number of customers."""
    from scipy import sparse

    from hybridrec.runtime.batches import customer_chunks, default_partitions

    spark = ratings.sparkSession
    n = len(item_ids)
    index = spark.createDataFrame(pd.DataFrame({S.ITEM_ID: item_ids, "_col": np.arange(n, dtype=np.int64)}))
    cells = ratings.select(S.CUSTOMER_ID, S.ITEM_ID).join(F.broadcast(index), S.ITEM_ID).select(S.CUSTOMER_ID, "_col")

    def partial(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = None
        for chunk in customer_chunks(batches, max_rows):
            _, row = np.unique(chunk[S.CUSTOMER_ID].to_numpy(np.int64), return_inverse=True)
            x = sparse.csr_matrix((np.ones(len(row), np.float32), (row, chunk["_col"].to_numpy(np.int64))),
                                  shape=(int(row.max()) + 1, n))
            x.data[:] = 1.0  # duplicates were summed: binary again
            g = np.rint(np.asarray((x.T @ x).todense())).astype(np.int64)  # co-rating counts: integers
            if total is None:
                total = g
            else:
                total += g
        if total is not None:  # the upper triangle as int32 (a partition's counts stay below 2^31 customers)
            yield pd.DataFrame({"gram": [total[np.triu_indices(n)].astype("<i4").tobytes()]})

    parts = cells.repartition(default_partitions(spark), S.CUSTOMER_ID).sortWithinPartitions(S.CUSTOMER_ID) \
        .mapInPandas(partial, "gram binary")  # type: ignore[arg-type]
    triangles = parts.rdd.map(lambda r: np.frombuffer(r[0], "<i4").astype(np.int64))
    # one pass: a tree aggregate from None (no ratings: None) instead of an emptiness check that
    # would compute the first partition's Gram once more
    total = triangles.treeAggregate(None, _add_or_take, _add_or_take, depth=2)
    upper = np.zeros((n, n))
    if total is not None:
        upper[np.triu_indices(n)] = total
    return upper + np.triu(upper, 1).T


def _add_or_take(acc: np.ndarray | None, part: np.ndarray | None) -> np.ndarray | None:
    return part if acc is None else acc if part is None else acc + part


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """B = I - P / diag(P), P = (G + lam I)^-1: the closed form, diag(B) = 0."""
    p = np.linalg.inv(gram + lam * np.eye(len(gram)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def sparsified(item_ids: np.ndarray, b: np.ndarray, top_k: int) -> NeighborMatrix:
    """Each item's ``top_k`` weights B[k, j] of largest magnitude as a neighbour matrix (k -> j).
    Negative weights are kept: on MovieLens 100K they are worth 0.015 of nDCG@10 (positive-only
    0.156 against 0.170 for the full B at the same lambda)."""
    n = len(item_ids)
    k = min(top_k, n - 1)
    if k < 1:
        return NeighborMatrix.from_pairs(item_ids[:0], item_ids[:0], np.zeros(0), all_items=item_ids)
    mag = np.abs(b)
    np.fill_diagonal(mag, -1.0)  # never an item's own weight
    cols = np.argpartition(-mag, kth=k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    flat = cols.ravel()
    vals = b[rows, flat]
    keep = (vals != 0) & (rows != flat)
    return NeighborMatrix.from_pairs(item_ids[rows[keep]], item_ids[flat[keep]], vals[keep].astype(np.float64),
                                     all_items=item_ids)


def neighbor_rows(spark: SparkSession, nm: NeighborMatrix) -> DataFrame:
    """The neighbour matrix as (item_id, neighbor_id, similarity) rows."""
    m = nm.csr().tocoo()
    return spark.createDataFrame(pd.DataFrame({S.ITEM_ID: nm.item_ids[m.row], S.NEIGHBOR_ID: nm.item_ids[m.col],
                                               S.SIMILARITY: m.data.astype(np.float64)}))


@dataclass(frozen=True)
class EaseFit:
    lam: float
    min_rating: float  # the smallest rating that counts as an interaction
    scores: dict[tuple[float, float], float]  # carve-out nDCG@10 of each (min_rating, lambda) tried (empty: not tuned)
    items: int


@dataclass(frozen=True)
class ItemGram:
    """Some ratings' ``n`` most-rated items (sorted ids; by every rating, whatever counts as an
    interaction) and the Gram matrix X^T X of their interactions (ratings >= ``min_rating``)."""

    ids: np.ndarray
    gram: np.ndarray

    @staticmethod
    def of(ratings: DataFrame, n: int, min_rating: float = 0.0) -> "ItemGram":
        return ItemGram.over(ratings, top_items(ratings, n), min_rating)

    @staticmethod
    def over(ratings: DataFrame, ids: np.ndarray, min_rating: float = 0.0) -> "ItemGram":
        """The Gram matrix of the interactions in ``ratings`` over the given items."""
        return ItemGram(ids, gram_matrix(interactions(ratings, min_rating), ids))


@dataclass(frozen=True)
class EaseChoice:
    """EASE's settings as chosen on a carve-out, and the Gram matrices of that carve-out's training
    part (one per interaction threshold tried) for a caller that fits more on the same part."""

    lam: float
    min_rating: float
    scores: dict[tuple[float, float], float]  # (min_rating, lambda) -> carve-out nDCG@10; empty: not tuned
    train_grams: dict[float, ItemGram]  # min_rating -> the Gram of the carve-out's training part

    @property
    def train_gram(self) -> ItemGram:
        """The carve-out training part's Gram of the chosen threshold."""
        return self.train_grams[self.min_rating]


def choose_ease(data: FitData, ec: EvaluateConf) -> EaseChoice:
    """The (``ease_min_ratings`` x ``ease_lambdas``) pair with the best nDCG@10 on a temporal
    carve-out of ``data.ratings`` (:mod:`hybridrec.models.tuning`); a setting fixed in the config
    (``ease_lambda``, ``ease_min_rating``) is not searched. One Gram matrix per threshold. Every
    carve-out of the same ratings with the default holdout has the same training part (the split
    does not depend on the customers sampled), so a caller fitting more on a carve-out reuses
    :attr:`EaseChoice.train_grams`."""
    carve = carve_out(data.ratings, ec.tune_customers, ec.seed)
    floors = [ec.ease_min_rating] if ec.ease_min_rating is not None else list(dict.fromkeys(ec.ease_min_ratings))
    lams = [ec.ease_lambda] if ec.ease_lambda is not None else ec.ease_lambdas
    ids = top_items(carve.train, ec.ease_items)
    grams = {m: ItemGram.over(carve.train, ids, m) for m in floors}
    if len(floors) * len(lams) == 1:
        return EaseChoice(lams[0], floors[0], {}, grams)
    rows = carve.rows
    customers, items = rows[S.CUSTOMER_ID].to_numpy(np.int64), rows[S.ITEM_ID].to_numpy(np.int64)
    ratings = rows[S.RATING].to_numpy(np.float64)
    scores: dict[tuple[float, float], float] = {}
    for m, g in grams.items():
        values = interaction_values(ratings, m)
        for lam in lams:
            nm = sparsified(g.ids, ease_weights(g.gram, lam), ec.ease_top_k)
            scores[(m, lam)] = carve.ndcg(score_batch(customers, items, values, nm, CUT_OFF, 0.0))
    m, lam = best_of(scores)
    return EaseChoice(lam, m, scores, grams)


class FittedEase(FittedNeighbors):
    """EASE's weights served as neighbours: every interaction counts 1, a rating below the
    threshold 0 (threshold 0: it adds nothing, but its item is still excluded as rated)."""

    def __init__(self, data: FitData, neighbors: DataFrame, fit: EaseFit, rc: RecommendConf) -> None:
        values = F.when(F.col(S.RATING) >= fit.min_rating, F.lit(1.0)).otherwise(F.lit(0.0))
        super().__init__(data.on(data.ratings.withColumn(S.RATING, values)), neighbors, replace(rc, threshold=0.0))
        self.fit = fit

    def lines(self) -> list[str]:
        tuned = ", ".join(f"ratings >= {m:g} & {lam:g}: {v:.4f}" for (m, lam), v in self.fit.scores.items())
        how = f"chosen on a temporal carve-out, nDCG@10 {tuned}" if self.fit.scores \
            else "evaluate.ease_lambda and ease_min_rating"
        return [f"ease: {self.fit.items} items, interactions = ratings >= {self.fit.min_rating:g}, "
                f"lambda {self.fit.lam:g} ({how})"]


class Ease(Recommender):
    name = "ease"

    def fit(self, data: FitData) -> Fitted:
        ec, rc = self.conf.evaluate, self.conf.recommend
        lam, m = ec.ease_lambda, ec.ease_min_rating
        scores: dict[tuple[float, float], float] = {}
        if lam is None or m is None:
            choice = choose_ease(data, ec)
            lam, m, scores = choice.lam, choice.min_rating, choice.scores
        g = ItemGram.of(data.ratings, ec.ease_items, m)
        nm = sparsified(g.ids, ease_weights(g.gram, lam), ec.ease_top_k)
        neighbors = neighbor_rows(data.spark, nm).localCheckpoint(eager=True)
        return FittedEase(data, neighbors, EaseFit(lam, m, scores, len(g.ids)), rc)
