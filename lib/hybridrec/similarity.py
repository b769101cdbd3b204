"""Item-item similarity inside category blocks (paper §3.2, ``nearest_neighbors``), exact, blocked.

An item's neighbours are searched only within the categories it belongs to; an item in several
categories sits in several blocks. Skewed blocks (drama is ~40% of movies) are cut into
sub-blocks of at most ``block_size`` items, and every pair of sub-blocks of a block is one task
computing one matrix product — no task holds more than ``block_size²`` scores. Tasks are
placed on partitions explicitly (one pair per partition: grouping a handful of block ids by hash
would leave partitions empty or doubled). Each task keeps, per item, the candidates that can
reach the item's global top-K; candidates met in several blocks are merged once, with their
shared categories, and cut to the top-K by (similarity desc, neighbour id asc).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from hybridrec import schemas as S

if TYPE_CHECKING:
    from hybridrec.config import Config

BLOCK = "block"
SUB = "sub"
PAIR = "pair_idx"
SIDE = "side"
KEY = "_part_key"
CANDIDATE_SCHEMA = StructType([
    StructField(S.ITEM_ID, LongType(), False), StructField(S.NEIGHBOR_ID, LongType(), False),
    StructField(S.SIMILARITY, DoubleType(), False), StructField(BLOCK, StringType(), False),
])


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
    block = str(pdf[BLOCK].iloc[0])
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
                         S.SIMILARITY: np.concatenate([p[2] for p in parts]), BLOCK: block})


# ---- Spark plumbing ------------------------------------------------------------------------
def assign_sub_blocks(vectors: DataFrame, memberships: DataFrame, block_size: int) -> DataFrame:
    """(item_id, vector) x (item_id, block) -> (item_id, block, sub, vector); sub-blocks hold at
    most ``block_size`` items, by item id order."""
    w = Window.partitionBy(BLOCK).orderBy(S.ITEM_ID)
    return memberships.join(vectors, S.ITEM_ID).withColumn(
        SUB, F.floor((F.row_number().over(w) - 1) / block_size).cast("int"))


def block_pairs(spark: SparkSession, members: DataFrame) -> DataFrame:
    """Every (a <= b) pair of sub-blocks within each block, numbered 0..P-1, with a partition key
    that Spark's hash partitioning maps to partition ``pair_idx`` exactly."""
    subs = members.groupBy(BLOCK).agg(F.max(SUB).alias("n")).collect()  # one small row per block
    pairs = [(r[BLOCK], a, b) for r in sorted(subs, key=lambda r: r[BLOCK])
             for a in range(r["n"] + 1) for b in range(a, r["n"] + 1)]
    keys = partition_keys(spark, len(pairs))
    rows = [(blk, a, b, i, keys[i]) for i, (blk, a, b) in enumerate(pairs)]
    schema = StructType([StructField(BLOCK, StringType()), StructField("a", IntegerType()),
                         StructField("b", IntegerType()), StructField(PAIR, IntegerType()),
                         StructField(KEY, LongType())])
    return spark.createDataFrame(rows, schema)


def partition_keys(spark: SparkSession, n: int) -> list[int]:
    """For partition i in 0..n-1, a long whose Spark hash ``pmod(hash(key), n)`` is i."""
    if n == 0:
        return []
    found: dict[int, int] = {}
    span = 0
    while len(found) < n:
        lo, span = span, span + max(64 * n, 1024)
        rows = spark.range(lo, span).select(F.col("id"), F.pmod(F.hash("id"), F.lit(n)).alias("p")) \
            .groupBy("p").agg(F.min("id").alias("id")).collect()
        for r in rows:
            found.setdefault(int(r["p"]), int(r["id"]))
    return [found[i] for i in range(n)]


def sub_block_tasks(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
                    block_size: int) -> tuple[DataFrame, int]:
    """The rows of every sub-block pair task, placed so that partition i holds exactly pair i.

    Returns (tasks, number of pairs). Rows: partition key, pair_idx, block, side (L = sub-block
    a, R = sub-block b when a < b), item_id, vector.
    """
    members = assign_sub_blocks(vectors, memberships, block_size)
    pairs = block_pairs(spark, members)
    n_pairs = pairs.count()
    cols = [KEY, PAIR, BLOCK, SIDE, S.ITEM_ID, S.VECTOR]
    left = members.join(F.broadcast(pairs), (members[BLOCK] == pairs[BLOCK]) & (members[SUB] == pairs["a"])) \
        .select(pairs[KEY], pairs[PAIR], members[BLOCK], F.lit("L").alias(SIDE), members[S.ITEM_ID], members[S.VECTOR])
    right = members.join(F.broadcast(pairs.filter("a < b")),
                         (members[BLOCK] == pairs[BLOCK]) & (members[SUB] == pairs["b"])) \
        .select(pairs[KEY], pairs[PAIR], members[BLOCK], F.lit("R").alias(SIDE), members[S.ITEM_ID], members[S.VECTOR])
    return left.unionByName(right).select(*cols).repartition(max(n_pairs, 1), KEY), n_pairs


