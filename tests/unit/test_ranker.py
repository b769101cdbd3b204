"""The ranked model's candidates and features against a loop reference, its exact ranks, the daily
counts, and a ranker that must learn a planted signal."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from hybridrec.config import RANK_FEATURES, RankerConf
from hybridrec.errors import UserError
from hybridrec.models import ranker as R
from hybridrec.models.ranker import Candidates, Sources, because_items, candidate_features, daily_counts, \
    fit_ranker, labels, rank_batch, top_ranks
from hybridrec.models.scoring import NeighborMatrix
from hybridrec.testing.references import reference_ranker_features


def _sources(rng: np.random.Generator, n: int = 24, n_ease: int = 15, ties: bool = False,
             ease_min_rating: float = 3.0) -> Sources:
    """Random sources; with ``ties`` the similarities and EASE weights take a few values only."""
    ids = np.sort(rng.choice(np.arange(100, 400), n, replace=False)).astype(np.int64)
    a = rng.integers(0, n, 120)
    b = rng.integers(0, n, 120)
    keep = a != b
    pairs = np.unique(np.stack([a[keep], b[keep]], 1), axis=0)
    sims = rng.uniform(0.05, 1.0, len(pairs))
    if ties:
        sims = np.round(sims * 3) / 3 + 0.1
    knn = NeighborMatrix.from_pairs(ids[pairs[:, 0]], ids[pairs[:, 1]], sims, all_items=ids)
    ease_pos = np.sort(rng.choice(n, n_ease, replace=False))
    days = rng.integers(1000, 1100, 400)
    cols = rng.integers(0, n, 400)
    day0, daily = daily_counts(days, cols, n, 120)
    release = rng.uniform(0, 1000, n)
    release[3] = np.nan
    posters = rng.normal(size=(n, 6)).astype(np.float32)
    posters /= np.linalg.norm(posters, axis=1, keepdims=True)
    posters[5] = 0.0  # no poster
    cosine = rng.uniform(0, 1, (n_ease, n_ease)).astype(np.float32)
    np.fill_diagonal(cosine, 0.0)
    ease_b = rng.normal(size=(n_ease, n_ease)).astype(np.float32)
    if ties:
        ease_b = np.round(ease_b).astype(np.float32)
    return Sources(knn, ease_pos, ease_b, ease_min_rating,
                   rng.normal(size=(n_ease, 3)).astype(np.float32), cosine,
                   rng.integers(0, 6, n).astype(np.float64),  # popularity: many ties at the cut
                   rng.random(n),  # like_share
                   day0, daily, release, (rng.random((n, 4)) < 0.4).astype(np.float32),
                   rng.random((n, 3)).astype(np.float32), posters)


def _history(rng: np.random.Generator, src: Sources, customers: int = 9) -> list[tuple[int, int, float, int]]:
    """Random ratings, shuffled (a batch need not be sorted), with a rating given twice, a customer
    whose only row is a placeholder (an item outside the catalogue, no time) and one whose ratings
    are all older than the daily counts' first day."""
    rows = []
    for cust in range(1, customers + 1):
        k = int(rng.integers(1, 9))
        for item in rng.choice(src.item_ids, k, replace=False):
            # a few likes on the same day: their order is by the second
            rows.append((cust, int(item), float(rng.integers(1, 6)), int(rng.integers(1050, 1100)) * 86400
                         + int(rng.integers(0, 86400))))
    first = rows[0]
    rows.append((first[0], first[1], 5.0 if first[2] < 4 else 1.0, first[3] + 3600))  # rated again, later: counts
    rows.append((customers + 1, 99999, 0.0, -1))  # a placeholder: no history
    for item in src.item_ids[:3]:
        rows.append((customers + 2, int(item), 5.0, 900 * 86400))  # before the first day of the counts
    return [rows[i] for i in rng.permutation(len(rows))]


def _arrays(rows: list[tuple[int, int, float, int]]) -> tuple[np.ndarray, ...]:
    a = np.array(rows, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2], a[:, 3].astype(np.int64)


