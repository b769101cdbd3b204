"""The two-stage recommender (``recommend.model: ranked``): candidates from the collaborative
models, re-ranked by a learned ranker over CF, popularity, content and poster features.

    candidates(u) = top-C unrated items of each source: item_knn (the similarity stage's rating
                    neighbours, scored the paper's way), ease (EASE^R on the interactions it
                    tuned), svd (PureSVD: the leading eigenvectors of every rating's Gram matrix
                    over EASE's items) and popularity;  their union is re-ranked
    features(u, j) = each source's score and rank, log popularity, the item's share of likes,
                    ratings in the last ``recent_days`` before the customer's latest rating and
                    their trend, the item's age, genre affinity, the classifier's predicted-genre affinity, rating and
                    poster similarity to the customer's latest likes, the customer's history length
    ranker          = LightGBM lambdarank (fitted on the driver), predicted on the executors

The ranker is fitted on a temporal carve-out of the fitted ratings only (each customer's latest 20%
held out, :func:`hybridrec.models.tuning.carve_out`, a seeded sample of at most ``fit_customers``
customers; the sources are refitted on the carve-out's training part, so the features it learns
from are what serving computes); its number of rounds is chosen by cross-validation over those
customers. Serving refits the sources on every rating (reusing the similarity stage's neighbours)
and streams the customers through :func:`rank_batch` in bounded chunks. Driver memory is bounded
by ``ease_items`` (N x N) and the sample; each chunk scores at most ``MAX_CELLS`` customer x item
cells at once. :mod:`tests.unit.test_ranker` has the pure-Python reference of every feature.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import sparse

from hybridrec import schemas as S
from hybridrec.config import POSTER_RANK_FEATURES, RANK_FEATURES, EvaluateConf, RankerConf, RecommendConf
from hybridrec.errors import UserError
from hybridrec.models.base import FitData, Fitted, Recommender, history_of, interactions, with_placeholders
from hybridrec.models.coldstart import centred_unit
from hybridrec.models.ease import ItemGram, choose_ease, ease_weights
from hybridrec.models.neighborhood import ItemKnn
from hybridrec.models.scoring import OUTPUT_COLUMNS, OUTPUT_SCHEMA, NeighborMatrix
from hybridrec.models.topk import top_k_columns
from hybridrec.models.tuning import RELEVANT, carve_out
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.runtime.batches import map_customer_chunks
from hybridrec.runtime.collect import collect_vectors

SOURCE_RANKED = "ranked"
DAY = 86400
LIKE_PRIOR = 10.0  # like_share: (likes + LIKE_PRIOR x the overall share) / (ratings + LIKE_PRIOR)
MAX_CELLS = 4_000_000  # customers x EASE items scored densely at once (the other sources are sparse)


@dataclass(frozen=True)
class Sources:
    """The candidate sources and item features fitted on one set of ratings, over one sorted
    catalogue index (``knn.item_ids``): picklable, broadcast once to the executors."""

    knn: NeighborMatrix  # rating-cosine neighbours k -> j; its item_ids are the catalogue
    ease_pos: np.ndarray  # (N,) catalogue positions of EASE's items
    ease_b: np.ndarray  # (N, N) EASE weights
    ease_min_rating: float  # the ratings EASE counts as interactions: >= this (0: all)
    svd_v: np.ndarray  # (N, f) PureSVD item factors (unit columns) of every rating's Gram matrix
    cosine: np.ndarray  # (N, N) co-rating cosine of EASE's items (every rating's Gram), 0 on the diagonal
    popularity: np.ndarray  # (I,) ratings per item
    like_share: np.ndarray  # (I,) share of the item's ratings that are likes, smoothed towards the overall share
    day0: int  # the first day (since the epoch) of ``daily``
    daily: np.ndarray  # (D + 1, I) cumulative ratings per item: row d = ratings on days < day0 + d
    release_day: np.ndarray  # (I,) release date in days since the epoch, nan where unknown
    genres: np.ndarray  # (I, G) TMDB genres, 0/1
    predicted: np.ndarray  # (I, P) the classifier's genre probabilities (0 where none)
    posters: np.ndarray  # (I, d) centred unit poster vectors (0 where none)

    @property
    def item_ids(self) -> np.ndarray:
        return self.knn.item_ids

    @cached_property
    def popularity_order(self) -> np.ndarray:
        """Catalogue positions by (popularity desc, position asc)."""
        return np.lexsort((np.arange(len(self.popularity)), -self.popularity))


def _seconds(ts: pd.Series) -> np.ndarray:
    """Timestamps as whole seconds since the epoch (NaT -> -1)."""
    t = pd.to_datetime(ts)
    out = np.full(len(t), -1, np.int64)
    ok = t.notna().to_numpy()
    out[ok] = t[ok].to_numpy("datetime64[s]").astype(np.int64)
    return out


def daily_counts(days: np.ndarray, cols: np.ndarray, n_items: int, horizon: int,
                 weights: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    """(day0, cumulative (D + 1, I) counts) of ratings on ``days`` of items ``cols`` (``weights``
    ratings each; default 1) over the last ``horizon`` days up to the newest (older count on day0)."""
    last = int(days.max()) if len(days) else 0
    day0 = last - horizon + 1
    d = np.clip(days - day0, 0, horizon - 1)
    per = np.zeros((horizon + 1, n_items), np.int32)
    np.add.at(per, (d + 1, cols), np.ones(len(cols), np.int32) if weights is None else weights.astype(np.int32))
    return day0, np.cumsum(per, axis=0, dtype=np.int32)


def _catalogue_rows(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, position in ``ids``) of each of ``wanted``; ``ids`` sorted."""
    if len(ids) == 0:
        return np.zeros(len(wanted), bool), np.zeros(len(wanted), np.int64)
    pos = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return ids[pos] == wanted, pos