def candidates(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
               params: SimilarityParams) -> tuple[DataFrame, int]:
    """Per-block candidate neighbours (item_id, neighbor_id, similarity, block), and the number
    of sub-block pair tasks."""
    tasks, n_pairs = sub_block_tasks(spark, vectors, memberships, params.block_size)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hybridrec.faults import maybe_fail

        maybe_fail("similarity")
        frames = list(batches)
        if not frames:
            return
        pdf = pd.concat(frames, ignore_index=True)
        for _, group in pdf.groupby(PAIR, sort=True):
            yield pair_task(group, params)

    return tasks.mapInPandas(run, CANDIDATE_SCHEMA), n_pairs  # type: ignore[arg-type]


def top_neighbors(cands: DataFrame, top_k: int) -> DataFrame:
    """Merge candidates met in several blocks (once, with their shared blocks) and keep each
    item's top-K by (similarity desc, neighbour id asc); rank starts at 1."""
    merged = cands.groupBy(S.ITEM_ID, S.NEIGHBOR_ID).agg(
        F.max(S.SIMILARITY).alias(S.SIMILARITY), F.sort_array(F.collect_set(BLOCK)).alias(S.SHARED_GENRES))
    return rank_neighbors(merged, top_k)


def rank_neighbors(pairs: DataFrame, top_k: int) -> DataFrame:
    """Each item's top-K pairs by (similarity desc, neighbour id asc), with ``rank`` from 1."""
    w = Window.partitionBy(S.ITEM_ID).orderBy(F.desc(S.SIMILARITY), F.asc(S.NEIGHBOR_ID))
    return pairs.withColumn(S.RANK, F.row_number().over(w)).filter(F.col(S.RANK) <= top_k)


def item_neighbors(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
                   params: SimilarityParams) -> DataFrame:
    """(item_id, vector) + (item_id, block) -> (item_id, neighbor_id, similarity, shared_genres, rank)."""
    return item_neighbors_with_tasks(spark, vectors, memberships, params)[0]


def item_neighbors_with_tasks(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
                              params: SimilarityParams) -> tuple[DataFrame, int]:
    """The neighbours and the number of work units: item chunks on the broadcast path (when the
    vectors fit ``broadcast_max_mb``), else sub-block pairs on the join path."""
    if fits_broadcast(vectors, params):  # memberships of items without a vector drop out in Catalogue.build
        return broadcast_neighbors(spark, collect_catalogue(vectors, memberships, params.measure), params)
    cands, n_pairs = candidates(spark, vectors, memberships, params)
    return top_neighbors(cands, params.top_k), n_pairs


# ---- broadcast path: every task owns a chunk of items and searches all of their blocks --------
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


NEIGHBOR_SCHEMA = (f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, "
                   f"{S.SHARED_GENRES} array<string>, {S.RANK} int")


CHUNK_TASKS_PER_CORE = 2  # a few tasks per core: balance, and a retry redoes little


def broadcast_neighbors(spark: SparkSession, cat: Catalogue, params: SimilarityParams) -> tuple[DataFrame, int]:
    """Chunks of ``block_size`` items (by item id), consecutive ones grouped into at most
    ``CHUNK_TASKS_PER_CORE`` tasks per core (a Python task costs about half a second before it does
    any work on a small machine), the catalogue broadcast once per executor; tasks emit final rows,
    so nothing is shuffled. Returns the neighbours and the number of chunks."""
    rows = cat.member_rows()
    chunks = [rows[lo:lo + params.block_size] for lo in range(0, len(rows), params.block_size)]
    n = max(min(len(chunks), CHUNK_TASKS_PER_CORE * spark.sparkContext.defaultParallelism), 1)
    b_cat = spark.sparkContext.broadcast(cat)
    b_chunks = spark.sparkContext.broadcast(chunks)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from hybridrec.faults import maybe_fail

        maybe_fail("similarity")
        for pdf in batches:
            for t in pdf["id"].tolist():
                yield chunk_neighbors(b_chunks.value[int(t)], b_cat.value, params)

    tasks = spark.range(0, len(chunks), 1, numPartitions=n)  # range splits evenly: consecutive chunks
    return tasks.mapInPandas(run, NEIGHBOR_SCHEMA), len(chunks)  # type: ignore[arg-type]


