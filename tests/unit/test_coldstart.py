"""The hybrid's cold-start model: features against a loop reference, the fit, the list policy, hubs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataclasses import replace

from hybridrec.models.coldstart import (
    FEATURES, ColdModel, ColdModels, ColdScorer, ItemArrays, build_catalogue, carve_out, centred_unit,
    fit_cold_model, fit_content_map, fit_logistic, image_neighbours)
from hybridrec.models.scoring import SOURCE_COLD_START, SOURCE_NEIGHBORS, NeighborMatrix, score_batch, score_batch_lifts
from hybridrec.testing.references import cold_features, reference_features


def _items(n: int, rng: np.random.Generator) -> pd.DataFrame:
    genres = ["Action", "Comedy", "Drama", "Horror"]
    return pd.DataFrame({
        "item_id": np.arange(1, n + 1, dtype=np.int64),
        "genres": [list(rng.choice(genres, size=rng.integers(1, 3), replace=False)) for _ in range(n)],
        "vote_count": rng.integers(0, 5000, n).astype(float),
        "vote_average": np.round(rng.uniform(3, 9, n), 1)})


def test_features_equal_the_loop_reference() -> None:
    rng = np.random.default_rng(3)
    items = _items(30, rng)
    items.loc[4, "vote_count"] = np.nan  # unknown metadata counts 0
    vec_ids = np.arange(1, 31, dtype=np.int64)[rng.random(30) < 0.8]  # some items have no poster
    vectors = rng.normal(size=(len(vec_ids), 8)).astype(np.float32) + 3.0  # a shared direction, as CNN features
    cold = np.array([2, 5, 9, 17, 30], dtype=np.int64)
    rated = np.setdiff1d(np.arange(1, 31), cold)
    fit_rows = pd.DataFrame([(c, int(i), float(rng.integers(1, 6))) for c in range(100, 140)
                             for i in rng.choice(rated, 10, replace=False)], columns=["customer_id", "item_id", "rating"])
    cmap = fit_content_map(fit_rows, ItemArrays.of(items), vec_ids, vectors, inputs=("image", "genre", "decade"),
                           factors=4, l2_grid=(1.0,), threshold=3.0, seed=0)
    assert cmap is not None
    cat = build_catalogue(items, cold, rated, vec_ids, vectors, k=4, content_map=cmap)
    assert cat.factors.shape == (30, 4) and np.abs(cat.cold_factors).sum() > 0
    rows = [(c, int(i), float(rng.integers(1, 6))) for c in (7, 8, 11) for i in rng.choice(30, 9, replace=False) + 1]
    rows.append((12, 9, 5.0))  # a customer who rated a cold item only
    c, i, r = (np.array(x) for x in zip(*rows))
    cust, x, rated_mask = cold_features(c, i, r, cat, threshold=3.0)
    assert x.shape == (4, len(cold), len(FEATURES)) and np.abs(x[..., FEATURES.index("cf")]).sum() > 0
    for a, cust_id in enumerate(cust):
        history = {int(ii): float(rr) for cc, ii, rr in rows if cc == cust_id}
        for b, item in enumerate(cat.cold_ids):
            assert x[a, b] == pytest.approx(reference_features(history, int(item), cat, 3.0), abs=1e-9)
            assert rated_mask[a, b] == (int(item) in history)


def test_image_neighbours_are_centred_topk_among_rated_items() -> None:
    rng = np.random.default_rng(0)
    vec_ids = np.arange(1, 41, dtype=np.int64)
    vectors = (rng.normal(size=(40, 6)) + 5.0).astype(np.float32)
    rated = np.arange(5, 41, dtype=np.int64)
    m = image_neighbours(np.array([1, 2, 7]), rated, vec_ids, vec_ids, vectors, k=3).toarray()
    unit = centred_unit(vectors, vectors[4:])
    for row, item in enumerate((1, 2, 7)):
        sims = {int(j): float(unit[item - 1] @ unit[j - 1]) for j in rated if j != item}
        top = sorted(sims, key=lambda j: (-sims[j], j))[:3]
        expect = {j: s for j, s in ((j, sims[j]) for j in top) if s > 0}
        got = {int(vec_ids[c]): v for c, v in enumerate(m[row]) if v != 0}
        assert got.keys() == expect.keys() and all(got[j] == pytest.approx(expect[j], abs=1e-5) for j in got)
        assert item not in got


def test_centring_removes_poster_hubs() -> None:
    """Raw CNN features share one direction: raw cosine makes a few items everybody's neighbour."""
    rng = np.random.default_rng(1)
    common = rng.normal(size=32) * 4
    vectors = (common + rng.normal(size=(300, 32)) * rng.uniform(0.5, 2.0, size=(300, 1))).astype(np.float32)
    ids = np.arange(1, 301, dtype=np.int64)

    def max_in_degree(v: np.ndarray) -> int:
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        s = u @ u.T
        np.fill_diagonal(s, -np.inf)
        top = np.argsort(-s, axis=1)[:, :5]
        return int(np.bincount(top.ravel(), minlength=len(v)).max())

    raw = max_in_degree(vectors)
    centred = max_in_degree(centred_unit(vectors, vectors))
    assert raw > 3 * centred  # the hub effect, and centring's cure
    m = image_neighbours(ids[:50], ids[50:], ids, ids, vectors, k=5)
    assert np.bincount(m.indices, minlength=300).max() <= centred + 5


