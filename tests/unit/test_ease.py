"""EASE's closed form against its definition: each item's column is the ridge regression of that
item on every other item (Steck 2019, eq. 3-8), solved here one column at a time."""
from __future__ import annotations

import numpy as np

from hybridrec.models.ease import ease_weights, sparsified


def ridge_reference(x: np.ndarray, lam: float) -> np.ndarray:
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [k for k in range(n) if k != j]
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
    return b


def test_closed_form_equals_the_column_by_column_ridge_regression() -> None:
    rng = np.random.default_rng(4)
    x = (rng.random((60, 12)) < 0.3).astype(float)
    for lam in (0.5, 5.0, 50.0):
        np.testing.assert_allclose(ease_weights(x.T @ x, lam), ridge_reference(x, lam), rtol=1e-8, atol=1e-10)


def test_sparsified_keeps_each_items_weights_of_largest_magnitude() -> None:
    rng = np.random.default_rng(5)
    b = rng.normal(size=(8, 8))
    np.fill_diagonal(b, 0.0)
    ids = np.arange(8) * 10
    nm = sparsified(ids, b, 3)
    m = nm.csr().toarray()
    for k in range(8):
        want = {j for j in np.argsort(-np.abs(b[k]))[:3] if j != k}
        assert set(np.nonzero(m[k])[0]) == want
        np.testing.assert_allclose(m[k, sorted(want)], b[k, sorted(want)])
