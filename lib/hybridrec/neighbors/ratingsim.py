"""Rating-based item-item cosine (item-kNN, SAR-like), distributed, and its blend with the image
similarity (paper §3.2 extended: items without a poster get neighbours from ratings, items
without ratings get them from the poster).

cos(i, j) = sum_c r_ci r_cj / (||r_i|| ||r_j||), summed over the customers c who rated both; the
norms run over all of an item's ratings; ``support`` is the number of co-raters. A customer's
history can be capped to its latest ``max_history`` ratings, which bounds the quadratic pair count
a heavy rater contributes (0 = no cap). Two paths compute the same neighbours:

* **broadcast** (when the ratings fit ``broadcast_max_mb`` at 24 bytes a rating - both orientations,
  what each Python worker holds - and the driver's ``spark.driver.maxResultSize``): the ratings are collected once as a sparse matrix
  (Spark's own Arrow collect while the plain columns fit, else Arrow blobs of CSR bytes; no shuffle;
  histories are capped, and collected again, only when some customer has more than
  ``max_history``) and broadcast; each task owns a range of items (split by the work their rows
  cost) and computes their rows of the Gram matrix X^T X with sparse products in chunks of bounded
  cells, divides by the norms and keeps each row's top-K - final rows, nothing shuffled. This is
  what scipy does on one machine, spread over the cluster's cores.
* **shuffle** (larger ratings): each task takes a slice of customers (partitioned by customer) and
  computes its partial item x item dot products and co-rater counts with two sparse products, in
  chunks of bounded rows; Spark sums the partials and ranks each item's pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from scipy import sparse

from hybridrec import schemas as S
from hybridrec.neighbors.blocked import CHUNK_TASKS_PER_CORE, rank_neighbors
from hybridrec.neighbors.kernels import topk_candidates
from hybridrec.runtime.batches import map_broadcast_units, map_customer_chunks

SUPPORT = "support"
DOT = "_dot"
PAIR_SCHEMA = f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {DOT} double, {SUPPORT} long"
RANKED_SCHEMA = f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, {SUPPORT} long, {S.RANK} int"
BYTES_PER_RATING = 24  # the broadcast matrix, both ways round: a float64 rating and an int32 index each
COLLECTED_PER_RATING = 13  # what the driver collects as blobs: the same once, plus the blobs' customer ids
PLAIN_PER_RATING = 24  # what the driver collects as Spark's own Arrow batches: two int64 ids and a float64


@dataclass(frozen=True)
class RatingSimParams:
    top_k: int = 50
    min_support: int = 1  # co-raters a pair needs
    max_history: int = 500  # latest ratings per customer used (0 = all)
    chunk_rows: int = 200_000  # ratings per sparse product inside a task
    broadcast_max_mb: int = 2048  # ratings up to this size (24 bytes each) take the broadcast path
    max_cells: int = 1 << 22  # broadcast path: Gram cells a task holds at once (rows x items)
    # the pairs' co-rater counts (what shrinkage weighs); without, the broadcast path leaves them null
    support: bool = True


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
    """Each customer's latest ``max_history`` ratings (ties by item id); all when 0. One count per
    customer finds the customers over the cap; only theirs are sorted, and when there are none the
    ratings are returned as they are."""
    if max_history <= 0:
        return ratings
    counts = ratings.groupBy(S.CUSTOMER_ID).count()
    heavy = counts.filter(F.col("count") > max_history).select(S.CUSTOMER_ID).localCheckpoint(eager=True)
    if heavy.isEmpty():
        return ratings
    light = ratings.join(heavy, S.CUSTOMER_ID, "left_anti")
    w = Window.partitionBy(S.CUSTOMER_ID).orderBy(F.desc(S.TIMESTAMP), F.asc(S.ITEM_ID))
    capped = ratings.join(heavy, S.CUSTOMER_ID, "left_semi").withColumn("_h", F.row_number().over(w)) \
        .filter(F.col("_h") <= max_history).drop("_h")
    return light.unionByName(capped)


@dataclass(frozen=True)
class RatingMatrix:
    """Ratings over sorted item ids, both ways round: items x customers (the rows a task owns) and
    customers x items (what they are multiplied with), float64 - sums of whole or half stars are
    exact, so the cosines equal the shuffle path's - with each item's norm."""

    item_ids: np.ndarray
    items: sparse.csr_matrix  # items x customers
    customer_rows: sparse.csr_matrix  # customers x items
    norms: np.ndarray

    @classmethod
    def from_customer_rows(cls, item_ids: np.ndarray, x: sparse.csr_matrix) -> "RatingMatrix":
        """From customers x items without duplicate cells (a row's columns in any order)."""
        x = x.tocsr()
        y = x.T.tocsr()
        norms = np.sqrt(np.bincount(x.indices, weights=x.data * x.data, minlength=len(item_ids)))
        return cls(item_ids, y, x, norms)

    @classmethod
    def build(cls, customers: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> "RatingMatrix":
        """From one rating a cell (customers in id order; a pair given twice is summed). Ids are
        hashed and only the distinct ones sorted: 50M ratings are not sorted."""
        col, item_ids = pd.factorize(items.astype(np.int64, copy=False), sort=True)
        row, customers_ = pd.factorize(customers.astype(np.int64, copy=False), sort=True)
        x = sparse.csr_matrix((ratings.astype(np.float64, copy=False), (row, col)),
                              shape=(len(customers_), len(item_ids)))
        return cls.from_customer_rows(np.asarray(item_ids, np.int64), x)

    @property
    def customers(self) -> int:
        return int(self.customer_rows.shape[0])

    def by_item(self) -> sparse.csr_matrix:
        return self.items

    def history_lengths(self) -> np.ndarray:
        """Ratings per customer."""
        return np.diff(self.customer_rows.indptr)

    def row_work(self) -> np.ndarray:
        """Per item, the multiply-adds of its Gram row: the ratings of the customers who rated it."""
        y = self.items
        history = self.history_lengths().astype(np.float64)
        return np.asarray(sparse.csr_matrix((np.ones(len(y.data)), y.indices, y.indptr), shape=y.shape) @ history)

    def ranges(self, tasks: int) -> list[tuple[int, int]]:
        """``tasks`` consecutive item ranges of about equal work (empty ones dropped)."""
        n = len(self.item_ids)
        if n == 0:
            return []
        cum = np.cumsum(self.row_work())
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, tasks) / tasks, side="right")
        bounds = np.unique(np.r_[0, np.minimum(cuts, n), n])
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def gram_neighbors(m: RatingMatrix, lo: int, hi: int, params: RatingSimParams) -> pd.DataFrame:
    """The final top-K of the items at rows [lo, hi) of ``m``: cosine over co-raters (pairs with at
    least ``min_support`` co-raters), ties by the smaller neighbour id, with each pair's support:
    (item_id, neighbor_id, similarity, support, rank). Rows are taken in chunks of at most
    ``max_cells`` Gram cells. The
    support is computed for the kept pairs when ``params.support`` (null otherwise)."""
    y, by_customer = m.items, m.customer_rows
    n = len(m.item_ids)
    ones = sparse.csr_matrix((np.ones(len(y.data)), y.indices, y.indptr), shape=y.shape)
    ones_t = sparse.csr_matrix((np.ones(len(by_customer.data)), by_customer.indices, by_customer.indptr),
                               shape=by_customer.shape) if params.min_support > 1 else None
    step = max(1, params.max_cells // max(n, 1))
    parts: list[pd.DataFrame] = []
    cols = np.arange(n)
    buffer = np.empty((min(step, max(hi - lo, 0)), n))  # reused: a fresh array per chunk costs page faults
    for a in range(lo, hi, step):
        b = min(hi, a + step)
        dots = (y[a:b] @ by_customer).tocsr()  # (rows, items): co-rated pairs only (ratings are > 0)
        if ones_t is not None:
            counts = (ones[a:b] @ ones_t).tocsr()
            dots = dots.multiply(counts >= params.min_support).tocsr()
        r = np.repeat(np.arange(b - a), np.diff(dots.indptr))
        cos = buffer[:b - a]
        cos.fill(-np.inf)
        cos[r, dots.indices] = dots.data / (m.norms[a + r] * m.norms[dots.indices])
        li, rj, sv = topk_candidates(np.arange(a, b), cols, cos, None, params.top_k, None, owned=True)
        order = np.lexsort((rj, -sv, li))  # ties by neighbour id: rows follow item id order
        li, rj, sv = li[order], rj[order], sv[order]
        rank = np.arange(len(li)) - np.searchsorted(li, li, side="left") + 1
        keep = rank <= params.top_k
        li, rj, sv, rank = li[keep], rj[keep], sv[keep], rank[keep]
        if params.support:  # co-raters of the kept pairs only: a product against their neighbours' rows
            nbrs, at = np.unique(rj, return_inverse=True)
            shared = (ones[a:b] @ ones[nbrs].T).tocsr() if len(nbrs) else sparse.csr_matrix((b - a, 0))
            support = pd.array(np.asarray(shared[li - a, at]).ravel().astype(np.int64) if len(li) else [],
                               dtype="Int64")
        else:
            support = pd.array([None] * len(li), dtype="Int64")
        parts.append(pd.DataFrame({S.ITEM_ID: m.item_ids[li], S.NEIGHBOR_ID: m.item_ids[rj], S.SIMILARITY: sv,
                                   SUPPORT: support, S.RANK: rank.astype(np.int32)}))
    if not parts:
        return pd.DataFrame({S.ITEM_ID: [], S.NEIGHBOR_ID: [], S.SIMILARITY: [], SUPPORT: [], S.RANK: []})
    return pd.concat(parts, ignore_index=True)


def _result_limit(spark: SparkSession) -> int:
    """``spark.driver.maxResultSize`` in bytes (0: unlimited)."""
    text = spark.conf.get("spark.driver.maxResultSize", "1g") or "1g"
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t or 0)