@dataclass(frozen=True)
class ItemInputs:
    """What the sources read besides the ratings, collected once per fit: the items' genres and
    release dates, the classifier's probabilities, the poster vectors."""

    items: pd.DataFrame  # item_id, genres, release_date
    predicted: pd.DataFrame  # item_id, genre_probs (empty without a classifier)
    vec_ids: np.ndarray
    vectors: np.ndarray

    @staticmethod
    def collect(data: FitData, features: Sequence[str]) -> "ItemInputs":
        items = cast(pd.DataFrame, data.items.select(S.ITEM_ID, S.GENRES, "release_date").toPandas())
        predicted = pd.DataFrame({S.ITEM_ID: [], S.GENRE_PROBS: []})
        if "predicted_affinity" in features and data.categories is not None:
            predicted = cast(pd.DataFrame, data.categories().select(S.ITEM_ID, S.GENRE_PROBS).toPandas())
        vec_ids, vectors = np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
        if "poster_sim" in features:
            vec_ids, vectors = collect_vectors(data.embeddings())
        return ItemInputs(items, predicted, vec_ids, vectors)


def fit_sources(data: FitData, inputs: ItemInputs, recipe: NeighborRecipe, ec: EvaluateConf, rk: RankerConf,
                lam: float, min_rating: float, threshold: float,
                grams: tuple[ItemGram, ItemGram] | None = None) -> Sources:
    """The sources fitted on ``data.ratings``: its rating neighbours (the stored ones when the
    recipe is item_knn's), EASE over the ``ease_items`` most-rated items with ``lam`` and the
    ratings >= ``min_rating`` as interactions, PureSVD and the co-rating cosine from every
    rating's Gram matrix over the same items (``grams``: (EASE's, every rating's) of those
    ratings, when the caller has them), the per-item daily counts and share of likes (ratings >
    ``threshold``, smoothed by ``LIKE_PRIOR`` ratings at the overall share), and the item features
    over the catalogue."""
    ratings = data.ratings
    knn_pairs = cast(pd.DataFrame, data.neighbors(recipe).select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY).toPandas())
    counts = cast(pd.DataFrame, ratings.groupBy(S.ITEM_ID, F.datediff(F.col(S.TIMESTAMP), F.lit("1970-01-01"))
                                                .alias("_day"))
                  .agg(F.count(F.lit(1)).alias("count"), F.count(F.when(F.col(S.RATING) > threshold, 1)).alias("_likes"))
                  .toPandas())
    catalogue = np.unique(np.concatenate([inputs.items[S.ITEM_ID].to_numpy(np.int64),
                                          counts[S.ITEM_ID].to_numpy(np.int64)]))
    knn = NeighborMatrix.from_pairs(knn_pairs[S.ITEM_ID].to_numpy(np.int64),
                                    knn_pairs[S.NEIGHBOR_ID].to_numpy(np.int64),
                                    knn_pairs[S.SIMILARITY].to_numpy(np.float64), all_items=catalogue)
    ids = knn.item_ids
    n = len(ids)
    cols = np.searchsorted(ids, counts[S.ITEM_ID].to_numpy(np.int64))
    n_day = counts["count"].to_numpy(np.int64)
    popularity = np.bincount(cols, weights=n_day, minlength=n).astype(np.float64)
    likes = np.bincount(cols, weights=counts["_likes"].to_numpy(np.float64), minlength=n)
    overall = likes.sum() / max(popularity.sum(), 1.0)
    like_share = (likes + LIKE_PRIOR * overall) / (popularity + LIKE_PRIOR)
    days = counts["_day"].fillna(-1).to_numpy(np.int64)
    day0, daily = daily_counts(days, cols, n, rk.history_days, n_day)
    if grams is None:
        every = ItemGram.of(ratings, ec.ease_items)
        grams = (every if min_rating <= 0 else ItemGram.over(ratings, every.ids, min_rating), every)
    like, every = grams
    assert np.array_equal(like.ids, every.ids), "EASE's and every rating's Gram matrices over the same items"
    ease_b = ease_weights(like.gram, lam).astype(np.float32)
    w, v = np.linalg.eigh(every.gram)
    svd_v = v[:, np.argsort(-w)[:min(rk.factors, len(w))]].astype(np.float32)
    return Sources(knn, np.searchsorted(ids, every.ids), ease_b, min_rating, svd_v, gram_cosine(every.gram),
                   popularity, like_share, day0, daily,
                   *item_features(ids, inputs))