def _check(got: Candidates, want: dict[tuple[int, int], tuple[dict[str, float], int]],
           rows: list[tuple[int, int, float, int]], src: Sources) -> None:
    pairs = list(zip(got.customers.tolist(), got.items.tolist()))
    assert sorted(pairs) == sorted(want)
    for p, (c, i) in enumerate(pairs):
        feats, _ = want[(c, i)]
        for f, name in enumerate(RANK_FEATURES):
            v, w = got.x[p, f], feats[name]
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-5, abs=1e-5), (c, i, name, v, w)
    picks = pd.DataFrame({"customer_id": got.customers, "item_id": got.items})
    because = because_items(*_arrays(rows), picks, src, 3.0)
    assert because.tolist() == [want[pair][1] for pair in pairs]


@pytest.mark.parametrize("seed,ties,floor", [(0, False, 0.0), (1, False, 4.0), (2, False, 3.0), (3, True, 0.0),
                                             (4, True, 4.0)])
def test_candidates_and_features_equal_the_loop_reference(seed: int, ties: bool, floor: float) -> None:
    """``floor``: the smallest rating EASE and PureSVD count (0 every rating, 4 the likes only)."""
    rng = np.random.default_rng(seed)
    src = _sources(rng, ties=ties, ease_min_rating=floor)
    rows = _history(rng, src, customers=15)
    rk = RankerConf(candidates=4, rank_depth=6, recent_likes=2, recent_days=10, history_days=120)
    got = candidate_features(*_arrays(rows), src, rk, threshold=3.0)
    assert len(got.items) > 0
    want = reference_ranker_features(rows, src, rk, 3.0)
    _check(got, want, rows, src)
    # the placeholder-only customer: popularity candidates with no CF, time or like evidence
    lone = [f for (c, _), (f, _) in want.items() if c == 16]
    assert len(lone) == rk.candidates and all(math.isnan(f["ease"]) and math.isnan(f["age"]) for f in lone)
    assert all(f["history"] == 0.0 for f in lone)
    # the customer older than the counts: no recent or trend, an age all the same
    old = [f for (c, _), (f, _) in want.items() if c == 17]
    assert old and all(math.isnan(f["recent"]) and math.isnan(f["trend"]) for f in old)


def test_allowed_items_and_small_chunks_give_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    src = _sources(rng)
    rows = _history(rng, src)
    rk = RankerConf(candidates=3, rank_depth=5, recent_likes=3, recent_days=10, history_days=120)
    allowed = set(src.item_ids[::2].tolist())
    mask = np.isin(src.item_ids, list(allowed))
    want = reference_ranker_features(rows, src, rk, 3.0, allowed)
    assert all(i in allowed for _, i in want)
    _check(candidate_features(*_arrays(rows), src, rk, 3.0, mask), want, rows, src)
    monkeypatch.setattr(R, "MAX_CELLS", 3 * len(src.ease_pos))  # three customers per chunk
    _check(candidate_features(*_arrays(rows), src, rk, 3.0, mask), want, rows, src)


def test_top_ranks_are_exact_under_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (30, 40)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    got = top_ranks(scores, 7)
    for row in range(len(scores)):
        finite = [j for j in range(40) if np.isfinite(scores[row, j])]
        order = sorted(finite, key=lambda j: (-scores[row, j], j))
        want = np.full(40, 8.0)
        want[[j for j in range(40) if not np.isfinite(scores[row, j])]] = np.nan
        for k, j in enumerate(order[:7]):
            want[j] = k + 1
        np.testing.assert_array_equal(got[row], want)


def test_daily_counts_clip_old_ratings_to_the_first_day() -> None:
    day0, daily = daily_counts(np.array([10, 95, 99, 100, 100]), np.array([0, 1, 1, 1, 0]), 2, 5)
    assert day0 == 96
    assert daily.shape == (6, 2)
    np.testing.assert_array_equal(daily[-1], [2, 3])  # everything by the newest day
    np.testing.assert_array_equal(daily[1], [1, 1])  # on day0: the clipped old ones (days 10 and 95)
    np.testing.assert_array_equal(daily[4], [1, 2])  # days < 100: 10, 95, 99
    # counts given per (day, item): the same as one row per rating
    _, weighted = daily_counts(np.array([10, 95, 99, 100]), np.array([0, 1, 1, 0]), 2, 5, np.array([1, 1, 2, 1]))
    _, rows = daily_counts(np.array([10, 95, 99, 99, 100]), np.array([0, 1, 1, 1, 0]), 2, 5)
    np.testing.assert_array_equal(weighted, rows)


