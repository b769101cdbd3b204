"""The per-task kernels of the similarity search, in numpy: similarity and distance of two sets of
vectors, each row's top-K candidates (ties kept), and the final top-K of a chunk of items over every
block they belong to. Spark's tasks run these; the tests check them against a brute-force reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from hybridrec import schemas as S

SIDE = "side"  # a sub-block pair task's rows: L = sub-block a, R = sub-block b (a < b)


@dataclass(frozen=True)
class SimilarityParams:
    """measure: cosine | euclidean; max_distance: keep pairs closer than this (cosine distance =
    1 - cos; euclidean similarity = 1 / (1 + distance)); None keeps every pair."""

    measure: str = "cosine"
    top_k: int = 50
    block_size: int = 2000
    max_distance: float | None = None
    broadcast_max_mb: int = 1024  # vectors up to this size are broadcast (item-chunk tasks); larger: joins


# ---- the per-task kernel (pure numpy; also the building block of the reference) -----------
def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def pair_scores(left: np.ndarray, right: np.ndarray, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, distance) matrices between rows of ``left`` and ``right`` (float32)."""
    if measure == "cosine":
        sim = normalise(left) @ normalise(right).T
        return sim, 1.0 - sim
    sq = (left * left).sum(1)[:, None] + (right * right).sum(1)[None, :] - 2.0 * (left @ right.T)
    dist = np.sqrt(np.maximum(sq, 0.0))
    return 1.0 / (1.0 + dist), dist