def gram_cosine(gram: np.ndarray) -> np.ndarray:
    """G[i, j] / sqrt(G[i, i] G[j, j]) (binary co-rating cosine), 0 on the diagonal and for unrated items."""
    d = np.sqrt(np.maximum(np.diag(gram), 0.0))
    cos = gram / np.maximum(d[:, None] * d[None, :], 1e-12)
    np.fill_diagonal(cos, 0.0)
    return cos.astype(np.float32)


def item_features(ids: np.ndarray, inputs: ItemInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(release day, genres, predicted genre probabilities, centred unit posters) over ``ids``."""
    n = len(ids)
    items = inputs.items
    found, pos = _catalogue_rows(ids, items[S.ITEM_ID].to_numpy(np.int64))
    release = np.full(n, np.nan)
    rel = pd.to_datetime(items["release_date"], errors="coerce")
    ok = found & rel.notna().to_numpy()
    release[pos[ok]] = rel[ok].to_numpy("datetime64[D]").astype(np.int64)
    names = sorted({g for gs in items[S.GENRES] for g in (gs if gs is not None else [])})
    gcol = {g: c for c, g in enumerate(names)}
    genres = np.zeros((n, max(len(names), 1)), np.float32)
    for p, f, gs in zip(pos, found, items[S.GENRES]):
        for g in (gs if f and gs is not None else []):
            genres[p, gcol[g]] = 1.0
    pnames = sorted({g for m in inputs.predicted[S.GENRE_PROBS] for g in dict(m)})
    pcol = {g: c for c, g in enumerate(pnames)}
    predicted = np.zeros((n, max(len(pnames), 1)), np.float32)
    pfound, ppos = _catalogue_rows(ids, inputs.predicted[S.ITEM_ID].to_numpy(np.int64))
    for p, f, m in zip(ppos, pfound, inputs.predicted[S.GENRE_PROBS]):
        for g, prob in (dict(m).items() if f else ()):
            predicted[p, pcol[g]] = float(prob)
    posters = np.zeros((n, inputs.vectors.shape[1]), np.float32)
    if len(inputs.vec_ids):
        vfound, vpos = _catalogue_rows(ids, inputs.vec_ids)
        vec = inputs.vectors[vfound]
        posters[vpos[vfound]] = centred_unit(vec, vec)
    return release, genres, predicted, posters



# ---- the candidates and features of one batch of customers ---------------------------------------
@dataclass(frozen=True)
class Candidates:
    """Each customer's candidates: (customer_id, item_id) rows and their features (``x``, columns
    in RANK_FEATURES order)."""

    customers: np.ndarray
    items: np.ndarray
    x: np.ndarray

    @staticmethod
    def concat(parts: Sequence["Candidates"]) -> "Candidates":
        if not parts:
            return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(RANK_FEATURES))))
        return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("customers", "items", "x")))


def top_ranks(scores: np.ndarray, depth: int) -> np.ndarray:
    """Each cell's rank within its row (1 = best, by score desc then column asc) among the row's
    finite cells, for the first ``depth`` of them; ``depth + 1`` beyond, nan for a non-finite cell.
    Exact under ties: of the cells tied with the depth-th, the smallest columns are inside."""
    m, n = scores.shape
    rank = np.full((m, n), float(depth + 1))
    if m == 0 or n == 0:
        return rank
    top = top_k_columns(np.where(np.isfinite(scores), scores, -np.inf), depth)  # non-finite last, then nan
    np.put_along_axis(rank, top, np.arange(1, top.shape[1] + 1, dtype=np.float64)[None, :], axis=1)
    rank[~np.isfinite(scores)] = np.nan
    return rank


@dataclass(frozen=True)
class History:
    """One batch's ratings over the catalogue: every customer's rows, a (customer, item) pair once
    (its latest rating), rows outside the catalogue (placeholders) left out."""

    cust_ids: np.ndarray  # sorted customers of the batch (placeholder-only ones included)
    r: np.ndarray  # row in cust_ids
    c: np.ndarray  # catalogue position
    rating: np.ndarray
    time: np.ndarray  # seconds since the epoch

    @staticmethod
    def of(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, times: np.ndarray,
           ids: np.ndarray) -> "History":
        cust_ids, crow = np.unique(customers, return_inverse=True)
        found, col = _catalogue_rows(ids, items)
        r, c, rating, time = crow[found], col[found], ratings[found], times[found]
        order = np.lexsort((time, c, r))  # per pair the latest last
        r, c, rating, time = r[order], c[order], rating[order], time[order]
        last = np.r_[(r[1:] != r[:-1]) | (c[1:] != c[:-1]), True] if len(r) else np.zeros(0, bool)
        return History(cust_ids, r[last], c[last], rating[last], time[last])

    def rows(self, lo: int, hi: int) -> "History":
        """Customers lo..hi-1 (rows renumbered from 0)."""
        a, b = np.searchsorted(self.r, [lo, hi])
        return History(self.cust_ids[lo:hi], self.r[a:b] - lo, self.c[a:b], self.rating[a:b], self.time[a:b])

    def liked(self, threshold: float, n: int) -> sparse.csr_matrix:
        """(customers, catalogue) ratings above ``threshold``."""
        keep = self.rating > threshold
        return sparse.csr_matrix((self.rating[keep], (self.r[keep], self.c[keep])), shape=(len(self.cust_ids), n))


def candidate_features(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, times: np.ndarray,
                       src: Sources, rk: RankerConf, threshold: float,
                       allowed: np.ndarray | None = None) -> Candidates:
    """Candidates and features of one batch of customers (parallel arrays of their ratings and the
    rating times in seconds since the epoch, -1 unknown; every customer's ratings all in the batch,
    in any order). A row of an item outside the catalogue (a placeholder) only makes its customer
    part of the batch; a (customer, item) pair rated twice counts once, with its latest rating.
    ``allowed``: catalogue mask of the items that may be recommended (None: all); candidates are
    chosen among them, their rank features are over the whole catalogue, as the ranker learned them."""
    hist = History.of(customers, items, ratings, times, src.item_ids)
    step = max(1, MAX_CELLS // max(len(src.ease_pos), 4 * rk.candidates, 1))  # dense: customers x EASE items
    return Candidates.concat([_chunk_features(hist.rows(lo, min(lo + step, len(hist.cust_ids))), src, rk,
                                              threshold, allowed)
                              for lo in range(0, len(hist.cust_ids), step)])


def _chunk_features(h: History, src: Sources, rk: RankerConf, threshold: float,
                    allowed: np.ndarray | None) -> Candidates:
    m, n = len(h.cust_ids), len(src.item_ids)
    r, c = h.r, h.c
    history = np.bincount(r, minlength=m).astype(np.float64)
    ref = np.full(m, -1, np.int64)  # the reference day: the day of the customer's latest rating (-1: none)
    np.maximum.at(ref, r, np.where(h.time >= 0, h.time // DAY, -1))
    r_liked = h.liked(threshold, n)
    liked01 = (r_liked > 0).astype(np.float64)
    rated_keys = r * n + c  # sorted: History keeps (row, column) order
    depth, top = rk.rank_depth, rk.candidates
    # knn: sparse scores over the catalogue; rated and zero cells carry no evidence
    knn_scores = (r_liked @ src.knn.csr()).tocoo()
    kr, kc, kv = knn_scores.row.astype(np.int64), knn_scores.col.astype(np.int64), knn_scores.data
    keep = (kv != 0) & ~_member(rated_keys, kr * n + kc)
    kr, kc, kv = kr[keep], kc[keep], kv[keep]
    kkey, knn_v, knn_r = _sparse_ranks(kr, kc, kv, n, depth)
    # ease / svd: dense over EASE's items only; a customer with none of them has no evidence there
    epos = np.full(n, -1, np.int64)  # catalogue position -> EASE index (-1: not an EASE item)
    epos[src.ease_pos] = np.arange(len(src.ease_pos))
    xa = np.zeros((m, len(src.ease_pos)), np.float32)  # every rated EASE item (PureSVD's input)
    xe = np.zeros((m, len(src.ease_pos)), np.float32)  # EASE's interactions (ratings >= ease_min_rating)
    er = epos[c] >= 0
    xa[r[er], epos[c[er]]] = 1.0
    ei = er & (h.rating >= src.ease_min_rating)
    xe[r[ei], epos[c[ei]]] = 1.0
    rated_e = xa > 0
    ease = np.where(rated_e | (xe.sum(1) == 0)[:, None], -np.inf, xe @ src.ease_b)
    svd = np.where(rated_e | (xa.sum(1) == 0)[:, None], -np.inf, (xa @ src.svd_v) @ src.svd_v.T)
    ease_r, svd_r = top_ranks(ease, depth), top_ranks(svd, depth)
    # the candidates: each source's top among the allowed items
    if allowed is None:
        k_in = knn_r <= top
        e_in, s_in = ease_r <= top, svd_r <= top  # nan compares False
        order = src.popularity_order
    else:
        ka = allowed[kkey % n]
        k_in = np.zeros(len(kkey), bool)
        k_in[ka] = _sparse_ranks(kkey[ka] // n, kkey[ka] % n, knn_v[ka], n, depth)[2] <= top  # keys stay sorted
        shut = ~allowed[src.ease_pos][None, :]
        e_in = top_ranks(np.where(shut, -np.inf, ease), depth) <= top
        s_in = top_ranks(np.where(shut, -np.inf, svd), depth) <= top
        order = src.popularity_order[allowed[src.popularity_order]]
    pop_r, pop_c = _first_unrated(order, rated_keys, n, np.bincount(r, minlength=m), top)
    es_r, es_e = np.nonzero(e_in | s_in)
    keys = np.unique(np.concatenate([kkey[k_in], pop_r * n + pop_c, es_r * n + src.ease_pos[es_e]]))
    rows, cols = keys // n, keys % n
    f: dict[str, np.ndarray] = {}
    at = np.minimum(np.searchsorted(kkey, keys), max(len(kkey) - 1, 0))
    hit = kkey[at] == keys if len(kkey) else np.zeros(len(keys), bool)
    f["knn"] = np.where(hit, knn_v[at] if len(kkey) else 0.0, np.nan)
    f["knn_rank"] = np.where(hit, knn_r[at] if len(kkey) else 0.0, np.nan)
    e = epos[cols]
    for name, v, rank in (("ease", ease, ease_r), ("svd", svd, svd_r)):
        val = np.where(e >= 0, v[rows, np.maximum(e, 0)], np.nan) if v.size else np.full(len(keys), np.nan)
        f[name] = np.where(np.isfinite(val), val, np.nan)
        f[f"{name}_rank"] = np.where(e >= 0, rank[rows, np.maximum(e, 0)], np.nan) if v.size else val
    f["popularity"] = np.log1p(src.popularity[cols])
    f["like_share"] = src.like_share[cols]
    # recent / trend: ratings of the item in the recent_days up to the reference day, and the window
    # before; nan where a window reaches before the daily counts' first day (older ones are lumped there)
    horizon = src.daily.shape[0] - 1
    end = np.clip(ref - src.day0 + 1, 0, horizon)
    mid, start = end - rk.recent_days, end - 2 * rk.recent_days
    recent = (src.daily[end[rows], cols] - src.daily[np.maximum(mid[rows], 0), cols]).astype(np.float64)
    previous = (src.daily[np.maximum(mid[rows], 0), cols] - src.daily[np.maximum(start[rows], 0), cols])
    f["recent"] = np.where((ref[rows] >= 0) & (mid[rows] >= 1), np.log1p(recent), np.nan)
    f["trend"] = np.where((ref[rows] >= 0) & (start[rows] >= 1), np.log1p(recent) - np.log1p(previous), np.nan)
    f["age"] = np.where(ref[rows] >= 0, (ref[rows] - src.release_day[cols]) / 365.0, np.nan)
    share = np.asarray(liked01 @ src.genres)
    share /= np.maximum(share.sum(1, keepdims=True), 1.0)
    f["genre_affinity"] = np.einsum("ij,ij->i", share[rows], src.genres[cols])
    pshare = np.asarray(liked01 @ src.predicted)
    pshare /= np.maximum(pshare.sum(1, keepdims=True), 1e-12)
    f["predicted_affinity"] = np.einsum("ij,ij->i", pshare[rows], src.predicted[cols])
    liked = h.rating > threshold
    latest = latest_likes(r[liked], c[liked], h.time[liked], m, rk.recent_likes)
    n_likes = (latest >= 0).sum(1)
    f["recent_sim_max"], f["recent_sim_mean"] = _recent_sims(latest, n_likes, rows, cols, epos, src.cosine)
    # poster_sim: the mean of the latest likes' posters (m x d) against the candidate's, in row blocks
    mean_poster = np.zeros((m, src.posters.shape[1]), np.float32)
    for s in range(latest.shape[1]):
        has = latest[:, s] >= 0
        mean_poster[has] += src.posters[latest[has, s]]
    mean_poster /= np.maximum(n_likes, 1)[:, None]
    poster = np.empty(len(rows))
    block = max(1, MAX_CELLS // max(src.posters.shape[1], 1))
    for lo in range(0, len(rows), block):
        sl = slice(lo, lo + block)
        poster[sl] = np.einsum("ij,ij->i", mean_poster[rows[sl]], src.posters[cols[sl]])
    f["poster_sim"] = np.where(n_likes[rows] > 0, poster, np.nan)
    f["history"] = np.log1p(history[rows])
    return Candidates(h.cust_ids[rows], src.item_ids[cols], np.column_stack([f[x] for x in RANK_FEATURES]))


def _first_unrated(order: np.ndarray, rated_keys: np.ndarray, n: int, counts: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns): each customer's first ``k`` items of ``order`` that it did not rate
    (``rated_keys``: sorted row * n + column); a customer with ``counts`` ratings reads only the
    first k + counts items of the order."""
    m = len(counts)
    width = np.minimum(k + counts, len(order))
    rows = np.repeat(np.arange(m), width)
    starts = np.cumsum(width) - width
    cols = order[np.arange(len(rows)) - np.repeat(starts, width)]
    fresh = ~_member(rated_keys, rows * n + cols)
    seen = np.cumsum(fresh)
    rank = seen - np.repeat(np.r_[0, seen][starts], width)  # fresh items so far in the customer's own run
    keep = fresh & (rank <= k)
    return rows[keep], cols[keep]


