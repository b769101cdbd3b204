"""The per-product top-K selection against a row-by-row reference: the group-maxima floor must
never lose a cell of the top K or its ties, and must return nothing below them."""
from __future__ import annotations

import numpy as np
import pytest

from hybridrec.neighbors.kernels import topk_candidates


def reference(ids_l: np.ndarray, ids_r: np.ndarray, sim: np.ndarray, k: int) -> set[tuple[int, int, float]]:
    out = set()
    for r, item in enumerate(ids_l.tolist()):
        cells = [(float(sim[r, c]), int(ids_r[c])) for c in range(sim.shape[1])
                 if ids_r[c] != item and np.isfinite(sim[r, c])]
        if not cells:
            continue
        values = sorted((v for v, _ in cells), reverse=True)
        kth = values[min(k, len(values)) - 1]
        out |= {(item, j, v) for v, j in cells if v >= kth}
    return out


@pytest.mark.parametrize("rows, cols, k, levels", [
    (7, 3000, 5, 0),       # wide rows: the group-maxima floor
    (9, 3000, 5, 4),       # ... with massive ties (4 distinct values)
    (5, 1003, 50, 0),      # n // 4k = 5 with a remainder the last group takes
    (6, 390, 50, 0),       # too short for groups: full partition
    (4, 40, 50, 0),        # fewer columns than k: every cell
])
def test_topk_candidates_equal_the_row_reference(rows: int, cols: int, k: int, levels: int) -> None:
    rng = np.random.default_rng(rows * cols + k)
    ids_r = np.arange(cols, dtype=np.int64) * 3 + 1
    ids_l = rng.choice(ids_r, size=rows, replace=False)  # every left item also sits in the columns (self cells)
    sim = (rng.integers(0, levels, size=(rows, cols)) / levels if levels else rng.normal(size=(rows, cols)))
    sim = sim.astype(np.float32)
    sim[0, rng.choice(cols, size=cols // 2, replace=False)] = -np.inf  # cells a distance threshold removed
    want = reference(ids_l, ids_r, sim, k)
    for owned in (False, True):
        li, rj, sv = topk_candidates(ids_l, ids_r, sim.copy() if owned else sim, None, k, None, owned=owned)
        got = set(zip(li.tolist(), rj.tolist(), sv.tolist()))
        assert len(got) == len(li)  # no cell twice
        assert got == want
