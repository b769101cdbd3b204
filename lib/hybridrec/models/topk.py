"""Per-row top-k of a dense score matrix, exact under ties, in linear time: the serving and
fitting paths that rank every (customer, item) cell of a chunk (the cold-start scorer, the dense
models, the ranker's candidate ranks, the poster neighbours of cold items) share this one kernel."""
from __future__ import annotations

import numpy as np


def top_k_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Per row of the 2-d ``values``, the column indices of its ``min(k, columns)`` largest values,
    best first: by value descending, then column ascending (the order of a full stable lexsort;
    NaN counts as -inf). Found with a partition and one cumulative count of the cells tied with
    the k-th value, so a chunk costs O(cells), not O(cells log cells), even when whole rows tie."""
    m, n = values.shape
    d = min(k, n)
    if m == 0 or d <= 0:
        return np.zeros((m, max(d, 0)), np.int64)
    v = np.where(np.isnan(values), -np.inf, values) if values.dtype.kind == "f" and np.isnan(values).any() \
        else values
    kth = np.partition(v, n - d, axis=1)[:, n - d]  # each row's d-th largest value
    greater = v > kth[:, None]
    tie = v == kth[:, None]
    need = d - greater.sum(axis=1)  # >= 1: fewer than d cells are above the d-th largest
    inside = greater | (tie & (np.cumsum(tie, axis=1, dtype=np.int32) <= need[:, None]))
    r, c = np.nonzero(inside)  # exactly d per row, rows in order
    order = np.lexsort((c, -v[r, c], r))
    return c[order].reshape(m, d).astype(np.int64, copy=False)
