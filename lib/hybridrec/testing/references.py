"""Small pure-Python / numpy twins of the distributed algorithms, for the parity tests (and the
benchmarks' checks). Production code never imports this package (an import-linter contract)."""
from __future__ import annotations

import numpy as np

from hybridrec.config import RankerConf
from hybridrec.models.coldstart import FEATURES, ColdCatalogue, cold_parts
from hybridrec.models.ranker import Sources
from hybridrec.neighbors.kernels import SimilarityParams, pair_scores
from hybridrec.neighbors.ratingsim import RatingSimParams


def reference_neighbors(vectors: dict[int, np.ndarray], memberships: dict[int, list[str]],
                        params: SimilarityParams) -> dict[int, list[tuple[int, float, list[str]]]]:
    """Brute force over whole blocks in one process: item -> [(neighbour, similarity, shared blocks)]."""
    blocks: dict[str, list[int]] = {}
    for item, bs in memberships.items():
        if item in vectors:
            for b in bs:
                blocks.setdefault(b, []).append(item)
    best: dict[int, dict[int, tuple[float, set[str]]]] = {}
    for b, items in blocks.items():
        ids = np.array(sorted(items), dtype=np.int64)
        mat = np.stack([vectors[i] for i in ids]).astype(np.float32)
        sim, dist = pair_scores(mat, mat, params.measure)
        for r, item in enumerate(ids):
            for c, other in enumerate(ids):
                if other == item or (params.max_distance is not None and not dist[r, c] < params.max_distance):
                    continue
                s, shared = best.setdefault(int(item), {}).get(int(other), (float(sim[r, c]), set()))
                shared.add(b)
                best[int(item)][int(other)] = (s, shared)
    out = {}
    for item, cands in best.items():
        ranked = sorted(cands.items(), key=lambda kv: (-kv[1][0], kv[0]))[: params.top_k]
        out[item] = [(o, s, sorted(sh)) for o, (s, sh) in ranked]
    return out


def reference_rating_neighbors(rows: list[tuple[int, int, float, float]], params: RatingSimParams
                               ) -> dict[int, list[tuple[int, float, int]]]:
    """(customer, item, rating, timestamp) rows -> item -> [(neighbour, cosine, support)] top-K."""
    by_customer: dict[int, list[tuple[int, float, float]]] = {}
    for c, i, r, t in rows:
        by_customer.setdefault(c, []).append((i, r, t))
    if params.max_history > 0:
        by_customer = {c: sorted(v, key=lambda x: (-x[2], x[0]))[: params.max_history] for c, v in by_customer.items()}
    norms: dict[int, float] = {}
    dots: dict[tuple[int, int], float] = {}
    support: dict[tuple[int, int], int] = {}
    for hist in by_customer.values():
        for i, r, _ in hist:
            norms[i] = norms.get(i, 0.0) + r * r
            for j, rj, _ in hist:
                if i != j:
                    dots[(i, j)] = dots.get((i, j), 0.0) + r * rj
                    support[(i, j)] = support.get((i, j), 0) + 1
    out: dict[int, list[tuple[int, float, int]]] = {}
    for (i, j), d in dots.items():
        if support[(i, j)] >= params.min_support:
            out.setdefault(i, []).append((j, d / (norms[i] ** 0.5 * norms[j] ** 0.5), support[(i, j)]))
    return {i: sorted(v, key=lambda x: (-x[1], x[0]))[: params.top_k] for i, v in out.items()}


def reference_blend(image: dict[tuple[int, int], float], rating: dict[tuple[int, int], tuple[float, int]],
                    weight: float, shrinkage: float, top_k: int) -> dict[int, list[tuple[int, float]]]:
    """The blend over dicts: (item, neighbour) -> image sim / (rating cos, support)."""
    out: dict[int, list[tuple[int, float]]] = {}
    for pair in set(image) | set(rating):
        r, n = rating.get(pair, (0.0, 0))
        shrunk = n / (n + shrinkage) * r if n > 0 else 0.0
        out.setdefault(pair[0], []).append((pair[1], weight * shrunk + (1 - weight) * image.get(pair, 0.0)))
    return {i: sorted(v, key=lambda x: (-x[1], x[0]))[:top_k] for i, v in out.items()}


