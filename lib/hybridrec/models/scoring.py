"""Rating-weighted top-n for every customer (paper §3.2, ``top_Recommendations``), vectorised.

For customer c, every rated item k with ``r_k > threshold`` adds ``sim(k, j) * r_k`` to each
neighbour j of k; items c already rated are excluded; the top-n by (score desc, item id asc)
are kept, each with the rated item that contributed most ("because you rated k"; ties -> the
smaller k). This never explodes customers x ratings x neighbours into rows: customers are
partitioned, each partition is sorted by customer and streamed in bounded batches, and each
batch is one sparse product against the neighbour matrix, broadcast once per executor.
Customers left with no candidate get a labelled fallback: the most rated items in the genres
they rated, else overall.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from scipy import sparse

from hybridrec import schemas as S
from hybridrec.models.coldstart import ColdScorer
from hybridrec.runtime.batches import map_customer_chunks

SOURCE_NEIGHBORS = "neighbors"
SOURCE_COLD_START = "cold_start"
SOURCE_GENRE_POPULAR = "fallback_genre_popular"
SOURCE_POPULAR = "fallback_popular"


@dataclass(frozen=True)
class NeighborMatrix:
    """Item-item similarities as CSR over a dense item index (picklable; broadcast as is)."""

    item_ids: np.ndarray  # index -> item id, sorted
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_pairs(cls, items: np.ndarray, neighbors: np.ndarray, sims: np.ndarray,
                   all_items: np.ndarray | None = None) -> "NeighborMatrix":
        ids = np.unique(np.concatenate([items, neighbors] + ([all_items] if all_items is not None else [])))
        rows, cols = np.searchsorted(ids, items), np.searchsorted(ids, neighbors)
        m = sparse.csr_matrix((sims.astype(np.float64), (rows, cols)), shape=(len(ids), len(ids)))
        m.sum_duplicates()
        return cls(ids, m.indptr, m.indices, m.data)

    def csr(self) -> sparse.csr_matrix:
        n = len(self.item_ids)
        return sparse.csr_matrix((self.data, self.indices, self.indptr), shape=(n, n))


@dataclass(frozen=True)
class Fallback:
    """Most-rated items per genre and overall, and each item's genres (for customers' genres)."""

    item_genres: dict[int, tuple[str, ...]]
    by_genre: dict[str, list[int]]
    overall: list[int]


LIST = "list"  # which list a scored row belongs to: LIST_MAIN (recommendations) or LIST_NEW (new for you)
LIST_MAIN, LIST_NEW = "main", "new"


@dataclass(frozen=True)
class NewList:
    """A second list from the same neighbour scores: each customer's top ``k`` among ``items``
    (sorted ids), the cold ones among them ranked by ``cold`` (the scorer restricted to them) -
    what :func:`score_batch` gives with the neighbours and the cold scorer restricted to ``items``
    and no fallback (the new-item protocol), without scoring the customers again."""

    items: np.ndarray
    k: int
    cold: ColdScorer | None = None


def score_batch(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, nm: NeighborMatrix,
                n: int, threshold: float, fallback: Fallback | None = None,
                cold: ColdScorer | None = None) -> pd.DataFrame:
    """Top-n for the customers of one batch. Inputs are parallel arrays of (customer, item,
    rating); every customer's ratings must all be in the batch. Returns customer_id, rank,
    item_id, score, because_item_id, source.

    With ``cold`` (the hybrid), the cold items are left to the cold-start model: the neighbour
    scores rank the other items, and a customer's last ``cold.slots`` positions go to the cold
    items with the highest fitted probability of relevance, when at least ``cold.min_probability``;
    a list the neighbours cannot fill is filled with cold items by probability."""
    lifts = [cold.lift] if cold is not None else []
    return score_batch_lifts(customers, items, ratings, nm, n, threshold, fallback, cold, lifts)[0]


def score_batch_lists(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, nm: NeighborMatrix,
                      n: int, threshold: float, fallback: Fallback | None, cold: ColdScorer | None,
                      new: NewList) -> pd.DataFrame:
    """:func:`score_batch`'s rows (``list`` = main) followed by ``new``'s (``list`` = new), from
    one sparse product."""
    lifts = [cold.lift] if cold is not None else []
    main, fresh = _score(customers, items, ratings, nm, n, threshold, fallback, cold, lifts, new)
    return pd.concat([main[0].assign(**{LIST: LIST_MAIN}), fresh.assign(**{LIST: LIST_NEW})], ignore_index=True)


def score_batch_lifts(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, nm: NeighborMatrix,
                      n: int, threshold: float, fallback: Fallback | None, cold: ColdScorer | None,
                      lifts: list[float]) -> list[pd.DataFrame]:
    """:func:`score_batch` for each of ``lifts`` (``cold.lift`` replaced), with the neighbour
    scores and the cold items' probabilities computed once: only where the cold picks go depends on
    the lift. Without ``cold`` the one list of neighbour scores."""
    return _score(customers, items, ratings, nm, n, threshold, fallback, cold, lifts, None)[0]


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame[S.RANK] = frame.groupby(S.CUSTOMER_ID).cumcount() + 1
    return frame


def _score(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, nm: NeighborMatrix, n: int,
           threshold: float, fallback: Fallback | None, cold: ColdScorer | None, lifts: list[float],
           new: NewList | None) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    cust_ids, crow = np.unique(customers, return_inverse=True)
    n_items = len(nm.item_ids)
    col = np.minimum(np.searchsorted(nm.item_ids, items), max(n_items - 1, 0))
    known = (nm.item_ids[col] == items) if n_items else np.zeros(len(items), bool)
    liked = known & (ratings > threshold)
    r_liked = sparse.csr_matrix((ratings[liked].astype(np.float64), (crow[liked], col[liked])),
                                shape=(len(cust_ids), n_items))
    rated = sparse.csr_matrix((np.ones(int(known.sum())), (crow[known], col[known])), shape=(len(cust_ids), n_items))
    rated.data[:] = 1.0  # a (customer, item) given twice was summed to 2: it still drops the item once
    scores = (r_liked @ nm.csr()).tocsr()
    scores = (scores - scores.multiply(rated)).tocsr()  # the items already rated become exact zeros
    # drop the zeros and, for the hybrid, the cold items (the cold-start model ranks those)
    keep = scores.data != 0
    if cold is not None and n_items and len(cold.catalogue.cold_ids):
        keep &= ~np.isin(nm.item_ids, cold.catalogue.cold_ids)[scores.indices]
    scores = _cells(scores, keep)
    frame, out_c = _neighbor_rows(scores, n, cust_ids, r_liked, nm)
    frames = [frame]
    if cold is not None:
        top = _cold_candidates(customers, items, ratings, cold, n, threshold)
        frames = [_with_cold(frame, out_c, cust_ids, top, cold.slots, replace(cold, lift=lift).min_probability, n)
                  for lift in lifts]
    out = []
    for f in frames:
        if fallback is not None:
            served = set(f[S.CUSTOMER_ID].tolist())
            missing = [i for i in range(len(cust_ids)) if int(cust_ids[i]) not in served]
            if missing:
                f = pd.concat([f, _fallback_rows(missing, cust_ids, crow, items, fallback, n)], ignore_index=True)
        out.append(_ranked(f))
    fresh = pd.DataFrame(columns=[*frame.columns, S.RANK])
    if new is not None:
        restricted = _cells(scores, np.isin(nm.item_ids, new.items)[scores.indices])  # the new items' scores
        nf, nc = _neighbor_rows(restricted, new.k, cust_ids, r_liked, nm)
        if new.cold is not None:
            top = _cold_candidates(customers, items, ratings, new.cold, new.k, threshold)
            nf = _with_cold(nf, nc, cust_ids, top, new.cold.slots, new.cold.min_probability, new.k)
        fresh = _ranked(nf)
    return out, fresh


def _cells(m: sparse.csr_matrix, keep: np.ndarray) -> sparse.csr_matrix:
    """``m`` with only the stored cells where ``keep`` (one flag per stored cell), in linear time:
    no arithmetic on the values, so a kept cell keeps its exact score."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    indptr = np.zeros(m.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=m.shape[0]), out=indptr[1:])
    return sparse.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def _neighbor_rows(scores: sparse.csr_matrix, n: int, cust_ids: np.ndarray, r_liked: sparse.csr_matrix,
                   nm: NeighborMatrix) -> tuple[pd.DataFrame, np.ndarray]:
    """Each row's top-n of ``scores`` as neighbour rows with their "because" item, and the row
    index of each (what :func:`_with_cold` counts the warm picks by)."""
    out_c, out_j, out_s = _top_n_rows(scores, n)
    frame = pd.DataFrame({S.CUSTOMER_ID: cust_ids[out_c], S.ITEM_ID: nm.item_ids[out_j], S.SCORE: out_s,
                          S.BECAUSE_ITEM_ID: nm.item_ids[_because(out_c, out_j, r_liked, nm)],
                          S.SOURCE: SOURCE_NEIGHBORS})
    return frame, out_c