def test_logistic_fit_recovers_the_generating_weights() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40000, 3)) * [1.0, 2.0, 0.5] + [0, 1, 3]
    true_w = np.array([1.5, -0.5, 0.0])
    z = ((x - x.mean(0)) / x.std(0)) @ true_w - 1.0
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-z))).astype(float)
    model = fit_logistic(x, y, ["prior", "vote_average", "genre"], l2=0.0)
    assert model.weights == pytest.approx(true_w, abs=0.06)
    assert model.bias == pytest.approx(-1.0, abs=0.06)
    assert model.base_rate == pytest.approx(y.mean())
    p = model.probability(x)
    assert abs(p.mean() - y.mean()) < 0.01  # calibrated in the large


def test_fit_sees_only_the_ratings_it_is_given_and_learns_the_signal() -> None:
    """Customers like popular items of their genre; the fit must find prior and genre positive."""
    rng = np.random.default_rng(2)
    items = _items(200, rng)
    pop = np.log1p(items["vote_count"].to_numpy())
    rows = []
    for c in range(1, 151):
        taste = rng.choice(["Action", "Comedy", "Drama", "Horror"])
        w = np.exp(pop / 3) * np.array([3.0 if taste in g else 0.3 for g in items["genres"]])
        for i in rng.choice(items["item_id"].to_numpy(), 25, replace=False, p=w / w.sum()):
            g = items.loc[i - 1, "genres"]
            rows.append((c, int(i), 5.0 if taste in g else float(rng.integers(1, 4))))
    ratings = pd.DataFrame(rows, columns=["customer_id", "item_id", "rating"])
    ids = items["item_id"].to_numpy()
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    model = fit_cold_model(ratings, items, ids, vectors, features=["prior", "genre", "image"], fraction=0.2, seed=0,
                           threshold=3.0, relevant=4.0, neighbours=10, l2=1.0)
    assert model.metadata.features == ("prior", "genre", "image")
    assert model.content.features == ("genre", "image")  # the regime without TMDB metadata
    w = dict(zip(model.metadata.features, model.metadata.weights))
    assert w["prior"] > 0.2 and w["genre"] > 0.2
    assert 0 < model.base_rate < 0.5 and model.content.base_rate == model.base_rate
    hidden = carve_out(ratings, 0.2, 0)
    assert len(hidden) == round(0.2 * ratings["item_id"].nunique()) and np.isin(hidden, ratings["item_id"]).all()