def reference_features(history: dict[int, float], cold: int, cat: ColdCatalogue, threshold: float) -> list[float]:
    """The five features of one (customer, cold item) pair, by loops over dicts."""
    ci = int(np.searchsorted(cat.cold_ids, cold))
    liked = {i: r for i, r in history.items() if r > threshold}
    gi = {int(i): k for k, i in enumerate(cat.item_ids)}
    counts = [0.0] * cat.item_genres.shape[1]
    for i in liked:
        if i in gi:
            for g in range(len(counts)):
                counts[g] += cat.item_genres[gi[i], g]
    total = max(sum(counts), 1.0)
    genre = sum(counts[g] / total * cat.cold_genres[ci, g] for g in range(len(counts)))
    row = cat.image.getrow(ci)
    image = sum(liked.get(int(cat.item_ids[j]), 0.0) * v for j, v in zip(row.indices, row.data))
    cf = 0.0
    for i in liked:
        if i in gi:
            for d in range(cat.factors.shape[1]):
                cf += float(cat.factors[gi[i], d]) * float(cat.cold_factors[ci, d])
    return [float(cat.prior[ci]), float(cat.vote_average[ci]), float(genre), float(np.log1p(image)), cf]


def reference_content_row(genres: list[str], year: int | None, poster: np.ndarray | None, poster_mean: np.ndarray,
                          genre_names: list[str], decades: list[int]) -> list[float]:
    """One item's content row of the content -> CF map, by hand: the centred unit poster vector and
    a has-poster flag, the genre one-hot, the release decade one-hot (first decade takes earlier
    years, last takes later ones, a last column for unknown), an intercept."""
    row: list[float] = []
    if poster is None:
        row += [0.0] * len(poster_mean) + [0.0]
    else:
        c = [float(a) - float(b) for a, b in zip(poster, poster_mean)]
        n = sum(x * x for x in c) ** 0.5
        row += [x / n if n > 0 else 0.0 for x in c] + [1.0]
    row += [1.0 if g in genres else 0.0 for g in genre_names]
    dec = [0.0] * (len(decades) + 1)
    if year is None or year <= 0:
        dec[-1] = 1.0
    else:
        dec[max(0, min(len(decades) - 1, (year - decades[0]) // 10))] = 1.0
    return row + dec + [1.0]


def reference_ranker_features(rows: list[tuple[int, int, float, int]], src: Sources, rk: RankerConf,
                              threshold: float, allowed: set[int] | None = None
                              ) -> dict[tuple[int, int], tuple[dict[str, float], int]]:
    """The ranked model's candidates and features by loops, one customer and one item at a time:
    rows = (customer, item, rating, time in seconds); returns (customer, item) -> (feature -> value,
    because item or -1). The twin of :func:`hybridrec.models.ranker.candidate_features` (and of
    :func:`~hybridrec.models.ranker.because_items` for the because item)."""
    import math

    ids = [int(i) for i in src.item_ids]
    pos = {i: p for p, i in enumerate(ids)}
    knn = src.knn.csr().toarray()
    ease_items = [ids[p] for p in src.ease_pos]
    epos = {i: e for e, i in enumerate(ease_items)}
    horizon = src.daily.shape[0] - 1

    def window(p: int, hi: int, lo: int) -> int:  # ratings of item p on days in (lo, hi]
        def upto(d: int) -> int:
            return int(src.daily[min(max(d - src.day0 + 1, 0), horizon), p])
        return upto(hi) - upto(lo)

    def ranked(s: dict[int, float], among: set[int] | None = None) -> dict[int, int]:
        keep = [j for j in s if among is None or j in among]
        return {j: k + 1 for k, j in enumerate(sorted(keep, key=lambda j: (-s[j], j)))}

    out: dict[tuple[int, int], tuple[dict[str, float], int]] = {}
    for cust in sorted({r[0] for r in rows}):
        latest_of: dict[int, tuple[int, float]] = {}  # item -> (time, rating) of its latest rating
        for _, item, rating, t in (r for r in rows if r[0] == cust and r[1] in pos):
            if item not in latest_of or t >= latest_of[item][0]:
                latest_of[item] = (t, rating)
        known = [(item, rating, t) for item, (t, rating) in sorted(latest_of.items())]
        seen = set(latest_of)
        ref = max(t for _, _, t in known) // 86400 if known else -1
        likes = [k for k in known if k[1] > threshold]
        open_items = [i for i in ids if i not in seen]
        # EASE sums over its interactions (ratings >= ease_min_rating), PureSVD over every rated
        # item; every rated item is excluded
        rated_e = [epos[item] for item, _, _ in known if item in epos]
        liked_e = [epos[item] for item, rating, _ in known if item in epos and rating >= src.ease_min_rating]
        score: dict[str, dict[int, float]] = {"knn": {}, "ease": {}, "svd": {}, "popularity": {}}
        for j in open_items:
            s = sum(rating * knn[pos[item], pos[j]] for item, rating, _ in likes)
            if s != 0:
                score["knn"][j] = s
            if j in epos and liked_e:
                score["ease"][j] = float(sum(src.ease_b[e, epos[j]] for e in liked_e))
            if j in epos and rated_e:
                score["svd"][j] = float(sum(sum(src.svd_v[e, f] for e in rated_e) * src.svd_v[epos[j], f]
                                            for f in range(src.svd_v.shape[1])))
            score["popularity"][j] = float(src.popularity[pos[j]])
        rank = {name: ranked(sc) for name, sc in score.items()}  # the features: over the whole catalogue
        choose = {name: ranked(sc, allowed) for name, sc in score.items()}  # the candidates: among the allowed
        cands = [j for j in open_items if any(choose[name].get(j, math.inf) <= rk.candidates for name in choose)]
        genre_share = np.zeros(src.genres.shape[1])
        pred_share = np.zeros(src.predicted.shape[1])
        for item, _, _ in likes:
            genre_share += src.genres[pos[item]]
            pred_share += src.predicted[pos[item]]
        genre_share /= max(genre_share.sum(), 1.0)
        pred_share = pred_share / pred_share.sum() if pred_share.sum() > 0 else pred_share
        latest = [k[0] for k in sorted(likes, key=lambda k: (-k[2], -k[0]))[:rk.recent_likes]]
        for j in cands:
            f: dict[str, float] = {}
            for name in ("knn", "ease", "svd"):
                f[name] = score[name].get(j, math.nan)
                rk_ = rank[name].get(j)
                f[f"{name}_rank"] = math.nan if rk_ is None else float(min(rk_, rk.rank_depth + 1))
            f["popularity"] = math.log1p(src.popularity[pos[j]])
            f["like_share"] = float(src.like_share[pos[j]])
            recent = window(pos[j], ref, ref - rk.recent_days)
            previous = window(pos[j], ref - rk.recent_days, ref - 2 * rk.recent_days)
            ok_recent, ok_trend = ref >= 0 and ref - rk.recent_days >= src.day0, \
                ref >= 0 and ref - 2 * rk.recent_days >= src.day0
            f["recent"] = math.log1p(recent) if ok_recent else math.nan
            f["trend"] = math.log1p(recent) - math.log1p(previous) if ok_trend else math.nan
            f["age"] = (ref - src.release_day[pos[j]]) / 365.0 if ref >= 0 else math.nan
            f["genre_affinity"] = float(genre_share @ src.genres[pos[j]])
            f["predicted_affinity"] = float(pred_share @ src.predicted[pos[j]])
            sims = [float(src.cosine[epos[k], epos[j]]) if k in epos and j in epos else 0.0 for k in latest]
            posters = [float(src.posters[pos[k]] @ src.posters[pos[j]]) for k in latest]
            f["recent_sim_max"] = max(sims) if sims else math.nan
            f["recent_sim_mean"] = sum(sims) / len(sims) if sims else math.nan
            f["poster_sim"] = sum(posters) / len(posters) if posters else math.nan
            f["history"] = math.log1p(len(known))
            contrib = sorted(((rating * knn[pos[item], pos[j]], item) for item, rating, _ in likes),
                             key=lambda t: (-t[0], t[1]))
            because = contrib[0][1] if contrib and contrib[0][0] > 0 else -1
            out[(cust, j)] = (f, because)
    return out


def cold_features(customers: np.ndarray, items: np.ndarray, ratings: np.ndarray, cat: ColdCatalogue,
                  threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scorer's features (:func:`hybridrec.models.coldstart.cold_parts`) stacked for the tests:
    the sorted customer ids, X (customers, cold, FEATURES) and the mask of pairs already rated."""
    parts = cold_parts(customers, items, ratings, cat, threshold)
    x = np.stack([np.broadcast_to(parts.columns[f], parts.shape) for f in FEATURES], axis=-1)
    return parts.cust_ids, x, parts.rated