def fits_result(spark: SparkSession, nbytes: int) -> bool:
    """Whether ``nbytes`` collected by the driver are within 80% of ``spark.driver.maxResultSize``."""
    result = _result_limit(spark)
    return result <= 0 or nbytes <= 0.8 * result


def fits_broadcast(spark: SparkSession, n_ratings: int, params: RatingSimParams) -> bool:
    """Whether ``n_ratings`` at 24 bytes each are within ``broadcast_max_mb``, and what the driver
    collects (about 13 bytes each) within 80% of ``spark.driver.maxResultSize``."""
    if params.broadcast_max_mb <= 0 or n_ratings <= 0:
        return False
    return n_ratings * BYTES_PER_RATING <= params.broadcast_max_mb * 1024 * 1024 and \
        fits_result(spark, n_ratings * COLLECTED_PER_RATING)


ASSEMBLY_ROWS = 2_000_000  # ratings per binary blob when the matrix is assembled
BLOB_SCHEMA_COLUMNS = ("customer_ids", "item_ids", "indptr", "indices", "data")
BLOB_SCHEMA = ", ".join(f"{c} binary" for c in BLOB_SCHEMA_COLUMNS)


def _blob(t: pa.Table) -> pa.RecordBatch:
    """Some ratings as one row of CSR bytes over their own customers and items (hashed, not sorted)."""
    row, cust = pd.factorize(t.column(S.CUSTOMER_ID).to_numpy())
    col, items = pd.factorize(t.column(S.ITEM_ID).to_numpy())
    x = sparse.csr_matrix((t.column(S.RATING).to_numpy().astype(np.float64, copy=False), (row, col)),
                          shape=(len(cust), len(items)))
    x.sum_duplicates()
    parts = {"customer_ids": np.asarray(cust, np.int64), "item_ids": np.asarray(items, np.int64),
             "indptr": x.indptr.astype(np.int64), "indices": x.indices.astype(np.int32), "data": x.data}
    return pa.RecordBatch.from_pydict({k: pa.array([v.tobytes()], pa.binary()) for k, v in parts.items()})