def test_the_ranker_learns_a_planted_signal_and_ranks_by_it() -> None:
    rng = np.random.default_rng(0)
    customers, per = 400, 30
    cust = np.repeat(np.arange(customers), per).astype(np.int64)
    items = np.tile(np.arange(per), customers).astype(np.int64)
    x = rng.normal(size=(customers * per, len(RANK_FEATURES)))
    signal = RANK_FEATURES.index("recent_sim_mean")
    y = (x[:, signal] + 0.3 * rng.normal(size=len(x)) > 1.2).astype(np.float64)
    cands = Candidates(cust, items, x)
    rk = RankerConf(rounds=60, early_stopping=10, min_leaf=20)
    fit = fit_ranker(cands, y, rk)
    assert fit.validation_ndcg > 0.8  # random order would be about 0.3 on these lists
    top = max(fit.importance, key=lambda f: fit.importance[f])
    assert top == "recent_sim_mean"
    # without the signal the ranker has nothing to learn from
    rk_blind = replace(rk, features=[f for f in RANK_FEATURES if f != "recent_sim_mean"])
    assert fit_ranker(cands, y, rk_blind).validation_ndcg < fit.validation_ndcg - 0.3


def test_labels_mark_the_held_out_relevant_items() -> None:
    cands = Candidates(np.array([1, 1, 2]), np.array([10, 11, 10]), np.zeros((3, len(RANK_FEATURES))))
    np.testing.assert_array_equal(labels(cands, {1: {11: 1.0}, 2: {}}), [0.0, 1.0, 0.0])


def test_rank_batch_orders_by_the_ranker_and_explains_with_a_liked_neighbour() -> None:
    rng = np.random.default_rng(3)
    src = _sources(rng)
    rows = _history(rng, src, customers=40)
    rk = RankerConf(candidates=5, rank_depth=5, recent_likes=2, recent_days=10, history_days=120, rounds=30,
                    early_stopping=5, min_leaf=5)
    arrays = _arrays(rows)
    cands = candidate_features(*arrays, src, rk, 3.0)
    y = (cands.x[:, RANK_FEATURES.index("popularity")] >= np.log1p(4)).astype(np.float64)  # popular = relevant
    fit = fit_ranker(cands, y, rk)
    lists = rank_batch(*arrays, src, fit, rk, 3.0, 3)
    assert list(lists.columns) == ["customer_id", "rank", "item_id", "score", "because_item_id", "source"]
    for cust, g in lists.groupby("customer_id"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1))
        assert (np.diff(g["score"].to_numpy()) <= 0).all()
        rated = {r[1] for r in rows if r[0] == cust}
        assert not rated & set(g["item_id"])
    knn = src.knn.csr()
    pos = {int(i): p for p, i in enumerate(src.item_ids)}
    explained = lists.dropna(subset=["because_item_id"])
    assert len(explained)
    for _, row in explained.iterrows():
        liked = {r[1] for r in rows if r[0] == row["customer_id"] and r[2] > 3.0}
        assert int(row["because_item_id"]) in liked
        assert knn[pos[int(row["because_item_id"])], pos[int(row["item_id"])]] > 0


def test_ranker_config_is_checked() -> None:
    with pytest.raises(UserError, match="rank_depth"):
        RankerConf(candidates=100, rank_depth=50)
    with pytest.raises(UserError, match="recommend.ranker.features"):
        RankerConf(features=[])


def test_gram_cosine_is_the_binary_co_rating_cosine() -> None:
    from hybridrec.models.ranker import gram_cosine

    x = (np.random.default_rng(2).random((50, 6)) < 0.4).astype(np.float64)
    x[:, 5] = 0.0  # nobody rated it
    got = gram_cosine(x.T @ x)
    for i in range(6):
        for j in range(6):
            den = np.linalg.norm(x[:, i]) * np.linalg.norm(x[:, j])
            want = 0.0 if i == j or den == 0 else float(x[:, i] @ x[:, j] / den)
            assert got[i, j] == pytest.approx(want, abs=1e-6)


def test_too_few_customers_to_fit_is_a_one_line_error() -> None:
    x = np.zeros((6, len(RANK_FEATURES)))
    cands = Candidates(np.array([1, 1, 2, 2, 3, 3]), np.arange(6), x)
    with pytest.raises(UserError, match="3 customers with a relevant candidate, cross-validation needs at least 5"):
        fit_ranker(cands, np.array([1.0, 0, 1, 0, 1, 0]), RankerConf())