def collect_vectors(vectors: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, float32 matrix) of (item_id, vector) on the driver, through Arrow: the vector
    column's flat values become the matrix without a Python object per row."""
    table = vectors.select(S.ITEM_ID, F.col(S.VECTOR).cast("array<float>").alias(S.VECTOR)).toArrow()
    ids = table.column(S.ITEM_ID).to_numpy().astype(np.int64)
    lists = table.column(S.VECTOR).combine_chunks()
    lengths = np.diff(np.asarray(lists.offsets)) if len(ids) else np.zeros(0, np.int64)
    if len(ids) and (lengths != lengths[0]).any():
        from hybridrec.errors import UserError

        raise UserError("similarity: item vectors have different lengths; re-embed with one extractor")
    dims = int(lengths[0]) if len(ids) else 1
    matrix = np.asarray(lists.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(ids), dims)
    return ids, matrix


def collect_catalogue(vectors: DataFrame, memberships: DataFrame, measure: str) -> Catalogue:
    """The vectors and block memberships on the driver, ready to broadcast."""
    ids, matrix = collect_vectors(vectors)
    m = memberships.select(S.ITEM_ID, BLOCK).toArrow()
    return Catalogue.build(ids, matrix, m.column(S.ITEM_ID).to_numpy().astype(np.int64),
                           np.asarray(m.column(BLOCK).to_pylist(), dtype=object), measure)


def fits_broadcast(vectors: DataFrame, params: SimilarityParams) -> bool:
    """Whether the vectors (items x dims float32) are within ``broadcast_max_mb``."""
    if params.broadcast_max_mb <= 0:
        return False
    n, dims = vectors.agg(F.count(F.lit(1)), F.max(F.size(S.VECTOR))).first() or (0, 0)
    return int(n) * int(dims or 0) * 4 <= params.broadcast_max_mb * 1024 * 1024


# ---- the numpy reference (used by tests and the benchmark) -----------------------------------
def reference_neighbors(vectors: dict[int, np.ndarray], memberships: dict[int, list[str]],
                        params: SimilarityParams) -> dict[int, list[tuple[int, float, list[str]]]]:
    """Brute force over whole blocks in one process: item -> [(neighbour, similarity, shared blocks)]."""
    blocks: dict[str, list[int]] = {}
    for item, bs in memberships.items():
        if item in vectors:
            for b in bs:
                blocks.setdefault(b, []).append(item)
    best: dict[int, dict[int, tuple[float, set[str]]]] = {}
    for b, items in blocks.items():
        ids = np.array(sorted(items), dtype=np.int64)
        mat = np.stack([vectors[i] for i in ids]).astype(np.float32)
        sim, dist = pair_scores(mat, mat, params.measure)
        for r, item in enumerate(ids):
            for c, other in enumerate(ids):
                if other == item or (params.max_distance is not None and not dist[r, c] < params.max_distance):
                    continue
                s, shared = best.setdefault(int(item), {}).get(int(other), (float(sim[r, c]), set()))
                shared.add(b)
                best[int(item)][int(other)] = (s, shared)
    out = {}
    for item, cands in best.items():
        ranked = sorted(cands.items(), key=lambda kv: (-kv[1][0], kv[0]))[: params.top_k]
        out[item] = [(o, s, sorted(sh)) for o, (s, sh) in ranked]
    return out


# ---- the stage ------------------------------------------------------------------------------
@dataclass
class SimilarityReport:
    run_id: str
    items: int = 0
    blocks: int = 0
    tasks: int = 0  # units of work: item chunks (broadcast path) or sub-block pairs (join path)
    rows: int = 0
    items_with_neighbors: int = 0
    source: str = "image"  # image | blend | rating

    def lines(self) -> list[str]:
        if self.source == "rating":
            return [f"rating neighbours only (similarity.rating_weight 1): {self.rows} neighbour rows for "
                    f"{self.items_with_neighbors} of {self.items} rated items"]
        return [f"{self.items} items in {self.blocks} category blocks, {self.tasks} similarity work units; "
                f"{self.rows} neighbour rows for {self.items_with_neighbors} items"
                + ("; blended with rating cosine" if self.source == "blend" else "")]


def _categories_table(spark: SparkSession, cfg: "Config") -> str:
    """The classifier's ``item_categories`` (one line naming the fix when the train stage has not run)."""
    from hybridrec.errors import UserError

    table = cfg.table(S.ITEM_CATEGORIES)
    if not spark.catalog.tableExists(table.replace("`", "")):
        raise UserError("similarity.blocks=predicted and similarity.vectors=features need the item_categories table: "
                        "run the train stage first, or set similarity.blocks=labelled and similarity.vectors=embeddings")
    return table