def collect_rating_matrix(ratings: DataFrame, n_ratings: int | None = None) -> RatingMatrix:
    """(customer_id, item_id, rating) -> the :class:`RatingMatrix` on the driver, the same matrix
    either way (no shuffle, no Python object per rating):

    * when ``n_ratings`` is given and the plain columns (24 bytes a rating) fit 80% of
      ``spark.driver.maxResultSize``: Spark's own Arrow collect, converted in the JVM with no Python
      worker in between; the driver builds the matrix from the columns. At 1M customers x 50
      ratings on 2 cores it took 15-21 s where the blobs below took 26-34 s (the JVM hands rows to a
      Python worker at about 2M rows a second a core);
    * else about 13 bytes a rating: each task sends its ratings as Arrow CSR blobs over their own
      customers and items; the driver stacks the blobs' rows and merges a customer met in several
      blobs with one sparse product."""
    if n_ratings is not None and fits_result(ratings.sparkSession, n_ratings * PLAIN_PER_RATING):
        return _plain_rating_matrix(ratings)
    return _blob_rating_matrix(ratings)


def _plain_rating_matrix(ratings: DataFrame) -> RatingMatrix:
    """:func:`collect_rating_matrix` through Spark's Arrow collect; customers in id order, a
    (customer, item) pair given twice summed, as the blobs do."""
    table = ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING).toArrow()
    columns = [table.column(c).to_numpy() for c in (S.CUSTOMER_ID, S.ITEM_ID, S.RATING)]
    del table
    return RatingMatrix.build(*columns)