def _cold_candidates(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, cold: ColdScorer, n: int,
                     threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Each customer's n most probable unrated cold items and their probabilities (None: no cold
    items or n = 0)."""
    if len(cold.catalogue.cold_ids) == 0 or n == 0:
        return None
    _, top_ids, top = cold.top(customers, items, ratings, threshold, n)
    return top_ids, top


def _with_cold(frame: pd.DataFrame, out_c: np.ndarray, cust_ids: np.ndarray,
               candidates: tuple[np.ndarray, np.ndarray] | None, slots: int, min_probability: float,
               n: int) -> pd.DataFrame:
    """Cut each warm list to make room for its cold picks and append them (see score_batch)."""
    warm_count = np.bincount(out_c, minlength=len(cust_ids)) if len(out_c) else np.zeros(len(cust_ids), np.int64)
    if candidates is None:
        return frame
    top_ids, top = candidates
    depth = top.shape[1]
    usable = np.isfinite(top)
    confident = usable & (top >= min_probability)
    # cold picks: the confident ones up to the slots, then whatever fills a list the warm side left short
    slot_take = np.minimum(confident.sum(1), slots)
    take = np.minimum(np.maximum(slot_take, n - warm_count), usable.sum(1))
    keep_warm = np.minimum(warm_count, n - take)
    pos = np.arange(depth)[None, :]
    picked = pos < take[:, None]
    r, c = np.nonzero(picked)
    cold_rows = pd.DataFrame({S.CUSTOMER_ID: cust_ids[r], S.ITEM_ID: top_ids[r, c], S.SCORE: top[r, c],
                              S.BECAUSE_ITEM_ID: pd.array([None] * len(r), dtype="Int64"),
                              S.SOURCE: SOURCE_COLD_START})
    within = frame.groupby(S.CUSTOMER_ID).cumcount().to_numpy()
    limit = keep_warm[np.searchsorted(cust_ids, frame[S.CUSTOMER_ID].to_numpy())] if len(frame) else np.zeros(0)
    warm_rows = frame[within < limit]
    merged = pd.concat([warm_rows, cold_rows], ignore_index=True)
    merged[S.BECAUSE_ITEM_ID] = merged[S.BECAUSE_ITEM_ID].astype("Int64")
    # each customer's warm rows first (their order kept), then the cold picks by probability
    merged["_o"] = np.r_[np.zeros(len(warm_rows)), np.ones(len(cold_rows))]
    merged["_i"] = np.arange(len(merged))
    return merged.sort_values([S.CUSTOMER_ID, "_o", "_i"], kind="stable").drop(columns=["_o", "_i"]) \
        .reset_index(drop=True)


def _top_n_rows(scores: sparse.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the n largest entries by (value desc, column asc); exact under ties."""
    nnz = np.diff(scores.indptr)
    rows = np.repeat(np.arange(scores.shape[0]), nnz)
    data, cols = scores.data, scores.indices
    keep = np.ones(len(data), bool)
    big = np.nonzero(nnz > n)[0]
    if len(big):
        width = int(nnz[big].max())
        pad = np.full((len(big), width), -np.inf)
        starts = scores.indptr[big]
        pos = np.arange(width)[None, :]
        valid = pos < nnz[big][:, None]
        src = (starts[:, None] + pos)[valid]
        pad[valid] = data[src]
        kth = -np.partition(-pad, n - 1, axis=1)[:, n - 1]  # n-th largest value of each big row
        row_kth = np.full(scores.shape[0], -np.inf)
        row_kth[big] = kth
        keep = data >= row_kth[rows]  # a superset under ties: cut exactly after sorting
    rows, cols, data = rows[keep], cols[keep], data[keep]
    order = np.lexsort((cols, -data, rows))
    rows, cols, data = rows[order], cols[order], data[order]
    first = np.searchsorted(rows, rows, side="left")
    within = np.arange(len(rows)) - first
    sel = within < n
    return rows[sel], cols[sel], data[sel]


