"""top_k_columns against a full sort (the reference: Python's sorted on (-value, column))."""
from __future__ import annotations

import numpy as np
import pytest

from hybridrec.models.topk import top_k_columns


def reference(values: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for row in values.tolist():
        key = [(-(v if v == v else -np.inf), c) for c, v in enumerate(row)]  # NaN as -inf
        out.append([c for _, c in sorted(key)[:k]])
    return out


@pytest.mark.parametrize("k", [1, 3, 10, 40, 41, 100])
def test_matches_a_full_sort_under_heavy_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    values = rng.integers(0, 4, size=(60, 41)).astype(np.float64)  # few distinct values: ties everywhere
    values[rng.random(values.shape) < 0.2] = -np.inf
    values[5] = 2.0  # a whole row tied
    values[6] = -np.inf  # nothing finite
    got = top_k_columns(values, k)
    assert got.shape == (60, min(k, 41))
    assert got.tolist() == reference(values, k)


def test_continuous_values_nan_and_float32() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(size=(30, 200)).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan
    assert top_k_columns(values, 12).tolist() == reference(values.astype(np.float64), 12)


def test_empty_shapes() -> None:
    assert top_k_columns(np.zeros((0, 5)), 3).shape == (0, 3)
    assert top_k_columns(np.zeros((4, 0)), 3).shape == (4, 0)
    assert top_k_columns(np.ones((2, 5)), 0).shape == (2, 0)
