"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form
item-item model, and a tuned baseline as strong as any a user would pick instead.

    G = X^T X (binary customer x item interactions, the ``ease_items`` most-rated items)
    P = (G + lambda I)^-1,   B = I - P / diag(P)   (so diag(B) = 0)
    score(u, j) = sum over the customer's items k of B[k, j]

The Gram matrix is computed with Spark (each customer partition adds its X_p^T X_p; a tree
reduce sums them), so the driver holds N x N numbers whatever the number of customers; the
driver inverts it. Serving keeps each item's ``ease_top_k`` weights of largest magnitude and scores them the
way every neighbour model is scored (bounded customer batches on the executors, the "because"
item included), with every interaction counting 1. ``lambda`` is chosen from ``ease_lambdas``
on a temporal carve-out of the fitted ratings (never the evaluation's test part).
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
from hybridrec.models.base import FitData, Fitted, Recommender
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
    scores: dict[float, float]  # carve-out nDCG@10 of every candidate lambda (empty: not tuned)
    items: int


@dataclass(frozen=True)
class ItemGram:
    """Some ratings' ``n`` most-rated items (sorted ids) and their Gram matrix X^T X."""

    ids: np.ndarray
    gram: np.ndarray

    @staticmethod
    def of(ratings: DataFrame, n: int) -> "ItemGram":
        ids = top_items(ratings, n)
        return ItemGram(ids, gram_matrix(ratings, ids))


def choose_lambda(data: FitData, ec: EvaluateConf, train_gram: ItemGram | None = None
                  ) -> tuple[float, dict[float, float]]:
    """The ``ease_lambdas`` candidate with the best nDCG@10 on a temporal carve-out of
    ``data.ratings`` (:mod:`hybridrec.models.tuning`); the carve-out's Gram matrix is built once.
    ``train_gram``: that Gram when the caller has it - the ``ease_items`` of the training part of
    any :func:`carve_out` of ``data.ratings`` with the default holdout (the split does not depend on
    the customers sampled), so a model tuning several things on carve-outs computes it once."""
    carve = carve_out(data.ratings, ec.tune_customers, ec.seed)
    g = train_gram if train_gram is not None else ItemGram.of(carve.train, ec.ease_items)
    ids, gram = g.ids, g.gram
    rows = carve.rows
    scores: dict[float, float] = {}
    for lam in ec.ease_lambdas:
        nm = sparsified(ids, ease_weights(gram, lam), ec.ease_top_k)
        scores[lam] = carve.ndcg(score_batch(rows[S.CUSTOMER_ID].to_numpy(np.int64), rows[S.ITEM_ID].to_numpy(np.int64),
                                             np.ones(len(rows)), nm, CUT_OFF, 0.0))
    return best_of(scores), scores


class FittedEase(FittedNeighbors):
    """EASE's weights served as neighbours; every interaction counts 1 (threshold 0)."""

    def __init__(self, data: FitData, neighbors: DataFrame, fit: EaseFit, rc: RecommendConf) -> None:
        binary = data.on(data.ratings.withColumn(S.RATING, F.lit(1.0)))
        super().__init__(binary, neighbors, replace(rc, threshold=0.0))
        self.fit = fit

    def lines(self) -> list[str]:
        tuned = ", ".join(f"{lam:g}: {v:.4f}" for lam, v in self.fit.scores.items())
        how = f"chosen on a temporal carve-out, nDCG@10 {tuned}" if self.fit.scores else "evaluate.ease_lambda"
        return [f"ease: {self.fit.items} items, lambda {self.fit.lam:g} ({how})"]


class Ease(Recommender):
    name = "ease"

    def fit(self, data: FitData) -> Fitted:
        ec, rc = self.conf.evaluate, self.conf.recommend
        scores: dict[float, float] = {}
        if ec.ease_lambda is not None:
            lam = ec.ease_lambda
        else:
            lam, scores = choose_lambda(data, ec)
        g = ItemGram.of(data.ratings, ec.ease_items)
        nm = sparsified(g.ids, ease_weights(g.gram, lam), ec.ease_top_k)
        neighbors = neighbor_rows(data.spark, nm).localCheckpoint(eager=True)
        return FittedEase(data, neighbors, EaseFit(lam, scores, len(g.ids)), rc)