def _recent_sims(latest: np.ndarray, n_likes: np.ndarray, rows: np.ndarray, cols: np.ndarray, epos: np.ndarray,
                 cosine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max, mean) co-rating cosine of each candidate to its customer's latest likes (0 for a pair
    outside EASE's items; nan for a customer without likes)."""
    sim_max = np.full(len(rows), np.nan)
    sim_sum = np.zeros(len(rows))
    ecol = epos[cols]
    for s in range(latest.shape[1]):
        k = latest[rows, s]
        has = k >= 0
        sim = np.zeros(len(rows))
        both = has & (ecol >= 0)
        both[has] &= epos[k[has]] >= 0
        if both.any():
            sim[both] = cosine[epos[k[both]], ecol[both]]
        sim_sum += sim
        sim_max = np.where(has, np.fmax(sim_max, sim), sim_max)
    n = n_likes[rows]
    return sim_max, np.where(n > 0, sim_sum / np.maximum(n, 1), np.nan)


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` (any shape) is in ``sorted_keys``."""
    if not len(sorted_keys):
        return np.zeros(np.shape(keys), bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def _sparse_ranks(r: np.ndarray, c: np.ndarray, v: np.ndarray, n: int, depth: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted keys r * n + c, their values, their rank within row r by (value desc, column asc),
    ``depth + 1`` beyond ``depth``): :func:`top_ranks` over a row's stored cells only."""
    order = np.lexsort((c, -v, r))
    rs = r[order]
    rank = (np.arange(len(rs)) - np.searchsorted(rs, rs, side="left") + 1).astype(np.float64)
    rank = np.minimum(rank, depth + 1)
    keys = r[order] * n + c[order]
    by_key = np.argsort(keys, kind="stable")
    return keys[by_key], v[order][by_key], rank[by_key]


def latest_likes(r: np.ndarray, c: np.ndarray, time: np.ndarray, m: int, k: int) -> np.ndarray:
    """(m, k) catalogue columns of each customer's k latest likes (by time, ties: the larger
    column first), -1 where a customer has fewer."""
    out = np.full((m, k), -1, np.int64)
    order = np.lexsort((-c, -time, r))
    r, c = r[order], c[order]
    pos = np.arange(len(r)) - np.searchsorted(r, r, side="left")
    keep = pos < k
    out[r[keep], pos[keep]] = c[keep]
    return out


def because_items(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, times: np.ndarray,
                  picks: pd.DataFrame, src: Sources, threshold: float) -> np.ndarray:
    """For each pick (customer_id, item_id): the customer's liked item k with the largest
    r_k * sim(k, j) > 0 over the neighbour matrix (ties: smaller k), -1 when no liked item has the
    pick among its neighbours. Only the picks are expanded against the likes."""
    hist = History.of(customers, items, ratings, times, src.item_ids)
    r_liked = hist.liked(threshold, len(src.item_ids))
    rows = np.searchsorted(hist.cust_ids, picks[S.CUSTOMER_ID].to_numpy(np.int64))
    _, cols = _catalogue_rows(src.item_ids, picks[S.ITEM_ID].to_numpy(np.int64))
    knn = src.knn.csr()
    out = np.full(len(rows), -1, np.int64)
    per = np.diff(r_liked.indptr)[rows]
    pair = np.repeat(np.arange(len(rows)), per)
    if not len(pair):
        return out
    idx = np.repeat(r_liked.indptr[rows], per) + np.arange(len(pair)) - np.repeat(np.cumsum(per) - per, per)
    k = r_liked.indices[idx]
    contrib = r_liked.data[idx] * np.asarray(knn[k, cols[pair]]).ravel()
    ok = contrib > 0
    pair, k, contrib = pair[ok], k[ok], contrib[ok]
    order = np.lexsort((k, -contrib, pair))
    p = pair[order]
    first = np.r_[True, p[1:] != p[:-1]] if len(p) else np.zeros(0, bool)
    out[p[first]] = src.item_ids[k[order][first]]
    return out


# ---- the learned ranker ---------------------------------------------------------------------------
_BOOSTERS: dict[int, Any] = {}  # per Python worker: a model string's booster, parsed once


def booster(model: str) -> Any:
    """The LightGBM booster of ``model`` (a model string), cached per process."""
    key = hash(model)
    if key not in _BOOSTERS:
        import lightgbm as lgb

        _BOOSTERS.clear()
        _BOOSTERS[key] = lgb.Booster(model_str=model)
    return _BOOSTERS[key]


@dataclass(frozen=True)
class RankerFit:
    model: str  # the LightGBM model string (best iteration)
    features: tuple[str, ...]
    importance: dict[str, float]  # total gain per feature
    rounds: int
    validation_ndcg: float  # the cross-validated nDCG@10 at that many rounds
    customers: int  # carve-out customers fitted on (with a relevant candidate)
    rows: int

    def columns(self) -> np.ndarray:
        return np.array([RANK_FEATURES.index(f) for f in self.features])

    def lines(self) -> list[str]:
        total = sum(self.importance.values()) or 1.0
        imp = ", ".join(f"{f} {v / total:.1%}" for f, v in sorted(self.importance.items(), key=lambda t: -t[1]))
        return [f"ranked: LightGBM lambdarank, {self.rounds} rounds (chosen by cross-validation, nDCG@10 "
                f"{self.validation_ndcg:.4f}); fitted on {self.rows} candidates of {self.customers} carve-out "
                f"customers", f"ranked: feature importance (gain share): {imp}"]


def labels(cands: Candidates, gains: dict[int, dict[int, float]]) -> np.ndarray:
    """1 where the candidate is among its customer's held-out relevant items."""
    return np.fromiter((1.0 if int(i) in gains.get(int(c), {}) else 0.0
                        for c, i in zip(cands.customers, cands.items)), np.float64, len(cands.items))


def fit_ranker(cands: Candidates, y: np.ndarray, rk: RankerConf) -> RankerFit:
    """LightGBM lambdarank on the candidates of the customers with at least one relevant one. The
    number of rounds is chosen by ``folds``-fold cross-validation over those customers (seeded; each
    fold stops ``early_stopping`` rounds after its best; the best round of the folds' mean nDCG@10),
    then the ranker is refitted on all of them with that many rounds."""
    import lightgbm as lgb

    cust = cands.customers
    positive = np.unique(cust[y > 0])
    if len(positive) < max(2, rk.folds):
        raise UserError(f"recommend.model ranked: the carve-out has {len(positive)} customers with a relevant "
                        f"candidate, cross-validation needs at least {max(2, rk.folds)}: too few ratings to fit it "
                        f"(or lower recommend.ranker.folds)")
    fold_of = dict(zip(np.random.default_rng(rk.seed).permutation(positive).tolist(),
                       np.arange(len(positive)) % rk.folds))
    cols = np.array([RANK_FEATURES.index(f) for f in rk.features])
    order = np.lexsort((cands.items, cust))
    order = order[np.isin(cust[order], positive)]
    fold = np.array([fold_of[int(c)] for c in cust[order]])

    def dataset(sel: np.ndarray, reference: Any = None) -> Any:
        idx = order[sel]
        _, groups = np.unique(cust[idx], return_counts=True)
        return lgb.Dataset(cands.x[idx][:, cols], y[idx], group=groups, feature_name=list(rk.features),
                           reference=reference, free_raw_data=False)

    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": rk.learning_rate,
              "num_leaves": rk.leaves, "min_data_in_leaf": rk.min_leaf, "seed": rk.seed, "deterministic": True,
              "force_row_wise": True, "verbose": -1}
    curves = []
    for k in range(rk.folds):
        train = dataset(fold != k)
        result: dict[str, Any] = {}
        lgb.train(params, train, rk.rounds, valid_sets=[dataset(fold == k, train)], valid_names=["valid"],
                  callbacks=[lgb.early_stopping(rk.early_stopping, verbose=False), lgb.record_evaluation(result)])
        curves.append(np.asarray(result["valid"]["ndcg@10"]))
    reach = min(len(c) for c in curves)
    mean = np.mean([c[:reach] for c in curves], axis=0)
    best = int(np.argmax(mean)) + 1
    fitted = lgb.train(params, dataset(np.ones(len(order), bool)), best)
    gain = fitted.feature_importance("gain")
    return RankerFit(fitted.model_to_string(), tuple(rk.features), {f: float(g) for f, g in zip(rk.features, gain)},
                     best, float(mean[best - 1]), len(positive), len(order))


def rank_batch(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, times: np.ndarray, src: Sources,
               fit: RankerFit, rk: RankerConf, threshold: float, n: int,
               allowed: np.ndarray | None = None) -> pd.DataFrame:
    """Top-n (customer_id, rank, item_id, score, because_item_id, source) of one batch of customers
    by the ranker's score (ties: smaller item id)."""
    cands = candidate_features(customers, items, ratings, times, src, rk, threshold, allowed)
    # one thread: each Spark task has its core
    score = booster(fit.model).predict(cands.x[:, fit.columns()], num_threads=1) if len(cands.items) else np.zeros(0)
    order = np.lexsort((cands.items, -score, cands.customers))
    c = cands.customers[order]
    pos = np.arange(len(c)) - np.searchsorted(c, c, side="left")
    sel = order[pos < n]
    picks = pd.DataFrame({S.CUSTOMER_ID: cands.customers[sel], S.RANK: (pos[pos < n] + 1).astype(np.int32),
                          S.ITEM_ID: cands.items[sel], S.SCORE: score[sel].astype(np.float64)})
    found = because_items(customers, items, ratings, times, picks, src, threshold)
    because = pd.array(found, dtype="Int64")
    because[found < 0] = pd.NA
    return picks.assign(**{S.BECAUSE_ITEM_ID: because, S.SOURCE: SOURCE_RANKED})[OUTPUT_COLUMNS]


def _batch_arrays(pdf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (pdf[S.CUSTOMER_ID].to_numpy(np.int64), pdf[S.ITEM_ID].to_numpy(np.int64),
            pdf[S.RATING].to_numpy(np.float64), _seconds(pdf[S.TIMESTAMP]))


# ---- the registered recommender -------------------------------------------------------------------
@dataclass
class FittedRanked(Fitted):
    data: FitData
    sources: Sources
    fit: RankerFit
    rc: RecommendConf
    notes: list[str] = field(default_factory=list)

    def recommend(self, customers: DataFrame | None, n: int, candidates: DataFrame | None = None) -> DataFrame:
        allowed = None
        if candidates is not None:
            keep = cast(pd.DataFrame, candidates.toPandas())[S.ITEM_ID].to_numpy(np.int64)
            allowed = np.isin(self.sources.item_ids, keep)
        rows = with_placeholders(history_of(self.data.ratings, customers), customers)
        spark = self.data.spark
        b = spark.sparkContext.broadcast((self.sources, self.fit, self.rc.ranker, self.rc.threshold, allowed))

        def score(chunk: pd.DataFrame) -> pd.DataFrame:
            src, fit, rk, threshold, mask = b.value
            return rank_batch(*_batch_arrays(chunk), src, fit, rk, threshold, n, mask)

        return map_customer_chunks(rows, score, OUTPUT_SCHEMA, partitions=self.rc.partitions,
                                   max_rows=self.rc.batch_rows, fault_stage="recommend")

    def lines(self) -> list[str]:
        return [*self.notes, *self.fit.lines()]


class Ranked(Recommender):
    """The two-stage recommender (module docstring)."""

    name = "ranked"

    def fit(self, data: FitData) -> Fitted:
        rc, ec = self.conf.recommend, self.conf.evaluate
        rk = rc.ranker
        recipe = ItemKnn(self.conf).recipe()  # the knn source is item_knn's neighbours
        inputs = ItemInputs.collect(data, rk.features)
        carve = carve_out(data.ratings, rk.fit_customers, rk.seed, relevant=RELEVANT)
        # the Grams of the carve-out's training part that EASE's tuning built serve the ranker's
        # carve-out sources: every carve-out of these ratings has the same training part
        ease = choose_ease(data, ec)
        lam, floor = ease.lam, ease.min_rating
        every = ease.train_grams.get(0.0) or ItemGram.over(carve.train, ease.train_gram.ids)
        carve_src = fit_sources(data.on(carve.train), inputs, recipe, ec, rk, lam, floor, rc.threshold,
                                (ease.train_gram, every))
        rows = carve.rows
        cands = candidate_features(*_batch_arrays(rows), carve_src, rk, rc.threshold)
        fit = fit_ranker(cands, labels(cands, carve.gains), rk)
        sources = fit_sources(data, inputs, recipe, ec, rk, lam, floor, rc.threshold)
        posters = "without the poster features" if not set(POSTER_RANK_FEATURES) & set(rk.features) else \
            "with the poster features"
        notes = [f"ranked: candidates = top {rk.candidates} of item_knn, ease (lambda {lam:g}, ratings >= {floor:g}, "
                 f"{len(sources.ease_pos)} items), svd ({sources.svd_v.shape[1]} factors), popularity; "
                 f"{len(rk.features)} features, {posters}"]
        return FittedRanked(data, sources, fit, rc, notes)
