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

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from hybridrec import schemas as S
from hybridrec.neighbors.kernels import SIDE, Catalogue, SimilarityParams, chunk_neighbors, pair_task
from hybridrec.runtime.batches import map_broadcast_units
from hybridrec.runtime.collect import collect_vectors
from hybridrec.runtime.faults import maybe_fail

SUB = "sub"
PAIR = "pair_idx"
KEY = "_part_key"
CANDIDATE_SCHEMA = StructType([
    StructField(S.ITEM_ID, LongType(), False), StructField(S.NEIGHBOR_ID, LongType(), False),
    StructField(S.SIMILARITY, DoubleType(), False), StructField(S.BLOCK, StringType(), False),
])


# ---- Spark plumbing ------------------------------------------------------------------------
def assign_sub_blocks(vectors: DataFrame, memberships: DataFrame, block_size: int) -> DataFrame:
    """(item_id, vector) x (item_id, block) -> (item_id, block, sub, vector); sub-blocks hold at
    most ``block_size`` items, by item id order."""
    w = Window.partitionBy(S.BLOCK).orderBy(S.ITEM_ID)
    return memberships.join(vectors, S.ITEM_ID).withColumn(
        SUB, F.floor((F.row_number().over(w) - 1) / block_size).cast("int"))


def block_pairs(spark: SparkSession, members: DataFrame) -> DataFrame:
    """Every (a <= b) pair of sub-blocks within each block, numbered 0..P-1, with a partition key
    that Spark's hash partitioning maps to partition ``pair_idx`` exactly."""
    subs = members.groupBy(S.BLOCK).agg(F.max(SUB).alias("n")).collect()  # one small row per block
    pairs = [(r[S.BLOCK], a, b) for r in sorted(subs, key=lambda r: r[S.BLOCK])
             for a in range(r["n"] + 1) for b in range(a, r["n"] + 1)]
    keys = partition_keys(spark, len(pairs))
    rows = [(blk, a, b, i, keys[i]) for i, (blk, a, b) in enumerate(pairs)]
    schema = StructType([StructField(S.BLOCK, StringType()), StructField("a", IntegerType()),
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
    cols = [KEY, PAIR, S.BLOCK, SIDE, S.ITEM_ID, S.VECTOR]
    left = members.join(F.broadcast(pairs), (members[S.BLOCK] == pairs[S.BLOCK]) & (members[SUB] == pairs["a"])) \
        .select(pairs[KEY], pairs[PAIR], members[S.BLOCK], F.lit("L").alias(SIDE), members[S.ITEM_ID], members[S.VECTOR])
    right = members.join(F.broadcast(pairs.filter("a < b")),
                         (members[S.BLOCK] == pairs[S.BLOCK]) & (members[SUB] == pairs["b"])) \
        .select(pairs[KEY], pairs[PAIR], members[S.BLOCK], F.lit("R").alias(SIDE), members[S.ITEM_ID], members[S.VECTOR])
    return left.unionByName(right).select(*cols).repartition(max(n_pairs, 1), KEY), n_pairs


def candidates(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
               params: SimilarityParams) -> tuple[DataFrame, int]:
    """Per-block candidate neighbours (item_id, neighbor_id, similarity, block), and the number
    of sub-block pair tasks."""
    tasks, n_pairs = sub_block_tasks(spark, vectors, memberships, params.block_size)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
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
        F.max(S.SIMILARITY).alias(S.SIMILARITY), F.sort_array(F.collect_set(S.BLOCK)).alias(S.SHARED_GENRES))
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

    def work(chunk: np.ndarray, catalogue: Catalogue) -> pd.DataFrame:
        return chunk_neighbors(chunk, catalogue, params)

    return map_broadcast_units(spark, cat, chunks, work, NEIGHBOR_SCHEMA, partitions=n,
                               fault_stage="similarity"), len(chunks)


def collect_catalogue(vectors: DataFrame, memberships: DataFrame, measure: str) -> Catalogue:
    """The vectors and block memberships on the driver, ready to broadcast."""
    ids, matrix = collect_vectors(vectors)
    m = memberships.select(S.ITEM_ID, S.BLOCK).toArrow()
    return Catalogue.build(ids, matrix, m.column(S.ITEM_ID).to_numpy().astype(np.int64),
                           np.asarray(m.column(S.BLOCK).to_pylist(), dtype=object), measure)


def fits_broadcast(vectors: DataFrame, params: SimilarityParams) -> bool:
    """Whether the vectors (items x dims float32) are within ``broadcast_max_mb``."""
    if params.broadcast_max_mb <= 0:
        return False
    n, dims = vectors.agg(F.count(F.lit(1)), F.max(F.size(S.VECTOR))).first() or (0, 0)
    return int(n) * int(dims or 0) * 4 <= params.broadcast_max_mb * 1024 * 1024