def _taste_data(seed: int, customers: int = 150) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = _items(200, rng)
    pop = np.log1p(items["vote_count"].to_numpy())
    rows = []
    for c in range(1, customers + 1):
        taste = rng.choice(["Action", "Comedy", "Drama", "Horror"])
        w = np.exp(pop / 3) * np.array([3.0 if taste in g else 0.3 for g in items["genres"]])
        for i in rng.choice(items["item_id"].to_numpy(), 25, replace=False, p=w / w.sum()):
            rows.append((c, int(i), 5.0 if taste in items.loc[i - 1, "genres"] else float(rng.integers(1, 4))))
    return (pd.DataFrame(rows, columns=["customer_id", "item_id", "rating"]), items, items["item_id"].to_numpy(),
            rng.normal(size=(200, 8)).astype(np.float32))


def test_the_fit_in_customer_chunks_is_the_fit_in_one_piece() -> None:
    ratings, items, ids, vectors = _taste_data(3)
    kw = dict(features=list(FEATURES), fraction=0.2, seed=0, threshold=3.0, relevant=4.0, neighbours=10, l2=1.0)
    whole = fit_cold_model(ratings, items, ids, vectors, **kw)  # type: ignore[arg-type]
    chunked = fit_cold_model(ratings, items, ids, vectors, max_cells=97, **kw)  # type: ignore[arg-type]
    for a, b in ((chunked.metadata, whole.metadata), (chunked.content, whole.content)):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-9, atol=1e-12)
        assert a.bias == pytest.approx(b.bias, rel=1e-9) and a.base_rate == b.base_rate


def test_a_uniform_pair_sample_bounds_the_fit_and_keeps_it_calibrated() -> None:
    """With a tenth of the (customer, hidden item) pairs the base rate and the weights stay close:
    the sample is uniform, so the probabilities the lift rule compares stay calibrated."""
    ratings, items, ids, vectors = _taste_data(4, customers=600)
    kw = dict(features=["prior", "genre"], fraction=0.2, seed=0, threshold=3.0, relevant=4.0, neighbours=10, l2=1.0)
    whole = fit_cold_model(ratings, items, ids, vectors, **kw)  # type: ignore[arg-type]
    hidden = len(carve_out(ratings, 0.2, 0))
    pairs = ratings["customer_id"].nunique() * hidden
    sampled = fit_cold_model(ratings, items, ids, vectors, max_pairs=pairs // 10, max_cells=5000,
                             **kw)  # type: ignore[arg-type]
    assert sampled.base_rate == pytest.approx(whole.base_rate, rel=0.15)
    np.testing.assert_allclose(sampled.metadata.weights, whole.metadata.weights, rtol=0.35)
    assert not np.allclose(sampled.metadata.weights, whole.metadata.weights, rtol=1e-6)  # it did sample


def test_image_neighbours_in_small_chunks_equal_one_chunk() -> None:
    rng = np.random.default_rng(6)
    ids = np.arange(1, 121, dtype=np.int64)
    vectors = rng.normal(size=(120, 6)).astype(np.float32)
    one = image_neighbours(ids[:40], ids[30:], ids, ids, vectors, k=7)
    small = image_neighbours(ids[:40], ids[30:], ids, ids, vectors, k=7, max_cells=200)
    assert (one != small).nnz == 0 and one.nnz > 0


def _scorer(cold_ids: np.ndarray, probs: dict[int, float], slots: int, min_p: float) -> ColdScorer:
    """A scorer whose probability is a fixed per-item number (prior feature = logit(p))."""
    ids = np.sort(cold_ids)
    items = pd.DataFrame({"item_id": np.arange(1, 21, dtype=np.int64), "genres": [["Drama"]] * 20,
                          "vote_count": 0.0, "vote_average": 0.0})
    cat = build_catalogue(items, ids, np.arange(1, 21), np.zeros(0, np.int64), np.zeros((0, 4), np.float32), 5)
    logit = np.array([np.log(probs[int(i)] / (1 - probs[int(i)])) for i in ids])
    cat = replace(cat, prior=logit)
    model = ColdModel(("prior",), np.array([1.0]), 0.0, np.zeros(1), np.ones(1), 0.1)
    return ColdScorer(cat, ColdModels(model, model), slots, min_p / model.base_rate)  # lift x base rate = min_p