def _blob_rating_matrix(ratings: DataFrame) -> RatingMatrix:
    """:func:`collect_rating_matrix` through Arrow blobs of CSR bytes built by the tasks."""
    def build(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []
        rows = 0
        for b in batches:
            held.append(b)
            rows += b.num_rows
            if rows >= ASSEMBLY_ROWS:
                yield _blob(pa.Table.from_batches(held))
                held, rows = [], 0
        if rows:
            yield _blob(pa.Table.from_batches(held))

    blobs = ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING) \
        .mapInArrow(build, BLOB_SCHEMA).collect()  # type: ignore[arg-type]  # a few rows of bytes
    cols = {c: [b[c] for b in blobs] for c in BLOB_SCHEMA_COLUMNS}
    del blobs
    custs = [np.frombuffer(c, np.int64) for c in cols["customer_ids"]]
    items = [np.frombuffer(c, np.int64) for c in cols["item_ids"]]
    item_ids = np.unique(np.concatenate(items)) if items else np.zeros(0, np.int64)
    ptrs, idx, data = [np.zeros(1, np.int64)], [], []
    for i, ptr, ind, val in zip(items, cols["indptr"], cols["indices"], cols["data"]):
        ptrs.append(np.frombuffer(ptr, np.int64)[1:] + ptrs[-1][-1])
        idx.append(np.searchsorted(item_ids, i).astype(np.int32)[np.frombuffer(ind, np.int32)])
        data.append(np.frombuffer(val, np.float64))
    del cols
    frag_cust = np.concatenate(custs) if custs else np.zeros(0, np.int64)
    stacked = sparse.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                                 np.concatenate(idx) if idx else np.zeros(0, np.int32), np.concatenate(ptrs)),
                                shape=(len(frag_cust), len(item_ids)))
    customers, row = np.unique(frag_cust, return_inverse=True)
    if len(customers) < len(frag_cust):  # a customer's ratings came in several blobs: add their rows up
        merge = sparse.csr_matrix((np.ones(len(row)), (row, np.arange(len(row)))),
                                  shape=(len(customers), len(row)))
        stacked = merge @ stacked
    return RatingMatrix.from_customer_rows(item_ids, stacked)


def broadcast_rating_neighbors(spark: SparkSession, m: RatingMatrix, params: RatingSimParams) -> DataFrame:
    """The broadcast path (module docstring): the collected ratings -> ranked neighbours."""
    ranges = m.ranges(CHUNK_TASKS_PER_CORE * spark.sparkContext.defaultParallelism)

    def work(bounds: tuple[int, int], matrix: RatingMatrix) -> pd.DataFrame:
        return gram_neighbors(matrix, bounds[0], bounds[1], params)

    return map_broadcast_units(spark, m, ranges, work, RANKED_SCHEMA, partitions=len(ranges),
                               fault_stage="similarity")


@dataclass(frozen=True)
class RatingSearch:
    """The rating neighbours, and the number of rated items where the search counted them on its
    way (the broadcast path without capped histories), so that nobody scans the ratings for it again."""

    neighbors: DataFrame
    rated_items: int | None = None


