"""The rating cosine's broadcast-path kernel (Gram rows by sparse products, top-K per row) against
the pure-Python reference, over chunk sizes, task ranges, ties and the co-rater minimum."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from hybridrec.neighbors.ratingsim import RatingMatrix, RatingSimParams, gram_neighbors
from hybridrec.testing.references import reference_rating_neighbors


def _rows(seed: int, customers: int = 60, items: int = 40) -> list[tuple[int, int, float, float]]:
    rng = random.Random(seed)
    rows = []
    for c in range(1, customers + 1):
        for i in rng.sample(range(100, 100 + items), rng.randint(1, 10)):
            rows.append((c * 7, i, float(rng.randint(1, 5)), float(rng.randint(0, 1000))))  # whole stars: ties
    return rows


def _run(rows: list[tuple[int, int, float, float]], params: RatingSimParams, tasks: int) -> pd.DataFrame:
    a = np.array(rows)
    m = RatingMatrix.build(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2])
    ranges = m.ranges(tasks)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(m.item_ids)
    assert all(x[1] == y[0] for x, y in zip(ranges, ranges[1:]))  # consecutive, covering every item
    return pd.concat([gram_neighbors(m, lo, hi, params) for lo, hi in ranges], ignore_index=True)


@pytest.mark.parametrize("min_support,max_cells,tasks", [(1, 1 << 22, 1), (1, 50, 3), (2, 120, 4), (3, 40, 2)])
def test_gram_rows_equal_the_reference(min_support: int, max_cells: int, tasks: int) -> None:
    rows = _rows(5)
    params = RatingSimParams(top_k=6, min_support=min_support, max_history=0, max_cells=max_cells)
    got = _run(rows, params, tasks)
    want = reference_rating_neighbors(rows, params)
    assert set(got["item_id"]) == set(want)
    assert not got.duplicated(["item_id", "neighbor_id"]).any()
    for item, lst in want.items():
        mine = got[got["item_id"] == item].sort_values("rank")
        assert mine["neighbor_id"].tolist() == [j for j, _, _ in lst], item
        np.testing.assert_allclose(mine["similarity"], [s for _, s, _ in lst], rtol=1e-12)
        assert mine["support"].tolist() == [n for _, _, n in lst]
        assert mine["rank"].tolist() == list(range(1, len(lst) + 1))


def test_work_ranges_balance_the_gram_rows() -> None:
    """One very popular item costs as much as many thin ones: the ranges split by work, not count."""
    rows = [(c, 1, 4.0, 0.0) for c in range(200)] + [(c, 2 + c % 50, 3.0, 0.0) for c in range(200)]
    a = np.array(rows)
    m = RatingMatrix.build(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2])
    work = m.row_work()
    assert work[0] == 400 and work[1] == 4 * 2  # item 1: 200 raters x 2 ratings; item 2: 4 raters x 2
    ranges = m.ranges(2)
    assert ranges == [(0, 1), (1, 51)]


def test_without_support_the_neighbours_are_the_same_and_the_support_is_null() -> None:
    rows = _rows(8)
    with_support = _run(rows, RatingSimParams(top_k=4, max_history=0, max_cells=90), 3)
    without = _run(rows, RatingSimParams(top_k=4, max_history=0, max_cells=90, support=False), 3)
    pd.testing.assert_frame_equal(with_support.drop(columns="support"), without.drop(columns="support"))
    assert without["support"].isna().all() and (with_support["support"] >= 1).all()