def test_cold_items_take_the_last_slots_when_confident_and_fill_short_lists() -> None:
    # warm neighbours: 1 -> 2..6 (sim 0.9 .. 0.5); items 15..18 are cold
    pairs = [(1, j, 1.0 - 0.1 * (j - 1)) for j in range(2, 7)] + [(1, 15, 0.99)]
    nm = NeighborMatrix.from_pairs(*(np.array(x) for x in zip(*pairs)))
    cold = _scorer(np.array([15, 16, 17, 18]), {15: 0.3, 16: 0.5, 17: 0.05, 18: 0.2}, slots=2, min_p=0.15)
    customers = np.array([100, 100, 200])
    items = np.array([1, 16, 1])
    ratings = np.array([5.0, 2.0, 5.0])
    out = score_batch(customers, items, ratings, nm, 5, 3.0, None, cold)
    a = out[out.customer_id == 100]
    # warm 2,3,4 then the two most probable unrated confident cold items (16 is rated): 15 (0.3), 18 (0.2)
    assert a.item_id.tolist() == [2, 3, 4, 15, 18] and a["rank"].tolist() == [1, 2, 3, 4, 5]
    assert a.source.tolist() == [SOURCE_NEIGHBORS] * 3 + [SOURCE_COLD_START] * 2
    assert a.score.tolist()[3:] == pytest.approx([0.3, 0.2])
    b = out[out.customer_id == 200]
    assert b.item_id.tolist() == [2, 3, 4, 16, 15]  # 15 is never a warm candidate: the cold model owns it
    # a list the warm side cannot fill is filled with cold items, confident or not
    short = score_batch(np.array([300]), np.array([6]), np.array([5.0]), nm, 5, 3.0, None, cold)
    assert short.item_id.tolist() == [16, 15, 18, 17] and set(short.source) == {SOURCE_COLD_START}
    # nothing confident: the warm list stays whole
    none = score_batch(customers, items, ratings, nm, 5, 3.0, None,
                       _scorer(np.array([15, 16, 17, 18]), {15: 0.3, 16: 0.5, 17: 0.05, 18: 0.2}, 2, 0.9))
    assert none[none.customer_id == 100].item_id.tolist() == [2, 3, 4, 5, 6]


def test_every_lift_from_one_scoring_equals_its_own_scoring() -> None:
    """The min_lift tuning scores once and places the cold picks for each lift: each list equals
    the one scored with that lift alone, and the lifts change only the cold picks."""
    pairs = [(1, j, 1.0 - 0.1 * (j - 1)) for j in range(2, 7)] + [(1, 15, 0.99)]
    nm = NeighborMatrix.from_pairs(*(np.array(x) for x in zip(*pairs)))
    probs = {15: 0.3, 16: 0.5, 17: 0.05, 18: 0.2}
    cold = _scorer(np.array([15, 16, 17, 18]), probs, slots=2, min_p=0.15)
    customers, items, ratings = np.array([100, 100, 200, 300]), np.array([1, 16, 1, 6]), np.array([5.0, 2.0, 5.0, 5.0])
    base = cold.model.base_rate
    lifts = [0.15 / base, 0.9 / base, 0.25 / base, float("inf")]
    many = score_batch_lifts(customers, items, ratings, nm, 5, 3.0, None, cold, lifts)
    for lift, got in zip(lifts, many):
        one = score_batch(customers, items, ratings, nm, 5, 3.0, None, _scorer(
            np.array([15, 16, 17, 18]), probs, slots=2, min_p=lift * base))
        pd.testing.assert_frame_equal(got.reset_index(drop=True), one.reset_index(drop=True))
    lists = [f[f.customer_id == 100].item_id.tolist() for f in many]
    # min_p 0.15: 15 and 18 take the last slots; 0.9: none does; 0.25: only 15; inf: none
    assert lists == [[2, 3, 4, 15, 18], [2, 3, 4, 5, 6], [2, 3, 4, 5, 15], [2, 3, 4, 5, 6]]
    # customer 300's list the neighbours cannot fill is filled with cold items whatever the lift
    assert all(f[f.customer_id == 300].item_id.tolist() == [16, 15, 18, 17] for f in many)


