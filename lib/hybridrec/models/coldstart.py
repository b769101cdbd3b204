"""The hybrid's cold-start path: a fitted, calibrated model for items with few or no ratings.

Rating neighbours cannot reach an item nobody has rated, and the paper's poster neighbours rank
new items barely above random on real data (raw CNN cosines are all ~0.9, so a few "hub" posters
win everywhere). For the items with fewer than ``recommend.cold_start.max_ratings`` ratings the
hybrid scores each (customer, item) pair with a logistic model over what is known before anyone
rates the item:

* ``prior`` — log(1 + TMDB vote_count) at crawl time: the audience the item found elsewhere;
* ``vote_average`` — TMDB's mean vote / 10;
* ``genre`` — the customer's share of liked ratings that fall in the item's genres;
* ``image`` — log(1 + sum over the customer's liked items k of r_k * sim(j, k)) over the item's
  top-K poster neighbours among rated items, where sim is the cosine of *centred* embeddings
  clipped at 0. Centring (removing the mean poster vector) is what calibrates the image side: it
  strips the direction every poster shares, which is what makes raw cosines uniform and produces
  hubs (Suzuki et al., EMNLP 2013);
* ``cf`` — the item's score in collaborative-filtering space, though nobody rated it: PureSVD
  item factors of the liked ratings (Cremonesi et al. 2010) are learnt for the rated items, a
  ridge map predicts them from content (poster vector, genres, release decade; van den Oord et
  al. 2013, DropoutNet), and the feature is u . v_hat(j) with u the sum of the customer's liked
  items' factors (:class:`ContentMap`).

Two regimes, by design. ``prior`` and ``vote_average`` are TMDB metadata, which a brand-new
release does not have yet (and which, crawled today, are future knowledge for a back-test on old
ratings). The fit therefore yields two models on the same pairs (:class:`ColdModels`): one over
every configured feature, for items whose ``vote_count`` is known and > 0, and one over the
content features alone (``genre``, ``image``, ``cf``), for the items without it.

The weights are fitted on a carve-out of the training ratings only (never the evaluation's
held-out part): a seeded ``fit_fraction`` of the rated items is hidden, features come from the
rest, and the label is "the customer rated the hidden item >= relevant". Logistic regression
(Newton steps, L2) on standardised features; its output is a probability of relevance, the
calibrated quantity that decides whether a cold item earns a slot in a customer's list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from hybridrec.config import COLD_FEATURES, CONTENT_FEATURES, MAP_INPUTS, ColdStartConf
from hybridrec.models.topk import top_k_columns

FEATURES = COLD_FEATURES  # the order of the cold-start features
DECADES = np.arange(1920, 2030, 10)  # release-decade one-hot: 1920s (and before) ... 2020s, plus unknown


@dataclass(frozen=True)
class ItemArrays:
    """The items' metadata as arrays over the sorted ids: what the catalogue and the map read."""

    item_ids: np.ndarray  # sorted
    genre_names: tuple[str, ...]
    genres: np.ndarray  # (items, genres) 0/1
    votes: np.ndarray  # vote_count, 0 where unknown
    has_meta: np.ndarray  # vote_count known and > 0: the metadata regime
    vote_average: np.ndarray  # 0 where unknown
    year: np.ndarray  # release year, 0 where unknown

    @staticmethod
    def of(items: pd.DataFrame) -> "ItemArrays":
        """``items``: item_id, genres, vote_count, vote_average and (optional) release_year."""
        items = items.sort_values("item_id")
        names = sorted({g for gs in items["genres"] for g in (gs if gs is not None else [])})
        col = {g: i for i, g in enumerate(names)}
        genres = np.zeros((len(items), max(len(names), 1)), np.float64)
        for r, gs in enumerate(items["genres"]):
            for g in gs if gs is not None else []:
                genres[r, col[g]] = 1.0
        raw_votes = pd.to_numeric(items["vote_count"], errors="coerce").to_numpy(np.float64)
        years = (pd.to_numeric(items["release_year"], errors="coerce").fillna(0).to_numpy(np.int64)
                 if "release_year" in items.columns else np.zeros(len(items), np.int64))
        return ItemArrays(items["item_id"].to_numpy(np.int64), tuple(names), genres,
                          np.nan_to_num(np.maximum(raw_votes, 0), nan=0.0), np.nan_to_num(raw_votes, nan=0.0) > 0,
                          pd.to_numeric(items["vote_average"], errors="coerce").fillna(0).to_numpy(np.float64), years)

    def at(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of ``ids`` (every one must be an item)."""
        return np.searchsorted(self.item_ids, ids)


def _poster_rows(vec_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(has a poster vector, its row in ``vectors``) for each of ``ids``; ``vec_ids`` in any order."""
    order = np.argsort(vec_ids, kind="stable")
    srt = vec_ids[order]
    pos = np.minimum(np.searchsorted(srt, ids), max(len(srt) - 1, 0))
    has = (srt[pos] == ids) if len(srt) else np.zeros(len(ids), bool)
    return has, order[pos] if len(srt) else np.zeros(len(ids), np.int64)


@dataclass(frozen=True)
class ContentMap:
    """Content -> CF factors. ``factors`` are the PureSVD item factors (V = V_t^T S of the liked
    ratings, columns L2-normalised) of the items in ``item_ids``; ``weights`` the ridge map from
    an item's content row (:meth:`content`) to its factors, fitted on those items, its L2 chosen
    from a grid by the mean squared error on a seeded carve-out of them."""

    inputs: tuple[str, ...]
    genre_names: tuple[str, ...]
    poster_mean: np.ndarray  # centring of the poster vectors (the mapped items' mean), (dim,)
    item_ids: np.ndarray  # sorted ids of the items with factors
    factors: np.ndarray  # (items, d)
    weights: np.ndarray  # (content columns, d)
    l2: float
    mse: dict[float, float]  # carve-out mean squared error per L2 of the grid
    zero_mse: float  # ... of predicting zero factors (what the map has to beat)

    def content(self, arrays: ItemArrays, ids: np.ndarray, vec_ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return content_matrix(arrays, ids, vec_ids, vectors, self.inputs, self.genre_names, self.poster_mean)

    def predict(self, arrays: ItemArrays, ids: np.ndarray, vec_ids: np.ndarray, vectors: np.ndarray,
                chunk: int = 4096) -> np.ndarray:
        """(len(ids), d) predicted factors, in chunks of ``chunk`` items (bounded memory)."""
        out = np.zeros((len(ids), self.factors.shape[1]), np.float64)
        for lo in range(0, len(ids), chunk):
            out[lo:lo + chunk] = self.content(arrays, ids[lo:lo + chunk], vec_ids, vectors) @ self.weights
        return out

    def lines(self) -> list[str]:
        grid = ", ".join(f"{lam:g}: {m:.4g}" for lam, m in sorted(self.mse.items()))
        return [f"content -> CF map: {len(self.item_ids)} items x {self.factors.shape[1]} PureSVD factors from "
                f"{', '.join(self.inputs)}; L2 {self.l2:g} (carve-out MSE {grid}; predicting zero: {self.zero_mse:.4g})"]


def content_matrix(arrays: ItemArrays, ids: np.ndarray, vec_ids: np.ndarray, vectors: np.ndarray,
                   inputs: Sequence[str], genre_names: Sequence[str], poster_mean: np.ndarray) -> np.ndarray:
    """One row per item of ``ids``: [centred unit poster vector, has-poster] if image, the genre
    one-hot (over ``genre_names``) if genre, the release decade one-hot (plus unknown) if decade,
    and an intercept."""
    unknown = [str(x) for x in inputs if x not in MAP_INPUTS]
    if unknown:
        raise ValueError(f"unknown content-map inputs {unknown}; inputs are {', '.join(MAP_INPUTS)}")
    at = arrays.at(ids)
    parts = []
    if "image" in inputs:
        has, rows = _poster_rows(vec_ids, ids)
        img = np.zeros((len(ids), len(poster_mean)), np.float32)
        if has.any() and len(poster_mean):
            img[has] = centred_unit(vectors[rows[has]], poster_mean[None, :])
        parts += [img.astype(np.float64), has[:, None].astype(np.float64)]
    if "genre" in inputs:
        col = {g: i for i, g in enumerate(arrays.genre_names)}
        own = arrays.genres[at]
        parts.append(np.stack([own[:, col[g]] if g in col else np.zeros(len(ids)) for g in genre_names], axis=1)
                     if genre_names else np.zeros((len(ids), 0)))
    if "decade" in inputs:
        year = arrays.year[at]
        known = year > 0
        dec = np.zeros((len(ids), len(DECADES) + 1))
        idx = np.clip((year - DECADES[0]) // 10, 0, len(DECADES) - 1)
        dec[np.flatnonzero(known), idx[known]] = 1.0
        dec[~known, -1] = 1.0
        parts.append(dec)
    parts.append(np.ones((len(ids), 1)))
    return np.concatenate(parts, axis=1)


def puresvd_factors(customers: np.ndarray, items: np.ndarray, factors: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PureSVD of the binary (customer, item) matrix of ``(customers, items)`` pairs, columns
    L2-normalised: (sorted item ids, (items, k) factors V_t^T S), k = min(factors, rank bound),
    columns in decreasing singular value, each column's sign fixed (its largest |entry| > 0)."""
    from scipy.sparse.linalg import svds

    pairs = pd.DataFrame({"c": customers, "i": items}).drop_duplicates()
    item_ids, icol = np.unique(pairs["i"].to_numpy(np.int64), return_inverse=True)
    _, crow = np.unique(pairs["c"].to_numpy(np.int64), return_inverse=True)
    k = min(factors, min(int(crow.max(initial=-1)) + 1, len(item_ids)) - 1)
    if k < 1:
        return item_ids, np.zeros((len(item_ids), 0))
    count = np.bincount(icol, minlength=len(item_ids)).astype(np.float64)
    b = sparse.csr_matrix((1.0 / np.sqrt(count[icol]), (crow, icol)), shape=(int(crow.max()) + 1, len(item_ids)))
    v0 = np.random.default_rng(seed).normal(size=min(b.shape))
    _, s, vt = svds(b, k=k, v0=v0)
    order = np.argsort(-s, kind="stable")
    v = (vt[order].T * s[order]).astype(np.float64)
    sign = np.sign(v[np.abs(v).argmax(axis=0), np.arange(v.shape[1])])
    return item_ids, v * np.where(sign == 0, 1.0, sign)


def fit_content_map(ratings: pd.DataFrame, arrays: ItemArrays, vec_ids: np.ndarray, vectors: np.ndarray, *,
                    inputs: Sequence[str], factors: int, l2_grid: Sequence[float], threshold: float, seed: int,
                    holdout: float = 0.2, chunk: int = 4096) -> ContentMap | None:
    """PureSVD factors of the liked (rating > ``threshold``) ``ratings`` and the ridge map from
    content to them; None when the ratings support no factor. The ridge is solved from the Gram
    matrices of content rows built ``chunk`` items at a time (memory: the factors and a few
    (columns x columns) matrices, whatever the catalogue). The intercept is not penalised."""
    liked = ratings[ratings["rating"].to_numpy(np.float64) > threshold]
    liked = liked[liked["item_id"].isin(arrays.item_ids)]
    item_ids, v = puresvd_factors(liked["customer_id"].to_numpy(np.int64), liked["item_id"].to_numpy(np.int64),
                                  factors, seed)
    if v.shape[1] == 0:
        return None
    has, rows = _poster_rows(vec_ids, item_ids)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    mean = vectors[rows[has]].astype(np.float64).mean(0).astype(np.float32) if has.any()         else np.zeros(dim, np.float32)
    names = tuple(n for n, used in zip(arrays.genre_names, arrays.genres[arrays.at(item_ids)].sum(0) > 0) if used)
    val = np.isin(item_ids, carve_out(liked, holdout, seed))  # the items are liked's rated ones
    if val.all():
        val[:] = False
    gram: dict[bool, np.ndarray] = {}
    cross: dict[bool, np.ndarray] = {}
    for lo in range(0, len(item_ids), chunk):
        x = content_matrix(arrays, item_ids[lo:lo + chunk], vec_ids, vectors, inputs, names, mean)
        y = v[lo:lo + chunk]
        for part in (False, True):
            m = val[lo:lo + chunk] == part
            gram[part] = gram.get(part, 0) + x[m].T @ x[m]
            cross[part] = cross.get(part, 0) + x[m].T @ y[m]
    pen = np.ones(gram[False].shape[0])
    pen[-1] = 0.0  # the intercept

    def solve(g: np.ndarray, c: np.ndarray, lam: float) -> np.ndarray:
        return np.linalg.solve(g + np.diag(lam * pen + 1e-9), c)

    yy_val = float((v[val] ** 2).sum())
    n = max(int(val.sum()), 1)
    mse = {}
    for lam in dict.fromkeys(float(x) for x in l2_grid):
        w = solve(gram[False], cross[False], lam)
        mse[lam] = float((np.einsum("ij,ik,kj->", w, gram[True], w) - 2 * np.sum(w * cross[True]) + yy_val) / n)
    best = min(mse, key=lambda lam: (round(mse[lam], 12), -lam)) if val.any() else max(mse)
    weights = solve(gram[False] + gram[True], cross[False] + cross[True], best)
    return ContentMap(tuple(inputs), names, mean, item_ids, v, weights, best, mse if val.any() else {}, yy_val / n)


@dataclass(frozen=True)
class ColdCatalogue:
    """What scoring cold items needs, picklable (broadcast once)."""

    cold_ids: np.ndarray  # sorted ids of the items the cold model scores
    prior: np.ndarray  # (cold,)
    vote_average: np.ndarray  # (cold,)
    item_ids: np.ndarray  # sorted ids of every item (customers' histories are looked up here)
    item_genres: np.ndarray  # (items, genres) 0/1
    cold_genres: np.ndarray  # (cold, genres) 0/1
    image: sparse.csr_matrix  # (cold, items): top-K centred cosine to rated items, clipped at 0
    has_meta: np.ndarray  # (cold,) vote_count known and > 0: scored by the metadata model, else the content one
    factors: np.ndarray  # (items, d) CF factors of the items the content map was fitted on, 0 elsewhere
    cold_factors: np.ndarray  # (cold, d) the content map's prediction for the cold items


@dataclass(frozen=True)
class ColdModel:
    """Logistic regression over standardised features: p = sigmoid(((x - mean) / sd) . w + b)."""

    features: tuple[str, ...]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    sd: np.ndarray
    base_rate: float = 0.0  # share of relevant pairs in the fit: what a random cold item scores

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.sd) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def logit(self, columns: dict[str, np.ndarray], shape: tuple[int, int],
              keep: np.ndarray | None = None) -> np.ndarray:
        """The same model's logit summed feature by feature from unstacked columns (see
        :class:`ColdParts`), over the cold items ``keep`` (a mask; all when None)."""
        scale = self.weights / self.sd
        n = shape[1] if keep is None else int(keep.sum())
        z = np.full((shape[0], n), self.bias - float(scale @ self.mean))
        for f, w in zip(self.features, scale):
            if w != 0.0:
                z += w * (columns[f] if keep is None else columns[f][..., keep])
        return z

    def lines(self) -> list[str]:
        terms = ", ".join(f"{f} {w:+.3f}" for f, w in zip(self.features, self.weights))
        return [f"cold-start model (standardised weights): {terms}, bias {self.bias:+.3f}; "
                f"base rate {self.base_rate:.4f}"]


def centred_unit(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Vectors minus the mean of ``reference`` rows, scaled to unit length (zero rows stay zero)."""
    if len(reference) == 0:
        return np.zeros_like(vectors, dtype=np.float32)
    c = vectors.astype(np.float32) - reference.astype(np.float32).mean(0)
    n = np.linalg.norm(c, axis=1, keepdims=True)
    return np.where(n > 0, c / np.maximum(n, 1e-12), 0.0).astype(np.float32)


def image_neighbours(cold_ids: np.ndarray, rated_ids: np.ndarray, item_ids: np.ndarray, vec_ids: np.ndarray,
                     vectors: np.ndarray, k: int, max_cells: int = 1 << 22) -> sparse.csr_matrix:
    """(cold, items) CSR: each cold item's top-k centred cosines (> 0) to the rated items with a
    poster, itself excluded; ties by the smaller item id. Columns index ``item_ids``. Cold items are
    taken in chunks of at most ``max_cells`` (cold, rated) cosines: memory does not grow with the
    catalogue."""
    pos = {int(i): r for r, i in enumerate(vec_ids)}
    rated = np.array([i for i in rated_ids if int(i) in pos], dtype=np.int64)
    shape = (len(cold_ids), len(item_ids))
    if len(rated) == 0 or len(cold_ids) == 0 or k <= 0:
        return sparse.csr_matrix(shape)
    unit = centred_unit(vectors, vectors[[pos[int(i)] for i in rated]])
    r_unit = unit[[pos[int(i)] for i in rated]]
    r_col = np.searchsorted(item_ids, rated)
    rows, cols, vals = [], [], []
    kk = min(k, len(rated))
    chunk = max(1, max_cells // len(rated))
    for lo in range(0, len(cold_ids), chunk):
        ids = cold_ids[lo:lo + chunk]
        has = np.array([int(i) in pos for i in ids])
        if not has.any():
            continue
        sims = np.zeros((len(ids), len(rated)), np.float32)
        sims[has] = unit[[pos[int(i)] for i in ids[has]]] @ r_unit.T
        sims[ids[:, None] == rated[None, :]] = -np.inf  # never its own neighbour
        order = top_k_columns(sims, kk)  # columns follow the (sorted) rated ids: ties by the smaller id
        top = np.take_along_axis(sims, order, axis=1)
        r, c = np.nonzero((top > 0) & has[:, None])
        rows.append(lo + r)
        cols.append(r_col[order[r, c]])
        vals.append(top[r, c].astype(np.float64))
    if not rows:
        return sparse.csr_matrix(shape)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def build_catalogue(items: pd.DataFrame | ItemArrays, cold_ids: np.ndarray, rated_ids: np.ndarray,
                    vec_ids: np.ndarray, vectors: np.ndarray, k: int,
                    content_map: ContentMap | None = None) -> ColdCatalogue:
    """``items``: item_id, genres, vote_count, vote_average, optional release_year (one row per
    item), or their :class:`ItemArrays`. Without ``content_map`` the cf feature is 0."""
    arrays = items if isinstance(items, ItemArrays) else ItemArrays.of(items)
    item_ids = arrays.item_ids
    cold_ids = np.sort(np.asarray(cold_ids, np.int64))
    cold_ids = cold_ids[np.isin(cold_ids, item_ids)]
    at = arrays.at(cold_ids)
    if content_map is None:
        factors, cold_factors = np.zeros((len(item_ids), 0)), np.zeros((len(cold_ids), 0))
    else:
        factors = np.zeros((len(item_ids), content_map.factors.shape[1]))
        known = np.isin(content_map.item_ids, item_ids)
        factors[arrays.at(content_map.item_ids[known])] = content_map.factors[known]
        cold_factors = content_map.predict(arrays, cold_ids, vec_ids, vectors)
    return ColdCatalogue(cold_ids, np.log1p(arrays.votes[at]), arrays.vote_average[at] / 10.0, item_ids,
                         arrays.genres, arrays.genres[at],
                         image_neighbours(cold_ids, np.sort(rated_ids), item_ids, vec_ids, vectors, k),
                         arrays.has_meta[at], factors, cold_factors)


@dataclass(frozen=True)
class ColdParts:
    """The features of every (customer, cold item) pair of one batch, unstacked: the per-item ones
    (prior, vote_average) as (cold,) rows and the per-pair ones (genre, image, cf) as
    (customers, cold) arrays, so a fitted model sums them with its weights without building the
    (customers, cold, features) array."""

    cust_ids: np.ndarray  # sorted
    columns: dict[str, np.ndarray]  # FEATURES -> (cold,) or (customers, cold)
    rated: np.ndarray  # (customers, cold): the customer already rated the item

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.cust_ids), self.rated.shape[1]

    def rows(self, features: Sequence[str], take: np.ndarray | None = None) -> np.ndarray:
        """(pairs, features): every pair in row-major (customer, cold) order, or only the flat
        positions ``take``, built one feature at a time."""
        cols = [np.broadcast_to(self.columns[f], self.shape).reshape(-1) for f in features]
        return np.stack([c if take is None else c[take] for c in cols], axis=-1) if cols \
            else np.zeros((int(np.prod(self.shape)) if take is None else len(take), 0))


def cold_parts(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, cat: ColdCatalogue,
               threshold: float) -> ColdParts:
    """Features of every (customer, cold item) of one batch of (customer, item, rating) rows."""
    cust_ids, crow = np.unique(customers, return_inverse=True)
    n_items = len(cat.item_ids)
    col = np.minimum(np.searchsorted(cat.item_ids, items), max(n_items - 1, 0))
    known = (cat.item_ids[col] == items) if n_items else np.zeros(len(items), bool)
    liked = known & (ratings > threshold)
    shape = (len(cust_ids), n_items)
    r_liked = sparse.csr_matrix((ratings[liked].astype(np.float64), (crow[liked], col[liked])), shape=shape)
    b_liked = sparse.csr_matrix((np.ones(int(liked.sum())), (crow[liked], col[liked])), shape=shape)
    shares = np.asarray(b_liked @ cat.item_genres)
    shares /= np.maximum(shares.sum(1, keepdims=True), 1.0)
    genre = shares @ cat.cold_genres.T
    image = np.log1p(np.asarray((r_liked @ cat.image.T).todense()))
    cf = np.asarray(b_liked @ cat.factors) @ cat.cold_factors.T
    m = len(cat.cold_ids)
    rated = np.zeros((len(cust_ids), m), bool)
    ccol = np.searchsorted(cat.cold_ids, items)
    hit = (ccol < m) & (cat.cold_ids[np.minimum(ccol, max(m - 1, 0))] == items) if m else np.zeros(len(items), bool)
    rated[crow[hit], ccol[hit]] = True
    columns = {"prior": np.asarray(cat.prior, np.float64), "vote_average": np.asarray(cat.vote_average, np.float64),
               "genre": genre, "image": image, "cf": cf}
    return ColdParts(cust_ids, {f: columns[f] for f in FEATURES}, rated)


def fit_logistic(x: np.ndarray, y: np.ndarray, features: Sequence[str], l2: float = 1.0,
                 iterations: int = 50) -> ColdModel:
    """Logistic regression by Newton's method with an L2 penalty on the standardised weights."""
    mean = x.mean(0)
    sd = x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.c_[(x - mean) / sd, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    pen = np.r_[np.full(z.shape[1] - 1, l2), 0.0]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return ColdModel(tuple(features), w[:-1], float(w[-1]), mean, sd, float(y.mean()) if len(y) else 0.0)


def carve_out(ratings: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """The seeded share of the rated items hidden to fit the cold model (sorted ids)."""
    rated = np.sort(ratings["item_id"].unique().astype(np.int64))
    n = int(round(fraction * len(rated)))
    if n == 0:
        return np.zeros(0, np.int64)
    return np.sort(np.random.default_rng(seed).choice(rated, n, replace=False))


@dataclass(frozen=True)
class MapParams:
    """How the cf feature's content map is fitted (recommend.cold_start.factors, map_inputs, map_l2_grid)."""

    factors: int = 32
    inputs: tuple[str, ...] = MAP_INPUTS
    l2_grid: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)

    @staticmethod
    def configured(cs: ColdStartConf) -> "MapParams":
        return MapParams(cs.factors, tuple(cs.map_inputs), tuple(cs.map_l2_grid))

    def fit(self, ratings: pd.DataFrame, arrays: ItemArrays, vec_ids: np.ndarray, vectors: np.ndarray, *,
            threshold: float, seed: int) -> ContentMap | None:
        """:func:`fit_content_map` with these parameters."""
        return fit_content_map(ratings, arrays, vec_ids, vectors, inputs=self.inputs, factors=self.factors,
                               l2_grid=self.l2_grid, threshold=threshold, seed=seed)


@dataclass(frozen=True)
class ColdModels:
    """The two regimes: ``metadata`` over every configured feature scores the items whose
    vote_count is known and > 0; ``content`` over the content features among them scores the
    rest (a brand-new release). Both are fitted on the same pairs, so they share the base rate."""

    metadata: ColdModel
    content: ColdModel
    content_map: ContentMap | None = None  # the cf feature's map of the fit (fitted on its visible items)

    @property
    def base_rate(self) -> float:
        return self.metadata.base_rate

    def probability(self, parts: ColdParts, has_meta: np.ndarray) -> np.ndarray:
        """(customers, cold) probabilities of ``parts``: each cold item by its regime's model
        (has_meta: (cold,)), each model evaluated on its own items only."""
        if self.content.features == self.metadata.features or has_meta.all():
            z = self.metadata.logit(parts.columns, parts.shape)
        elif not has_meta.any():
            z = self.content.logit(parts.columns, parts.shape)
        else:
            z = np.empty(parts.shape)
            z[:, has_meta] = self.metadata.logit(parts.columns, parts.shape, has_meta)
            z[:, ~has_meta] = self.content.logit(parts.columns, parts.shape, ~has_meta)
        np.negative(z, out=z)  # the sigmoid in place: 1 / (1 + exp(-z))
        np.exp(z, out=z)
        z += 1.0
        return np.reciprocal(z, out=z)

    def lines(self) -> list[str]:
        meta = self.metadata.lines()
        if self.content.features == self.metadata.features:
            return meta
        return [f"{meta[0]} (items with TMDB votes)",
                f"{self.content.lines()[0]} (items without: the content-only regime)"]


def fit_cold_model(ratings: pd.DataFrame, items: pd.DataFrame | ItemArrays, vec_ids: np.ndarray, vectors: np.ndarray,
                   *, features: Sequence[str], fraction: float, seed: int, threshold: float, relevant: float,
                   neighbours: int, l2: float, max_pairs: int = 2_000_000, max_cells: int = 1 << 22,
                   mapping: MapParams = MapParams()) -> ColdModels:
    """Fit on a carve-out of ``ratings`` (customer_id, item_id, rating: the training part only).

    The cf feature's content map is fitted on the visible ratings only (the hidden items' factors
    are never seen: they are predicted from content, as a new item's are). The (customer, hidden
    item) pairs are featurised in customer chunks of at most ``max_cells`` pairs, and when there
    are more than ``max_pairs`` of them a seeded uniform sample of that many is kept: driver memory
    is bounded by ``max_pairs`` and ``max_cells``, whatever the number of customers and items. A
    uniform sample keeps the base rate (and so the calibration that the lift rule relies on)
    unbiased. Both regimes' models are fitted on these pairs."""
    arrays = items if isinstance(items, ItemArrays) else ItemArrays.of(items)
    content_features = [f for f in features if f in CONTENT_FEATURES]
    hidden = carve_out(ratings, fraction, seed)
    is_hidden = ratings["item_id"].isin(hidden).to_numpy()
    rest, held = ratings[~is_hidden], ratings[is_hidden]
    cmap = mapping.fit(rest, arrays, vec_ids, vectors, threshold=threshold, seed=seed) if "cf" in features else None
    cat = build_catalogue(arrays, hidden, rest["item_id"].unique().astype(np.int64), vec_ids, vectors, neighbours,
                          cmap)
    positive = held[held["rating"] >= relevant]
    customers = np.sort(positive["customer_id"].unique().astype(np.int64))
    m = len(cat.cold_ids)
    total = len(customers) * m
    keep_rate = min(1.0, max_pairs / total) if total else 1.0
    rng = np.random.default_rng(seed + 1)
    mine = rest[rest["customer_id"].isin(customers)]
    # rows sorted by customer once: a chunk of (sorted) customers is then one slice
    order = np.argsort(mine["customer_id"].to_numpy(np.int64), kind="stable")
    m_cust = mine["customer_id"].to_numpy(np.int64)[order]
    m_item, m_rating = mine["item_id"].to_numpy(np.int64)[order], mine["rating"].to_numpy(np.float64)[order]
    p_order = np.argsort(positive["customer_id"].to_numpy(np.int64), kind="stable")
    p_cust = positive["customer_id"].to_numpy(np.int64)[p_order]
    p_item = positive["item_id"].to_numpy(np.int64)[p_order]
    step = max(1, max_cells // max(m, 1))
    xs_parts, y_parts = [], []
    for lo in range(0, len(customers), step):
        chunk = customers[lo:lo + step]
        a, b = np.searchsorted(m_cust, chunk[0]), np.searchsorted(m_cust, chunk[-1], side="right")
        # customers whose every rating is hidden have no features but still count (as all-zero rows)
        c = np.r_[m_cust[a:b], chunk]
        i = np.r_[m_item[a:b], np.full(len(chunk), -1, np.int64)]
        r = np.r_[m_rating[a:b], np.zeros(len(chunk))]
        parts = cold_parts(c, i, r, cat, threshold)
        cust_ids = parts.cust_ids
        y = np.zeros(parts.shape)
        pa_, pb_ = np.searchsorted(p_cust, chunk[0]), np.searchsorted(p_cust, chunk[-1], side="right")
        pr = np.searchsorted(cust_ids, p_cust[pa_:pb_])
        pc = np.searchsorted(cat.cold_ids, p_item[pa_:pb_])
        ok = (pc < m) & (cat.cold_ids[np.minimum(pc, max(m - 1, 0))] == p_item[pa_:pb_])
        y[pr[ok], pc[ok]] = 1.0
        yy = y.ravel()
        take = np.nonzero(rng.random(len(yy)) < keep_rate)[0] if keep_rate < 1.0 else None
        xs = parts.rows(features, take)
        if take is not None:
            yy = yy[take]
        xs_parts.append(xs)
        y_parts.append(yy)
    xs = np.concatenate(xs_parts) if xs_parts else np.zeros((0, len(features)))
    yy = np.concatenate(y_parts) if y_parts else np.zeros(0)
    if len(xs) == 0 or yy.sum() == 0:
        def empty(fs: Sequence[str]) -> ColdModel:
            return ColdModel(tuple(fs), np.zeros(len(fs)), 0.0, np.zeros(len(fs)), np.ones(len(fs)))
        return ColdModels(empty(features), empty(content_features), cmap)
    metadata = fit_logistic(xs, yy, features, l2)
    content = metadata if content_features == list(features) else \
        fit_logistic(xs[:, [list(features).index(f) for f in content_features]], yy, content_features, l2)
    return ColdModels(metadata, content, cmap)


@dataclass(frozen=True)
class ColdScorer:
    """The catalogue, the fitted model and the list policy, broadcast with the neighbour matrix."""

    catalogue: ColdCatalogue
    model: ColdModels
    slots: int  # of a top-n list, at most this many go to cold items (after the warm ones)
    lift: float  # a cold item needs lift x the base rate (inf: cold items only fill short lists)

    @property
    def min_probability(self) -> float:
        """The fitted probability of relevance a cold item needs for a slot."""
        return self.lift * self.model.base_rate if np.isfinite(self.lift) else float("inf")

    def probabilities(self, customers: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                      threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(sorted customer ids, (customers, cold) probabilities with -inf where already rated)."""
        parts = cold_parts(customers, items, ratings, self.catalogue, threshold)
        p = self.model.probability(parts, self.catalogue.has_meta) if parts.rated.size else np.zeros(parts.shape)
        p[parts.rated] = -np.inf
        return parts.cust_ids, p

    def top(self, customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, threshold: float,
            depth: int, max_cells: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each customer's ``depth`` most probable unrated cold items (ties: smaller id), scored in
        customer chunks of at most ``max_cells`` (customer, item) pairs. Returns the sorted customer
        ids, the item ids and the probabilities (-inf where fewer than depth are unrated)."""
        cust_ids, crow = np.unique(customers, return_inverse=True)
        ids = self.catalogue.cold_ids
        depth = min(depth, len(ids))
        out_i = np.zeros((len(cust_ids), depth), np.int64)
        out_p = np.full((len(cust_ids), depth), -np.inf)
        step = max(1, max_cells // max(len(ids), 1))
        order_rows = np.argsort(crow, kind="stable")
        bounds = np.searchsorted(crow[order_rows], np.arange(0, len(cust_ids) + step, step))
        for k, lo in enumerate(range(0, len(cust_ids), step)):
            rows = order_rows[bounds[k]:bounds[k + 1]]
            _, p = self.probabilities(customers[rows], items[rows], ratings[rows], threshold)
            order = top_k_columns(p, depth)  # columns follow the sorted cold ids: ties by the smaller id
            out_i[lo:lo + len(p)] = ids[order]
            out_p[lo:lo + len(p)] = np.take_along_axis(p, order, axis=1)
        return cust_ids, out_i, out_p