def embedding_vectors(spark: SparkSession, cfg: "Config") -> DataFrame:
    """(item_id, vector): the poster embeddings of the configured extractor."""
    from hybridrec.backbones import ModelSpec
    from hybridrec.tables import ensure_table

    emb = ensure_table(spark, cfg, S.ITEM_EMBEDDINGS)
    key = ModelSpec.from_conf(cfg.embed).key
    return spark.table(emb).filter(F.col(S.MODEL_KEY) == key).select(S.ITEM_ID, S.VECTOR)


def stage_vectors(spark: SparkSession, cfg: "Config") -> DataFrame:
    """(item_id, vector): the configured extractor's poster embeddings, or the classifier's features."""
    if cfg.similarity.vectors == "features":  # the classifier's 1024-d penultimate activations (the paper's feature maps)
        return spark.table(_categories_table(spark, cfg)).select(S.ITEM_ID, F.col(S.FEATURES).alias(S.VECTOR))
    return embedding_vectors(spark, cfg)


ALL_ITEMS_BLOCK = "(all)"


def stage_memberships(spark: SparkSession, cfg: "Config", blocks: str) -> DataFrame:
    """(item_id, block): labelled (TMDB genres), predicted (the classifier's) or none (one block of every item)."""
    from hybridrec.tables import ensure_table

    if blocks == "labelled":
        return spark.table(ensure_table(spark, cfg, S.ITEMS)).select(S.ITEM_ID, F.explode(S.GENRES).alias(BLOCK))
    if blocks == "predicted":
        return spark.table(_categories_table(spark, cfg)).select(
            S.ITEM_ID, F.explode(S.PREDICTED_GENRES).alias(BLOCK))
    return stage_vectors(spark, cfg).select(S.ITEM_ID, F.lit(ALL_ITEMS_BLOCK).alias(BLOCK))


def image_neighbors(spark: SparkSession, cfg: "Config", report: SimilarityReport, blocks: str | None = None
                    ) -> DataFrame:
    """Poster neighbours of every item within its blocks (conf ``similarity.blocks`` unless given):
    (item_id, neighbor_id, similarity, shared_genres, rank); fills the report's counts."""
    sc = cfg.similarity
    params = SimilarityParams(sc.measure, sc.top_k, sc.block_size, sc.max_distance, sc.broadcast_max_mb)
    vectors = stage_vectors(spark, cfg)
    memberships = stage_memberships(spark, cfg, blocks or sc.blocks)
    members = memberships.join(vectors.select(S.ITEM_ID), S.ITEM_ID, "left_semi").localCheckpoint(eager=True)
    report.items = members.select(S.ITEM_ID).distinct().count()
    report.blocks = members.select(BLOCK).distinct().count()
    neighbors, report.tasks = item_neighbors_with_tasks(spark, vectors, members, params)
    return neighbors


def run_similarity(spark: SparkSession, cfg: "Config") -> SimilarityReport:
    """Neighbours of every embedded item within its categories, blended with rating similarity when
    ``similarity.rating_weight`` > 0 -> ``item_neighbors`` (this run's rows replaced in one commit)."""
    from hybridrec.ratingsim import blend_neighbors, configured_rating_neighbors, hybrid_neighbors
    from hybridrec.tables import ensure_table, replace_rows, sql_str

    sc = cfg.similarity
    report = SimilarityReport(run_id=cfg.run_id)
    out = ensure_table(spark, cfg, S.ITEM_NEIGHBORS)
    if sc.rating_weight >= 1:  # the hybrid's neighbours: no poster search needed
        ratings = spark.table(ensure_table(spark, cfg, S.RATINGS))
        neighbors = hybrid_neighbors(cfg, ratings)
        report.source = "rating"
        report.items = ratings.select(S.ITEM_ID).distinct().count()
    else:
        neighbors = image_neighbors(spark, cfg, report)
    if 0 < sc.rating_weight < 1:
        ratings = spark.table(ensure_table(spark, cfg, S.RATINGS))
        rating = configured_rating_neighbors(cfg, ratings)
        neighbors = blend_neighbors(neighbors, rating, sc.rating_weight, sc.rating_shrinkage, sc.top_k)
        report.source = "blend"
    neighbors = neighbors.select(
        S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, F.col(S.RANK).cast("int").alias(S.RANK), S.SHARED_GENRES,
        F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    report.rows = neighbors.count()
    report.items_with_neighbors = neighbors.select(S.ITEM_ID).distinct().count()
    replace_rows(spark, out, neighbors, f"{S.RUN_ID} = {sql_str(cfg.run_id)}",
                 compare_cols=[S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.RANK, S.SHARED_GENRES])
    neighbors.unpersist()
    return report