def test_the_new_list_from_the_same_pass_equals_scoring_with_only_the_new_items() -> None:
    """score_batch_lists' second list is what the new-item protocol scores: the neighbours and the
    cold scorer restricted to the new items, no fallback - from the main list's one product."""
    from hybridrec.models.scoring import LIST, LIST_MAIN, LIST_NEW, NewList, score_batch_lists

    rng = np.random.default_rng(4)
    pairs = [(i, j, float(np.round(rng.uniform(0.1, 1), 2))) for i in range(1, 15) for j in range(1, 15)
             if i != j and rng.random() < 0.35]
    nm = NeighborMatrix.from_pairs(*(np.array(x) for x in zip(*pairs)), all_items=np.arange(1, 21))
    probs = {i: float(rng.uniform(0.01, 0.6)) for i in range(15, 21)}
    cold_ids = np.arange(15, 21)
    new_ids = np.array([3, 5, 8, 11, 16, 18, 20])  # warm and cold ones
    customers = np.repeat(np.arange(100, 112), 4)
    items = rng.integers(1, 21, len(customers))
    ratings = rng.integers(1, 6, len(customers)).astype(float)
    keep = ~pd.DataFrame({"c": customers, "i": items}).duplicated().to_numpy()
    customers, items, ratings = customers[keep], items[keep], ratings[keep]
    cold = _scorer(cold_ids, probs, slots=2, min_p=0.2)
    new_cold = _scorer(np.intersect1d(cold_ids, new_ids), probs, slots=2, min_p=0.2)
    both = score_batch_lists(customers, items, ratings, nm, 5, 3.0, None, cold, NewList(new_ids, 3, new_cold))
    main = both[both[LIST] == LIST_MAIN].drop(columns=LIST).reset_index(drop=True)
    fresh = both[both[LIST] == LIST_NEW].drop(columns=LIST).reset_index(drop=True)
    pd.testing.assert_frame_equal(main, score_batch(customers, items, ratings, nm, 5, 3.0, None, cold)
                                  .reset_index(drop=True))
    only_new = NeighborMatrix.from_pairs(*(np.array(x) for x in zip(*[p for p in pairs if p[1] in set(new_ids)])))
    want = score_batch(customers, items, ratings, only_new, 3, 3.0, None, new_cold).reset_index(drop=True)
    assert len(want) > 0 and set(want["source"]) == {SOURCE_NEIGHBORS, SOURCE_COLD_START}
    assert set(fresh["item_id"]) <= set(new_ids.tolist())
    pd.testing.assert_frame_equal(fresh[want.columns], want, check_dtype=False)