def _self_cells(ids_l: np.ndarray, ids_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every cell pairing an item with itself (ids unique on each side)."""
    order = np.argsort(ids_r, kind="stable")
    pos = np.minimum(np.searchsorted(ids_r[order], ids_l), max(len(ids_r) - 1, 0))
    hit = np.flatnonzero(ids_r[order][pos] == ids_l) if len(ids_r) else np.zeros(0, np.int64)
    return hit, order[pos[hit]]


def _row_floor(masked: np.ndarray, k: int) -> np.ndarray:
    """Per row, a value at most its k-th largest: the k-th largest of the maxima of disjoint column
    groups (k groups each hold a distinct cell >= it), so that one pass over the matrix replaces a
    selection over every cell; a full ``np.partition`` where rows are too short for groups."""
    n = masked.shape[1]
    width = n // (4 * k)  # >= 4k groups: few cells besides the top k clear the floor
    if width < 2:
        return np.partition(masked, n - k, axis=1)[:, n - k]
    groups = n // width  # the last group also takes the n % width columns left over
    maxima = np.maximum.reduceat(masked, np.arange(0, groups * width, width), axis=1)
    return np.partition(maxima, groups - k, axis=1)[:, groups - k]


def _at_least_kth(rows: np.ndarray, vals: np.ndarray, k: int) -> np.ndarray:
    """Mask of the cells at or above their row's k-th largest value (ties kept); the cells sorted
    by row, values descending within a row."""
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    counts = np.diff(np.r_[starts, len(rows)])
    kth = np.where(counts >= k, vals[np.minimum(starts + k - 1, len(vals) - 1)], -np.inf)
    return vals >= np.repeat(kth, counts)


def topk_candidates(ids_l: np.ndarray, ids_r: np.ndarray, sim: np.ndarray, dist: np.ndarray | None, k: int,
                    max_distance: float | None, owned: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per left row: every right column that can be in the row's top-k (ties at the k-th value
    included, self cells excluded, ``dist < max_distance`` when set). Returns (item ids, neighbour
    ids, similarity). A few passes over the matrix: it is as large as the matrix product.
    ``owned``: ``sim`` is the caller's scratch, masked in place instead of copied."""
    masked = sim if owned else np.array(sim, copy=True)
    masked[_self_cells(ids_l, ids_r)] = -np.inf
    if max_distance is not None:
        assert dist is not None
        np.putmask(masked, ~(dist < max_distance), -np.inf)
    floor = np.full(len(masked), -np.finfo(masked.dtype).max, masked.dtype)  # -inf cells are never candidates
    n = masked.shape[1]
    if n > k:
        floor = np.maximum(_row_floor(masked, k), floor)
    rows, cols = np.divmod(np.flatnonzero(masked >= floor[:, None]), n)  # 3x faster than a 2-d nonzero
    vals = masked[rows, cols]
    if n > k and len(rows):  # the floor may sit below the k-th largest: keep the top k and its ties
        order = np.lexsort((-vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        keep = _at_least_kth(rows, vals, k)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return ids_l[rows], ids_r[cols], vals.astype(np.float64)


def pair_task(pdf: pd.DataFrame, params: SimilarityParams) -> pd.DataFrame:
    """All candidates of one sub-block pair (both directions when the sub-blocks differ)."""
    block = str(pdf[S.BLOCK].iloc[0])
    left = pdf[pdf[SIDE] == "L"]
    right = pdf[pdf[SIDE] == "R"]
    same = right.empty
    if same:
        right = left
    ids_l = left[S.ITEM_ID].to_numpy(np.int64)
    ids_r = right[S.ITEM_ID].to_numpy(np.int64)
    vl = np.stack(left[S.VECTOR].to_numpy()).astype(np.float32)
    vr = vl if same else np.stack(right[S.VECTOR].to_numpy()).astype(np.float32)
    sim, dist = pair_scores(vl, vr, params.measure)
    parts = [topk_candidates(ids_l, ids_r, sim, dist, params.top_k, params.max_distance)]
    if not same:
        parts.append(topk_candidates(ids_r, ids_l, sim.T, dist.T, params.top_k, params.max_distance))
    items = np.concatenate([p[0] for p in parts])
    return pd.DataFrame({S.ITEM_ID: items, S.NEIGHBOR_ID: np.concatenate([p[1] for p in parts]),
                         S.SIMILARITY: np.concatenate([p[2] for p in parts]), S.BLOCK: block})


# ---- the broadcast path's kernel: every task owns a chunk of items and searches all their blocks --
@dataclass(frozen=True)
class Catalogue:
    """Every vector (rows sorted by item id; unit-norm for cosine) and the block memberships, as
    broadcast to each executor once."""

    ids: np.ndarray
    matrix: np.ndarray  # float32 (items, dims)
    block_rows: dict[str, np.ndarray]  # block -> sorted row indices
    row_blocks: list[tuple[str, ...]]  # row -> its blocks, sorted
    row_masks: np.ndarray | None = None  # row -> bit n set for the n-th block by name (None past 62 blocks)

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, member_ids: np.ndarray, member_blocks: np.ndarray,
              measure: str) -> "Catalogue":
        order = np.argsort(ids, kind="stable")
        ids, matrix = ids[order], matrix[order].astype(np.float32)
        if measure == "cosine":
            matrix = normalise(matrix).astype(np.float32)
        rows = np.searchsorted(ids, member_ids)
        ok = (rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == member_ids)
        blocks: dict[str, list[int]] = {}
        per_row: list[set[str]] = [set() for _ in range(len(ids))]
        for r, b in zip(rows[ok].tolist(), member_blocks[ok].tolist()):
            if b not in per_row[r]:
                per_row[r].add(b)
                blocks.setdefault(b, []).append(r)
        names = sorted(blocks)
        masks = None
        if len(names) <= 62:
            bit = {b: 1 << n for n, b in enumerate(names)}
            masks = np.array([sum(bit[b] for b in bs) for bs in per_row], dtype=np.int64)
        return cls(ids, matrix, {b: np.array(sorted(rs), dtype=np.int64) for b, rs in blocks.items()},
                   [tuple(sorted(x)) for x in per_row], masks)

    def member_rows(self) -> np.ndarray:
        return np.array([r for r, bs in enumerate(self.row_blocks) if bs], dtype=np.int64)

    def shared(self, i: np.ndarray, j: np.ndarray) -> list[list[str]]:
        """The sorted blocks rows i and j share, per pair (bitmasks: one set operation per distinct combination)."""
        names = sorted(self.block_rows)
        if self.row_masks is None:
            return [sorted(set(self.row_blocks[a]) & set(self.row_blocks[c])) for a, c in zip(i.tolist(), j.tolist())]
        both = self.row_masks[i] & self.row_masks[j]
        uniq, inv = np.unique(both, return_inverse=True)
        lists = [[b for n, b in enumerate(names) if int(u) >> n & 1] for u in uniq.tolist()]
        return [lists[x] for x in inv.tolist()]


def block_products(left: np.ndarray, block: np.ndarray, block_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (left rows, right rows) products that cover ``left`` x ``block``, at most block_size^2
    scores each: slices of ``left`` against the whole block while a row of it fits (so each row's
    top-K over the block comes from one product), else block_size x block_size tiles."""
    cells = block_size * block_size
    if len(block) <= cells:
        step = max(1, cells // max(len(block), 1))
        for lo in range(0, len(left), step):
            yield left[lo:lo + step], block
        return
    for lo in range(0, len(left), block_size):
        for ro in range(0, len(block), block_size):
            yield left[lo:lo + block_size], block[ro:ro + block_size]


def _prune(i: np.ndarray, j: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (i, j) pairs (a pair met in two blocks counts once), then per i every j whose
    similarity reaches i's k-th largest (ties kept); returned sorted by (i, similarity desc, j)."""
    if len(i) == 0:
        return i, j, s
    _, first = np.unique(i * (int(j.max()) + 1) + j, return_index=True)
    i, j, s = i[first], j[first], s[first]
    order = np.lexsort((j, -s, i))
    i, j, s = i[order], j[order], s[order]
    keep = _at_least_kth(i, s, k)
    return i[keep], j[keep], s[keep]


def chunk_neighbors(rows: np.ndarray, cat: Catalogue, params: SimilarityParams) -> pd.DataFrame:
    """Final top-K of the items at ``rows`` over every block they belong to: (item_id, neighbor_id,
    similarity, shared_genres, rank), each pair once with the blocks both items share."""
    parts_i: list[np.ndarray] = []
    parts_j: list[np.ndarray] = []
    parts_s: list[np.ndarray] = []
    held = 0
    blocks = sorted({b for r in rows.tolist() for b in cat.row_blocks[r]})
    for b in blocks:
        members = cat.block_rows[b]
        left = np.intersect1d(rows, members)
        whole: np.ndarray | None = None  # the block's vectors, gathered once for its slices
        for lrows, rrows in block_products(left, members, params.block_size):
            if rrows is members:
                whole = cat.matrix[members] if whole is None else whole
                right = whole
            else:
                right = cat.matrix[rrows]
            if params.measure == "cosine":
                sim = cat.matrix[lrows] @ right.T
                dist = 1.0 - sim if params.max_distance is not None else None
            else:
                sim, dist = pair_scores(cat.matrix[lrows], right, params.measure)
            li, rj, sv = topk_candidates(lrows, rrows, sim, dist, params.top_k, params.max_distance, owned=True)
            parts_i.append(li)
            parts_j.append(rj)
            parts_s.append(sv)
            held += len(li)
            if held > 8 * params.top_k * max(len(rows), 1):  # bound the candidates a task holds
                pi, pj, ps = _prune(np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_s),
                                    params.top_k)
                parts_i, parts_j, parts_s, held = [pi], [pj], [ps], len(pi)
    if not parts_i:
        return pd.DataFrame({S.ITEM_ID: [], S.NEIGHBOR_ID: [], S.SIMILARITY: [], S.SHARED_GENRES: [], S.RANK: []})
    i, j, s = _prune(np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_s), params.top_k)
    ids = cat.ids
    # sorted by (i, similarity desc, row j); rows follow item id order, so ties break by neighbour id
    rank = np.arange(len(i)) - np.searchsorted(i, i, side="left") + 1
    keep = rank <= params.top_k
    i, j, s, rank = i[keep], j[keep], s[keep], rank[keep]
    return pd.DataFrame({S.ITEM_ID: ids[i], S.NEIGHBOR_ID: ids[j], S.SIMILARITY: s.astype(np.float64),
                         S.SHARED_GENRES: cat.shared(i, j), S.RANK: rank.astype(np.int32)})


