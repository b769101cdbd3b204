"""The vectorised scoring equals a direct transcription of the paper's top_Recommendations."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from hybridrec.models.scoring import (
    SOURCE_GENRE_POPULAR, SOURCE_NEIGHBORS, SOURCE_POPULAR, Fallback, NeighborMatrix, score_batch,
)
from hybridrec.runtime.batches import customer_chunks


def paper_top_recommendations(c: int, R: dict[int, dict[int, float]], n: int, NN: dict[int, list[tuple[int, float]]],
                              threshold: float) -> list[tuple[int, float, int]]:
    """top_Recommendations(c, R, n), transcribed: item_list gets (i_j, score) for each neighbour of
    each item rated above the threshold; scores add up per item; sorted; the first n. Ties sort
    by item id; rated items are excluded; 'because' is the largest single contribution."""
    t: dict[int, float] = defaultdict(float)
    best: dict[int, tuple[float, int]] = {}
    Ic = R[c]
    for k, rk in sorted(Ic.items()):
        if rk > threshold:
            for j, sim in NN.get(k, []):
                score = sim * rk
                t[j] = t[j] + score
                if j not in best or score > best[j][0]:
                    best[j] = (score, k)
    item_list = [(j, s) for j, s in t.items() if j not in Ic]
    item_list.sort(key=lambda js: (-js[1], js[0]))
    return [(j, s, best[j][1]) for j, s in item_list[:n]]


def random_world(seed: int, customers: int = 40, items: int = 60, k: int = 6, grid: bool = False):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    ids = np.arange(items) * 10 + 5
    NN: dict[int, list[tuple[int, float]]] = {}
    for i in ids:
        others = rng.choice(ids[ids != i], size=k, replace=False)
        sims = rng.integers(1, 5, k) / 4.0 if grid else rng.uniform(0.05, 1.0, k)  # grid: exact ties
        NN[int(i)] = [(int(o), float(s)) for o, s in zip(others, sims)]
    R: dict[int, dict[int, float]] = {}
    for c in range(customers):
        rated = rng.choice(ids, size=int(rng.integers(1, 12)), replace=False)
        R[1000 + c] = {int(i): float(rng.integers(1, 6)) for i in rated}
    return ids, NN, R


def to_inputs(ids, NN, R):  # type: ignore[no-untyped-def]
    pairs = [(i, j, s) for i, lst in NN.items() for j, s in lst]
    nm = NeighborMatrix.from_pairs(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]),
                                   np.array([p[2] for p in pairs]), all_items=ids)
    rows = sorted((c, i, r) for c, items in R.items() for i, r in items.items())
    return nm, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows])


@pytest.mark.parametrize("seed, grid", [(1, False), (2, True), (3, True)])
def test_parity_with_the_papers_pseudocode(seed: int, grid: bool) -> None:
    ids, NN, R = random_world(seed, grid=grid)
    nm, cust, items, ratings = to_inputs(ids, NN, R)
    out = score_batch(cust, items, ratings, nm, n=5, threshold=3.0)
    for c in R:
        want = paper_top_recommendations(c, R, 5, NN, 3.0)
        got = out[out["customer_id"] == c].sort_values("rank")
        assert got["item_id"].tolist() == [j for j, _, _ in want], c
        np.testing.assert_allclose(got["score"].to_numpy(), [s for _, s, _ in want], rtol=1e-12)
        assert got["because_item_id"].tolist() == [k for _, _, k in want], c
        assert got["rank"].tolist() == list(range(1, len(want) + 1))
        assert not set(got["item_id"]) & set(R[c])
    if grid:
        assert out.duplicated(["customer_id", "score"]).any()  # ties really were exercised


def test_streaming_in_small_batches_changes_nothing() -> None:
    ids, NN, R = random_world(4, customers=70)
    nm, cust, items, ratings = to_inputs(ids, NN, R)
    whole = score_batch(cust, items, ratings, nm, n=4, threshold=2.0)
    frame = pd.DataFrame({"customer_id": cust, "item_id": items, "rating": ratings})
    batches = [frame.iloc[i:i + 7] for i in range(0, len(frame), 7)]  # customers straddle batches
    streamed = pd.concat([score_batch(c["customer_id"].to_numpy(), c["item_id"].to_numpy(), c["rating"].to_numpy(),
                                      nm, 4, 2.0) for c in customer_chunks(iter(batches), max_rows=15)],
                         ignore_index=True)
    key = ["customer_id", "rank"]
    pd.testing.assert_frame_equal(whole.sort_values(key).reset_index(drop=True),
                                  streamed.sort_values(key).reset_index(drop=True), check_like=True)


def test_an_item_rated_twice_is_still_never_recommended() -> None:
    # items 1 and 2 are each other's neighbours; the customer rated both, item 2 in two rows (a
    # re-rating the caller did not collapse): neither may come back, even to fill a short list
    nm = NeighborMatrix.from_pairs(np.array([1, 2, 1]), np.array([2, 1, 3]), np.array([0.9, 0.8, 0.5]))
    out = score_batch(np.array([7, 7, 7]), np.array([1, 2, 2]), np.array([5.0, 4.0, 5.0]), nm, n=5, threshold=3.0)
    assert out["item_id"].tolist() == [3]
    assert out["score"].tolist() == [2.5]


def test_fallback_for_customers_with_nothing_above_the_threshold() -> None:
    ids, NN, R = random_world(5, customers=5)
    R[2000] = {int(ids[0]): 1.0}  # rated, but below the threshold: genre fallback
    R[2001] = {99999: 5.0}  # only an item nobody knows: overall fallback
    nm, cust, items, ratings = to_inputs(ids, NN, R)
    fb = Fallback(item_genres={int(ids[0]): ("Drama",), int(ids[1]): ("Drama",), int(ids[2]): ("Comedy",)},
                  by_genre={"Drama": [int(ids[1]), int(ids[0])], "Comedy": [int(ids[2])]},
                  overall=[int(ids[2]), int(ids[1]), int(ids[3]), int(ids[0])])
    out = score_batch(cust, items, ratings, nm, n=3, threshold=3.0, fallback=fb)
    genre = out[out["customer_id"] == 2000].sort_values("rank")
    assert genre["item_id"].tolist() == [int(ids[1]), int(ids[2]), int(ids[3])]  # Drama pick, then overall
    assert genre["source"].tolist() == [SOURCE_GENRE_POPULAR] * 3
    overall = out[out["customer_id"] == 2001].sort_values("rank")
    assert overall["item_id"].tolist() == [int(ids[2]), int(ids[1]), int(ids[3])]
    assert set(overall["source"]) == {SOURCE_POPULAR}
    for c, rated in R.items():
        if c < 2000:
            liked = any(r > 3.0 for r in rated.values())
            assert set(out[out["customer_id"] == c]["source"]) == ({SOURCE_NEIGHBORS} if liked else {SOURCE_POPULAR})


def test_an_empty_neighbour_matrix_serves_only_the_fallback() -> None:
    from hybridrec.models.scoring import Fallback, NeighborMatrix, score_batch

    empty = NeighborMatrix.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    fb = Fallback({5: ("Drama",), 6: ("Drama",)}, {"Drama": [5, 6]}, [5, 6])
    out = score_batch(np.array([1, 1]), np.array([5, 7]), np.array([4.0, 5.0]), empty, 3, 3.0, fb)
    assert out["item_id"].tolist() == [6] and set(out["source"]) == {"fallback_genre_popular"}
    assert score_batch(np.array([1]), np.array([5]), np.array([4.0]), empty, 3, 3.0).empty


def test_customer_chunks_gather_small_batches_and_never_split_a_customer() -> None:
    """Arrow's small batches are gathered into chunks of about max_rows; every row comes out once,
    in order, and each customer's rows are in one chunk."""
    rng = np.random.default_rng(4)
    cust = np.sort(rng.integers(0, 300, 2000))
    frame = pd.DataFrame({"customer_id": cust, "item_id": np.arange(len(cust))})
    sizes = rng.integers(1, 40, 200)
    edges = np.r_[0, np.cumsum(sizes)]
    batches = [frame.iloc[a:b] for a, b in zip(edges[:-1], edges[1:]) if a < len(frame)]
    batches.insert(3, frame.iloc[0:0])  # an empty batch
    chunks = list(customer_chunks(iter(batches), max_rows=150))
    assert pd.concat(chunks)["item_id"].tolist() == list(range(len(cust)))
    owners = [set(c["customer_id"]) for c in chunks]
    assert all(not (a & b) for i, a in enumerate(owners) for b in owners[i + 1:])
    assert all(len(c) >= 150 - 40 for c in chunks[:-1])  # gathered, not one batch at a time
    assert max(len(c) for c in chunks) < 150 + 40 + frame["customer_id"].value_counts().max()