def _liked_matrix(rows: pd.DataFrame, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    liked = rows[rows["rating"] > threshold]
    items = np.sort(liked["item_id"].unique())
    custs = np.sort(liked["customer_id"].unique())
    b = np.zeros((len(custs), len(items)))
    for c, i in zip(liked["customer_id"], liked["item_id"]):
        b[np.searchsorted(custs, c), np.searchsorted(items, i)] = 1.0
    return items, b


def test_puresvd_factors_equal_a_dense_svd() -> None:
    from hybridrec.models.coldstart import puresvd_factors

    rng = np.random.default_rng(8)
    rows = pd.DataFrame({"customer_id": rng.integers(0, 60, 900), "item_id": rng.integers(0, 40, 900) * 3 + 1,
                         "rating": 5.0})
    ids, v = puresvd_factors(rows["customer_id"].to_numpy(), rows["item_id"].to_numpy(), 6, seed=0)
    items, b = _liked_matrix(rows, 3.0)
    b = b / np.sqrt(b.sum(0))  # columns of unit length
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    want = vt[:6].T * s[:6]
    want *= np.sign(want[np.abs(want).argmax(0), np.arange(6)])
    assert (ids == items).all() and v.shape == (len(items), 6)
    np.testing.assert_allclose(v, want, atol=1e-8)


def test_content_rows_and_the_ridge_map_equal_the_closed_form() -> None:
    """The content rows against a hand-built reference, the map against the closed-form ridge on
    the same factors, the L2 the carve-out's best, and the chunked Gram the one-piece Gram."""
    from hybridrec.models.coldstart import DECADES, content_matrix, puresvd_factors
    from hybridrec.testing.references import reference_content_row

    rng = np.random.default_rng(9)
    items = _items(60, rng)
    items["release_year"] = rng.choice([0, 1915, 1954, 1988, 1999, 2031], 60)
    items.loc[3, "genres"] = None
    vec_ids = np.arange(1, 61, dtype=np.int64)[rng.random(60) < 0.7][::-1].copy()  # some missing, any order
    vectors = (rng.normal(size=(len(vec_ids), 5)) + 2).astype(np.float32)
    rows = pd.DataFrame({"customer_id": rng.integers(0, 80, 1500), "item_id": rng.integers(1, 61, 1500),
                         "rating": rng.integers(1, 6, 1500).astype(float)}).drop_duplicates(["customer_id", "item_id"])
    arrays = ItemArrays.of(items)
    grid = (0.1, 3.0, 300.0)
    kw = dict(inputs=("image", "genre", "decade"), factors=5, l2_grid=grid, threshold=3.0, seed=4)
    cmap = fit_content_map(rows, arrays, vec_ids, vectors, **kw)  # type: ignore[arg-type]
    small = fit_content_map(rows, arrays, vec_ids, vectors, chunk=7, **kw)  # type: ignore[arg-type]
    assert cmap is not None and small is not None
    np.testing.assert_allclose(small.weights, cmap.weights, rtol=1e-8, atol=1e-10)
    liked = rows[rows["rating"] > 3.0]
    ids, v = puresvd_factors(liked["customer_id"].to_numpy(), liked["item_id"].to_numpy(), 5, seed=4)
    assert (cmap.item_ids == ids).all()
    np.testing.assert_allclose(cmap.factors, v)
    pos = {int(i): r for r, i in enumerate(vec_ids)}
    mean = vectors[[pos[int(i)] for i in ids if int(i) in pos]].mean(0)
    meta = items.set_index("item_id")
    names = sorted({g for i in ids for g in (meta.loc[i, "genres"] or [])})
    x = np.array([reference_content_row(list(meta.loc[i, "genres"] or []), int(meta.loc[i, "release_year"]),
                                        vectors[pos[int(i)]] if int(i) in pos else None, mean, names,
                                        [int(d) for d in DECADES]) for i in ids])
    got = content_matrix(arrays, ids, vec_ids, vectors, cmap.inputs, cmap.genre_names, cmap.poster_mean)
    np.testing.assert_allclose(got, x, atol=1e-6)
    pen = np.diag(np.r_[np.ones(x.shape[1] - 1), 0.0])
    val = np.zeros(len(ids), bool)
    val[np.random.default_rng(4).choice(len(ids), round(0.2 * len(ids)), replace=False)] = True
    mse = {lam: float(((x[val] @ np.linalg.solve(x[~val].T @ x[~val] + lam * pen, x[~val].T @ v[~val]) - v[val]) ** 2)
                      .sum() / val.sum()) for lam in grid}
    assert cmap.mse == pytest.approx(mse, rel=1e-6)
    best = min(mse, key=mse.__getitem__)
    assert cmap.l2 == best
    np.testing.assert_allclose(cmap.weights, np.linalg.solve(x.T @ x + best * pen, x.T @ v), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(cmap.predict(arrays, ids, vec_ids, vectors, chunk=9), x @ cmap.weights, atol=1e-6)


def test_items_without_votes_are_scored_by_the_content_model() -> None:
    """vote_count null or 0 (a brand-new release): the content-only model's probability; known
    votes: the metadata model's."""
    rng = np.random.default_rng(10)
    items = _items(12, rng)
    items.loc[[1, 6], "vote_count"] = [np.nan, 0.0]
    cat = build_catalogue(items, np.array([2, 5, 7, 9]), np.arange(1, 13), np.zeros(0, np.int64),
                          np.zeros((0, 3), np.float32), 3)
    assert cat.has_meta.tolist() == [False, True, False, True]
    meta = ColdModel(("prior", "genre"), np.array([2.0, 0.5]), -1.0, np.zeros(2), np.ones(2), 0.1)
    content = ColdModel(("genre",), np.array([-3.0]), 0.5, np.zeros(1), np.ones(1), 0.1)
    scorer = ColdScorer(cat, ColdModels(meta, content), 2, 1.0)
    customers, it, r = np.array([1, 1, 2]), np.array([1, 3, 4]), np.array([5.0, 4.0, 5.0])
    cust, p = scorer.probabilities(customers, it, r, 3.0)
    _, x, _ = cold_features(customers, it, r, cat, 3.0)
    for a in range(len(cust)):
        for b in range(4):
            prior, genre = x[a, b, FEATURES.index("prior")], x[a, b, FEATURES.index("genre")]
            want = 1 / (1 + np.exp(-(2 * prior + 0.5 * genre - 1))) if cat.has_meta[b] else \
                1 / (1 + np.exp(-(-3 * genre + 0.5)))
            assert p[a, b] == pytest.approx(want)


def test_the_cf_feature_finds_new_items_by_their_content() -> None:
    """Tastes are latent clusters, posters are noisy copies of the cluster, genres say nothing:
    the content-only model (genre, image, cf) must rank a customer's hidden cluster items first,
    and the cf weight must come out positive."""
    rng = np.random.default_rng(11)
    n_items, k = 300, 4
    cluster = rng.integers(0, k, n_items)
    centres = rng.normal(size=(k, 16)) * 2
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "genres": [["Drama"]] * n_items,
                          "vote_count": np.nan, "vote_average": np.nan, "release_year": 1990})
    vectors = (centres[cluster] + rng.normal(size=(n_items, 16)) * 1.5 + 5).astype(np.float32)
    rows = []
    for c in range(400):
        taste = rng.integers(0, k)
        w = np.where(cluster == taste, 6.0, 1.0)
        for i in rng.choice(n_items, 30, replace=False, p=w / w.sum()):
            rows.append((c, int(i) + 1, 5.0 if cluster[i] == taste else 2.0))
    ratings = pd.DataFrame(rows, columns=["customer_id", "item_id", "rating"])
    model = fit_cold_model(ratings, items, items["item_id"].to_numpy(), vectors, features=["genre", "cf"],
                           fraction=0.2, seed=0, threshold=3.0, relevant=4.0, neighbours=10, l2=1.0)
    w = dict(zip(model.content.features, model.content.weights))
    assert model.content_map is not None and w["cf"] > 0.5
    # the hidden items scored through the same map: liked-cluster items above the rest
    hidden = carve_out(ratings, 0.2, 0)
    rest = ratings[~ratings["item_id"].isin(hidden)]
    cat = build_catalogue(items, hidden, rest["item_id"].unique(), items["item_id"].to_numpy(), vectors, 10,
                          model.content_map)
    cust, x, _ = cold_features(rest["customer_id"].to_numpy(), rest["item_id"].to_numpy(),
                               rest["rating"].to_numpy(), cat, 3.0)
    cf = x[..., FEATURES.index("cf")]
    top = np.argsort(-cf, axis=1)[:, :5]
    likes = {c: g["item_id"][g["rating"] > 3].to_numpy() - 1 for c, g in rest.groupby("customer_id")}
    hits = [np.mean(cluster[cat.cold_ids[top[a]] - 1] == np.bincount(cluster[likes[c]], minlength=k).argmax())
            for a, c in enumerate(cust) if len(likes.get(c, []))]
    assert np.mean(hits) > 0.8  # random: about 1 / k
