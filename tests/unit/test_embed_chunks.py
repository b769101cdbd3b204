"""The embed stage's commit chunks: consecutive by item id, every key in exactly one chunk."""
from __future__ import annotations

import numpy as np
import pytest

from hybridrec.stages.embed import chunked


@pytest.mark.parametrize("n, per_chunk", [(0, 5), (1, 5), (10, 5), (11, 5), (7, 0), (100, 1), (37, 2000)])
def test_chunks_cover_every_key_once_in_id_order(n: int, per_chunk: int) -> None:
    rng = np.random.default_rng(n * 31 + per_chunk)
    keys = [(int(i), f"h{i}") for i in rng.choice(10_000, size=n, replace=False)]
    chunks = chunked(keys, per_chunk)
    flat = [k for c in chunks for k in c]
    assert sorted(flat) == sorted(keys) and len(flat) == len(set(flat))  # each key exactly once
    assert all(0 < len(c) <= (per_chunk or n) for c in chunks)
    assert all(a[-1][0] < b[0][0] for a, b in zip(chunks, chunks[1:]))  # consecutive ranges of ids
    expected = 0 if n == 0 else (1 if per_chunk == 0 else -(-n // per_chunk))
    assert len(chunks) == expected