def rating_neighbors(ratings: DataFrame, params: RatingSimParams, partitions: int = 0) -> DataFrame:
    """(customer_id, item_id, rating, timestamp) -> (item_id, neighbor_id, similarity, support, rank):
    each item's top-K by cosine over co-raters (similarity desc, neighbour id asc), on the broadcast
    path when the ratings fit ``broadcast_max_mb``, else on the shuffle path (module docstring)."""
    return search_rating_neighbors(ratings, params, partitions).neighbors


def search_rating_neighbors(ratings: DataFrame, params: RatingSimParams, partitions: int = 0) -> RatingSearch:
    """:func:`rating_neighbors`, with the rated items' count where the broadcast path knows it."""
    rows = ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    spark = ratings.sparkSession
    n_ratings = rows.count()  # a Delta table's count comes from its log
    if fits_broadcast(spark, n_ratings, params):
        m = collect_rating_matrix(rows, n_ratings)
        if params.max_history > 0 and m.customers and int(m.history_lengths().max()) > params.max_history:
            m = collect_rating_matrix(capped_history(rows, params.max_history))  # heavy raters: cap, again
            return RatingSearch(broadcast_rating_neighbors(spark, m, params))  # capping may drop an item
        return RatingSearch(broadcast_rating_neighbors(spark, m, params), len(m.item_ids))
    r = capped_history(rows, params.max_history).select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING)
    partials = map_customer_chunks(r, _pair_partials, PAIR_SCHEMA, partitions=partitions,
                                   max_rows=params.chunk_rows, fault_stage="similarity")
    pairs = partials.groupBy(S.ITEM_ID, S.NEIGHBOR_ID).agg(F.sum(DOT).alias(DOT), F.sum(SUPPORT).alias(SUPPORT)) \
        .filter(F.col(SUPPORT) >= params.min_support)
    norms = r.groupBy(S.ITEM_ID).agg(F.sqrt(F.sum(F.col(S.RATING) * F.col(S.RATING))).alias("_n"))
    ni = norms.select(F.col(S.ITEM_ID), F.col("_n").alias("_ni"))
    nj = norms.select(F.col(S.ITEM_ID).alias(S.NEIGHBOR_ID), F.col("_n").alias("_nj"))
    sims = pairs.join(ni, S.ITEM_ID).join(nj, S.NEIGHBOR_ID) \
        .select(S.ITEM_ID, S.NEIGHBOR_ID, (F.col(DOT) / (F.col("_ni") * F.col("_nj"))).alias(S.SIMILARITY), SUPPORT)
    return RatingSearch(rank_neighbors(sims, params.top_k))


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
    if image is None and weight == 1.0 and shrinkage == 0.0:  # the rating side as it is: already ranked
        return rating.select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY,
                             F.array().cast("array<string>").alias(S.SHARED_GENRES), S.RANK) \
            .filter(F.col(S.RANK) <= top_k)
    if image is None:
        image = rating.sparkSession.createDataFrame(
            [], f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, {S.SHARED_GENRES} array<string>")
    img = image.select(S.ITEM_ID, S.NEIGHBOR_ID, F.col(S.SIMILARITY).alias("_v"), S.SHARED_GENRES)
    rat = rating.select(S.ITEM_ID, S.NEIGHBOR_ID, F.col(S.SIMILARITY).alias("_r"), F.col(SUPPORT).alias("_s"))
    n = F.coalesce(F.col("_s"), F.lit(0)).cast("double")
    # without shrinkage a rating pair keeps its cosine (its support, possibly not computed, is not read)
    shrunk = F.coalesce(F.col("_r"), F.lit(0.0)) if shrinkage == 0 else \
        F.when(n > 0, n / (n + F.lit(float(shrinkage))) * F.col("_r")).otherwise(F.lit(0.0))
    blended = img.join(rat, [S.ITEM_ID, S.NEIGHBOR_ID], "full").select(
        S.ITEM_ID, S.NEIGHBOR_ID,
        (F.lit(float(weight)) * shrunk + F.lit(1.0 - float(weight)) * F.coalesce(F.col("_v"), F.lit(0.0)))
        .alias(S.SIMILARITY),
        F.coalesce(F.col(S.SHARED_GENRES), F.array().cast("array<string>")).alias(S.SHARED_GENRES))
    return rank_neighbors(blended, top_k)