def _because(rows: np.ndarray, cols: np.ndarray, r_liked: sparse.csr_matrix, nm: NeighborMatrix) -> np.ndarray:
    """For each (customer row, item col): the liked item k maximising r_k * sim(k, j) (ties -> smaller k)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    per = np.diff(r_liked.indptr)[rows]
    pair = np.repeat(np.arange(len(rows)), per)
    first = r_liked.indptr[rows]
    starts = np.cumsum(per) - per  # each pick's run of likes in the expanded arrays
    offs = np.arange(len(pair)) - np.repeat(starts, per)
    k = r_liked.indices[np.repeat(first, per) + offs].astype(np.int64)  # int64: the sentinel below fits
    rk = r_liked.data[np.repeat(first, per) + offs]
    sim = np.asarray(nm.csr()[k, cols[pair]]).ravel()
    # a liked item with no pair to j never explains it (with negative similarities, as EASE has, the
    # best real contribution can be below 0): so a matrix restricted to some columns gives the same
    contrib = np.where(sim != 0, rk * sim, -np.inf)
    # each pick's likes are one contiguous run (every pick has one: its score came from them): the
    # run's largest contribution, and the smallest k among the likes that reach it - linear time
    best = np.repeat(np.fmax.reduceat(contrib, starts), per)
    at_best = (contrib == best) | np.isnan(best)  # a run of NaN similarities: its smallest k, as a sort gives
    return np.minimum.reduceat(np.where(at_best, k, np.iinfo(np.int64).max), starts)


def _fallback_rows(missing: list[int], cust_ids: np.ndarray, crow: np.ndarray, items: np.ndarray,
                   fb: Fallback, n: int) -> pd.DataFrame:
    out = []
    for i in missing:
        rated = set(items[crow == i].tolist())
        genres: dict[str, int] = {}
        for it in rated:
            for g in fb.item_genres.get(int(it), ()):
                genres[g] = genres.get(g, 0) + 1
        picks: list[int] = []
        for g in sorted(genres, key=lambda g: (-genres[g], g)):
            picks += [x for x in fb.by_genre.get(g, []) if x not in rated and x not in picks]
        source = SOURCE_GENRE_POPULAR
        if not picks:
            source = SOURCE_POPULAR
        # ranked by overall popularity within the customer's genres, then topped up overall
        rank_of = {x: r for r, x in enumerate(fb.overall)}
        picks = sorted(picks, key=lambda x: rank_of.get(x, len(rank_of)))[:n]
        if len(picks) < n:
            picks += [x for x in fb.overall if x not in rated and x not in picks][: n - len(picks)]
        for x in picks:
            out.append((int(cust_ids[i]), int(x), 0.0, None, source))
    return pd.DataFrame(out, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE])


# ---- Spark plumbing ------------------------------------------------------------------------
OUTPUT_COLUMNS = [S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE]
OUTPUT_SCHEMA = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in S.RECOMMENDATIONS_SCHEMA.fields
                          if f.name in OUTPUT_COLUMNS)
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


def score_customers(spark: SparkSession, ratings: DataFrame, nm: NeighborMatrix, fallback: Fallback | None,
                    top_n: int, threshold: float, partitions: int, batch_rows: int,
                    cold: ColdScorer | None = None, new: NewList | None = None) -> DataFrame:
    """Score every customer of ``ratings`` (customer_id, item_id, rating) against the broadcast
    neighbour matrix (and, for the hybrid, the cold-start model), partitioned by customer, streamed
    in bounded batches: (customer_id, rank, item_id, score, because_item_id, source), and with
    ``new`` a ``list`` column: main, or new for ``new``'s lists from the same pass."""
    b_nm = spark.sparkContext.broadcast(nm)
    b_fb = spark.sparkContext.broadcast(fallback)
    b_cold = spark.sparkContext.broadcast(cold)
    b_new = spark.sparkContext.broadcast(new)
    columns = OUTPUT_COLUMNS + ([LIST] if new is not None else [])

    def score(chunk: pd.DataFrame) -> pd.DataFrame:
        args = (chunk[S.CUSTOMER_ID].to_numpy(), chunk[S.ITEM_ID].to_numpy(), chunk[S.RATING].to_numpy(np.float64),
                b_nm.value, top_n, threshold, b_fb.value, b_cold.value)
        if b_new.value is None:
            return score_batch(*args)[columns]
        return score_batch_lists(*args, b_new.value)[columns]

    schema = OUTPUT_SCHEMA + (f", {LIST} string" if new is not None else "")
    return map_customer_chunks(ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING), score, schema,
                               partitions=partitions, max_rows=batch_rows, fault_stage="recommend")
