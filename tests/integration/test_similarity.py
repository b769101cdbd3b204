"""Parity of the blocked Spark similarity with a numpy brute force over the same blocks."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, LongType, StringType, StructField, StructType

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.neighbors.blocked import PAIR, item_neighbors, partition_keys, sub_block_tasks
from hybridrec.neighbors.kernels import SimilarityParams
from hybridrec.schemas import BLOCK
from hybridrec.testing.references import reference_neighbors

VEC_SCHEMA = StructType([StructField(S.ITEM_ID, LongType()), StructField(S.VECTOR, ArrayType(FloatType()))])
MEM_SCHEMA = StructType([StructField(S.ITEM_ID, LongType()), StructField(BLOCK, StringType())])


def skewed_catalogue(seed: int, n: int = 70, dims: int = 6, integer: bool = False
                     ) -> tuple[dict[int, np.ndarray], dict[int, list[str]]]:
    """A big 'Drama' block, smaller ones, items in 1-3 blocks, one item with no block overlap."""
    rng = np.random.default_rng(seed)
    vectors, members = {}, {}
    for i in range(n):
        item = 100 + i * 3
        v = rng.integers(-3, 4, dims) if integer else rng.normal(size=dims)
        vectors[item] = v.astype(np.float32)
        blocks = ["Drama"] if rng.random() < 0.55 else []
        blocks += [b for b, p in (("Comedy", 0.3), ("Thriller", 0.2), ("Western", 0.05)) if rng.random() < p]
        members[item] = blocks or ["Horror"]
    return vectors, members


def to_frames(spark: SparkSession, vectors: dict[int, np.ndarray], members: dict[int, list[str]]
              ) -> tuple[DataFrame, DataFrame]:
    v = spark.createDataFrame([(k, [float(x) for x in vec]) for k, vec in vectors.items()], VEC_SCHEMA)
    m = spark.createDataFrame([(k, b) for k, bs in members.items() for b in bs], MEM_SCHEMA)
    return v, m


def spark_result(spark: SparkSession, vectors: dict, members: dict, params: SimilarityParams
                 ) -> dict[int, list[tuple[int, float, list[str]]]]:
    """Both execution paths (broadcast item-chunk tasks and sub-block pair joins) must give the same."""
    broadcast = spark_result_of(spark, vectors, members, params)
    joins = spark_result_of(spark, vectors, members, replace(params, broadcast_max_mb=0))
    assert broadcast.keys() == joins.keys()
    for item in broadcast:
        assert [n for n, _, _ in broadcast[item]] == [n for n, _, _ in joins[item]], item
    return broadcast


def spark_result_of(spark: SparkSession, vectors: dict, members: dict, params: SimilarityParams
                    ) -> dict[int, list[tuple[int, float, list[str]]]]:
    v, m = to_frames(spark, vectors, members)
    rows = item_neighbors(spark, v, m, params).collect()
    out: dict[int, list[tuple[int, int, float, list[str]]]] = {}
    for r in rows:
        out.setdefault(r[S.ITEM_ID], []).append((r[S.RANK], r[S.NEIGHBOR_ID], r[S.SIMILARITY], list(r[S.SHARED_GENRES])))
    return {k: [(n, s, g) for _, n, s, g in sorted(lst)] for k, lst in out.items()}


def assert_parity(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for item in want:
        assert [n for n, _, _ in got[item]] == [n for n, _, _ in want[item]], item
        assert [g for _, _, g in got[item]] == [g for _, _, g in want[item]], item
        np.testing.assert_allclose([s for _, s, _ in got[item]], [s for _, s, _ in want[item]], atol=1e-5)


@pytest.mark.parametrize("block_size, top_k", [(8, 5), (1000, 5), (7, 40)])
def test_cosine_parity_across_sub_block_boundaries(spark: SparkSession, block_size: int, top_k: int) -> None:
    vectors, members = skewed_catalogue(seed=1)
    params = SimilarityParams("cosine", top_k=top_k, block_size=block_size)
    assert_parity(spark_result(spark, vectors, members, params), reference_neighbors(vectors, members, params))


def test_threshold_and_items_in_several_blocks(spark: SparkSession) -> None:
    vectors, members = skewed_catalogue(seed=2)
    params = SimilarityParams("cosine", top_k=10, block_size=9, max_distance=0.6)
    got = spark_result(spark, vectors, members, params)
    assert_parity(got, reference_neighbors(vectors, members, params))
    sims = [s for lst in got.values() for _, s, _ in lst]
    assert sims and min(sims) > 0.4  # distance = 1 - cos < 0.6
    assert any(len(g) > 1 for lst in got.values() for _, _, g in lst)  # pairs met in two genres, counted once
    for item, lst in got.items():
        assert len({n for n, _, _ in lst}) == len(lst) and item not in {n for n, _, _ in lst}


def test_euclidean_with_exact_ties(spark: SparkSession) -> None:
    vectors, members = skewed_catalogue(seed=3, integer=True, dims=2)  # small integer grid: many exact ties
    params = SimilarityParams("euclidean", top_k=4, block_size=6)
    want = reference_neighbors(vectors, members, params)
    ties = sum(1 for lst in want.values() for a, b in zip(lst, lst[1:]) if a[1] == b[1])
    assert ties > 10
    assert_parity(spark_result(spark, vectors, members, params), want)


def test_one_sub_block_pair_per_partition(spark: SparkSession) -> None:
    keys = partition_keys(spark, 23)
    residues = spark.createDataFrame([(k,) for k in keys], "k long").select(F.pmod(F.hash("k"), F.lit(23))).collect()
    assert sorted(r[0] for r in residues) == list(range(23))
    vectors, members = skewed_catalogue(seed=4)
    v, m = to_frames(spark, vectors, members)
    tasks, n_pairs = sub_block_tasks(spark, v, m, block_size=6)
    per_partition = tasks.groupBy(F.spark_partition_id().alias("p")).agg(
        F.countDistinct(PAIR).alias("pairs"), F.max(F.col(PAIR)).alias("pair")).collect()
    assert len(per_partition) == n_pairs  # no empty partition
    assert all(r["pairs"] == 1 and r["pair"] == r["p"] for r in per_partition)  # none doubled
    # the biggest task holds at most block_size x block_size scores
    sizes = tasks.groupBy(PAIR, "side").count().collect()
    assert max(r["count"] for r in sizes) <= 6
    # broadcast path: consecutive item chunks, at most CHUNK_TASKS_PER_CORE tasks per core and
    # none empty, every product within block_size x block_size
    from hybridrec.neighbors.blocked import CHUNK_TASKS_PER_CORE, broadcast_neighbors, collect_catalogue
    from hybridrec.neighbors.kernels import block_products

    params = SimilarityParams("cosine", top_k=5, block_size=6)
    cat = collect_catalogue(v, m, "cosine")
    out, n_chunks = broadcast_neighbors(spark, cat, params)
    assert n_chunks == -(-len(cat.member_rows()) // 6)
    per_partition = out.groupBy(F.spark_partition_id().alias("p")).agg(F.countDistinct(S.ITEM_ID).alias("n")).collect()
    n_parts = min(n_chunks, CHUNK_TASKS_PER_CORE * spark.sparkContext.defaultParallelism)
    assert 1 < n_parts < n_chunks  # this catalogue has more chunks than tasks: they are grouped
    assert len(per_partition) == n_parts and all(r["n"] <= 6 * -(-n_chunks // n_parts) for r in per_partition)
    for block, rows in cat.block_rows.items():
        for left, right in block_products(rows[:6], rows, 6):
            assert len(left) * len(right) <= 36


@pytest.mark.stage
def test_similarity_stage_writes_item_neighbors(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    from hybridrec.features.backbones import ModelSpec
    from hybridrec.stages.similarity import run_similarity
    from hybridrec.storage.tables import ensure_table

    cfg = make_cfg("similarity.top_k=3", "similarity.block_size=5", "similarity.blocks=labelled", "run.id=s1")
    vectors, members = skewed_catalogue(seed=5, n=30)
    key = ModelSpec.from_conf(cfg.embed).key
    items = ensure_table(spark, cfg.storage, S.ITEMS)
    emb = ensure_table(spark, cfg.storage, S.ITEM_EMBEDDINGS)
    item_rows = spark.table(items).limit(0)
    v, m = to_frames(spark, vectors, members)
    genres = m.groupBy(S.ITEM_ID).agg(F.sort_array(F.collect_list(BLOCK)).alias(S.GENRES))
    filled = genres.select(*[F.col(f.name) if f.name in (S.ITEM_ID, S.GENRES) else F.lit(None).cast(f.dataType).alias(f.name)
                             for f in item_rows.schema]).fillna({S.RECORD_KIND: "x", S.RECORD_HASH: "x",
                                                                  S.SOURCE_FILE: "x", S.RUN_ID: "x"})
    filled = filled.withColumn(S.GENRE_IDS, F.array().cast("array<int>")).withColumn(
        S.CRAWL_DATE, F.current_date()).withColumn(S.INGESTED_AT, F.current_timestamp())
    filled.select(*item_rows.columns).write.format("delta").mode("append").saveAsTable(items)
    v.select(S.ITEM_ID, F.lit("h").alias(S.CONTENT_HASH), F.lit(key).alias(S.MODEL_KEY), F.lit("vgg19").alias(S.BACKBONE),
             F.lit("l").alias(S.LAYER), F.lit("w").alias(S.WEIGHTS), F.lit(6).alias(S.DIMS), S.VECTOR,
             F.lit("e").alias(S.RUN_ID), F.current_timestamp().alias(S.COMPUTED_AT)) \
        .write.format("delta").mode("append").saveAsTable(emb)
    report = run_similarity(spark, cfg)
    params = SimilarityParams("cosine", top_k=3, block_size=5)
    want = reference_neighbors(vectors, members, params)
    assert report.rows == sum(len(v) for v in want.values()) and report.tasks > 4
    table = spark.table(cfg.table(S.ITEM_NEIGHBORS))
    assert table.schema.fieldNames() == S.ITEM_NEIGHBORS_SCHEMA.fieldNames()
    assert table.filter("run_id = 's1'").count() == report.rows
    version = spark.sql(f"DESCRIBE HISTORY {cfg.table(S.ITEM_NEIGHBORS)}").first()["version"]
    run_similarity(spark, cfg)  # same run again: an exact replacement, so nothing is written
    assert spark.sql(f"DESCRIBE HISTORY {cfg.table(S.ITEM_NEIGHBORS)}").first()["version"] == version
    assert table.count() == report.rows
