"""Rating-based item-item cosine (item-kNN, SAR-like), distributed, and its blend with the image
similarity (paper §3.2 extended: items without a poster get neighbours from ratings, items
without ratings get them from the poster).

cos(i, j) = sum_c r_ci r_cj / (||r_i|| ||r_j||), summed over the customers c who rated both; the
norms run over all of an item's ratings; ``support`` is the number of co-raters. Each task takes a
slice of customers (partitioned by customer) and computes its partial item x item dot products
and co-rater counts with two sparse products, in chunks of bounded rows; Spark sums the partials.
A customer's history can be capped to its latest ``max_history`` ratings, which bounds the
quadratic pair count a heavy rater contributes (0 = no cap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from scipy import sparse

from hybridrec import schemas as S
from hybridrec.neighbors.blocked import rank_neighbors
from hybridrec.runtime.batches import map_customer_chunks

SUPPORT = "support"
DOT = "_dot"
PAIR_SCHEMA = f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {DOT} double, {SUPPORT} long"


@dataclass(frozen=True)
class RatingSimParams:
    top_k: int = 50
    min_support: int = 1  # co-raters a pair needs
    max_history: int = 500  # latest ratings per customer used (0 = all)
    chunk_rows: int = 200_000  # ratings per sparse product inside a task


def _pair_partials(pdf: pd.DataFrame) -> pd.DataFrame:
    """Partial dot products and co-rater counts of one slice of customers (i != j)."""
    items, col = np.unique(pdf[S.ITEM_ID].to_numpy(np.int64), return_inverse=True)
    _, row = np.unique(pdf[S.CUSTOMER_ID].to_numpy(np.int64), return_inverse=True)
    shape = (int(row.max()) + 1, len(items))
    r = sparse.csr_matrix((pdf[S.RATING].to_numpy(np.float64), (row, col)), shape=shape)
    b = sparse.csr_matrix((np.ones(len(row)), (row, col)), shape=shape)
    dot = (r.T @ r).tocoo()
    cnt = (b.T @ b).tocsr()
    keep = dot.row != dot.col
    i, j = dot.row[keep], dot.col[keep]
    return pd.DataFrame({S.ITEM_ID: items[i], S.NEIGHBOR_ID: items[j], DOT: dot.data[keep],
                         SUPPORT: np.asarray(cnt[i, j]).ravel().astype(np.int64)})


def capped_history(ratings: DataFrame, max_history: int) -> DataFrame:
    """Each customer's latest ``max_history`` ratings (ties by item id); all when 0."""
    if max_history <= 0:
        return ratings
    w = Window.partitionBy(S.CUSTOMER_ID).orderBy(F.desc(S.TIMESTAMP), F.asc(S.ITEM_ID))
    return ratings.withColumn("_h", F.row_number().over(w)).filter(F.col("_h") <= max_history).drop("_h")


def rating_neighbors(ratings: DataFrame, params: RatingSimParams, partitions: int = 0) -> DataFrame:
    """(customer_id, item_id, rating, timestamp) -> (item_id, neighbor_id, similarity, support, rank):
    each item's top-K by cosine over co-raters (similarity desc, neighbour id asc)."""
    r = capped_history(ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP), params.max_history) \
        .select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING)
    partials = map_customer_chunks(r, _pair_partials, PAIR_SCHEMA, partitions=partitions,
                                   max_rows=params.chunk_rows, fault_stage="similarity")
    pairs = partials.groupBy(S.ITEM_ID, S.NEIGHBOR_ID).agg(F.sum(DOT).alias(DOT), F.sum(SUPPORT).alias(SUPPORT)) \
        .filter(F.col(SUPPORT) >= params.min_support)
    norms = r.groupBy(S.ITEM_ID).agg(F.sqrt(F.sum(F.col(S.RATING) * F.col(S.RATING))).alias("_n"))
    ni = norms.select(F.col(S.ITEM_ID), F.col("_n").alias("_ni"))
    nj = norms.select(F.col(S.ITEM_ID).alias(S.NEIGHBOR_ID), F.col("_n").alias("_nj"))
    sims = pairs.join(ni, S.ITEM_ID).join(nj, S.NEIGHBOR_ID) \
        .select(S.ITEM_ID, S.NEIGHBOR_ID, (F.col(DOT) / (F.col("_ni") * F.col("_nj"))).alias(S.SIMILARITY), SUPPORT)
    return rank_neighbors(sims, params.top_k)


def blend_neighbors(image: DataFrame | None, rating: DataFrame, weight: float, shrinkage: float,
                    top_k: int) -> DataFrame:
    """Blend image neighbours (item_id, neighbor_id, similarity, shared_genres) with rating
    neighbours (item_id, neighbor_id, similarity, support):

        s = weight * shrunk_cos + (1 - weight) * image_sim,   shrunk_cos = n / (n + shrinkage) * rating_cos

    n is the pair's co-raters; a side the pair lacks counts 0 (a poster-only pair - an item nobody
    rated - keeps (1 - weight) * its image similarity; a rating-only pair - an item without a
    poster - weight * its rating similarity). Shrinkage pulls the cosine of thinly co-rated pairs
    towards 0 (Koren's shrunk similarity); 0 keeps it as is. Returns each item's top-K by
    (s desc, neighbour id asc) with shared_genres (empty for rating-only pairs) and rank. ``image``
    None: rating neighbours only (weight 1)."""
    if image is None:
        image = rating.sparkSession.createDataFrame(
            [], f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, {S.SHARED_GENRES} array<string>")
    img = image.select(S.ITEM_ID, S.NEIGHBOR_ID, F.col(S.SIMILARITY).alias("_v"), S.SHARED_GENRES)
    rat = rating.select(S.ITEM_ID, S.NEIGHBOR_ID, F.col(S.SIMILARITY).alias("_r"), F.col(SUPPORT).alias("_s"))
    n = F.coalesce(F.col("_s"), F.lit(0)).cast("double")
    shrunk = F.when(n > 0, n / (n + F.lit(float(shrinkage))) * F.col("_r")).otherwise(F.lit(0.0))
    blended = img.join(rat, [S.ITEM_ID, S.NEIGHBOR_ID], "full").select(
        S.ITEM_ID, S.NEIGHBOR_ID,
        (F.lit(float(weight)) * shrunk + F.lit(1.0 - float(weight)) * F.coalesce(F.col("_v"), F.lit(0.0)))
        .alias(S.SIMILARITY),
        F.coalesce(F.col(S.SHARED_GENRES), F.array().cast("array<string>")).alias(S.SHARED_GENRES))
    return rank_neighbors(blended, top_k)
