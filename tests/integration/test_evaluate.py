"""Evaluation on Spark: metric parity with numpy and Spark's RankingMetrics, rating similarity and
blend parity with pure-Python references, a leak-free split, and the evaluate stage end to end."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
import random
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec.metrics import ranking
from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.crawl.demo import DemoCrawl
from hybridrec.datasets.splits import PART, TEST, TRAIN, customer_sample, new_items, split_ratings
from hybridrec.evaluation.harness import SLICE_ALL, SLICE_COLD, EvaluateReport, MetricContext, model_metrics, \
    relevant_truth
from hybridrec.models.base import ModelConf
from hybridrec.neighbors.ratingsim import RatingSimParams, blend_neighbors, search_rating_neighbors
from hybridrec.stages.evaluate import model_lists, run_evaluate, training_fit_data
from hybridrec.testing.references import reference_blend, reference_rating_neighbors

RATING_COLS = f"{S.CUSTOMER_ID} long, {S.ITEM_ID} long, {S.RATING} double, {S.TIMESTAMP} timestamp"


def random_ratings(seed: int, customers: int = 30, items: int = 25) -> list[tuple[int, int, float, dt.datetime]]:
    rng = random.Random(seed)
    base = dt.datetime(2024, 1, 1)
    rows = []
    for c in range(1, customers + 1):
        for i in rng.sample(range(100, 100 + items), rng.randint(1, 12)):
            # whole stars and a few same-second timestamps, as MovieLens has
            rows.append((c, i, float(rng.randint(1, 5)), base + dt.timedelta(seconds=rng.randint(0, 40))))
    return rows


def as_df(spark: SparkSession, rows: list) -> DataFrame:
    return spark.createDataFrame(rows, RATING_COLS)


@pytest.mark.parametrize("max_history,min_support,broadcast_mb", [(0, 1, 0), (4, 2, 0), (0, 1, 64), (4, 2, 64),
                                                                   (20, 1, 64)])
def test_rating_neighbors_equal_the_reference(spark: SparkSession, max_history: int, min_support: int,
                                              broadcast_mb: int) -> None:
    """Both paths (broadcast_mb 0: summed per-customer partials; else the broadcast Gram rows), with
    histories capped (4: some customers are cut; 20: none is, so nothing is sorted) or not."""
    rows = random_ratings(3)
    params = RatingSimParams(top_k=5, min_support=min_support, max_history=max_history, chunk_rows=20,
                             broadcast_max_mb=broadcast_mb, max_cells=64)
    found = search_rating_neighbors(as_df(spark, rows), params, partitions=3)
    got = found.neighbors.toPandas()
    want = reference_rating_neighbors([(c, i, r, t.timestamp()) for c, i, r, t in rows], params)
    assert set(got[S.ITEM_ID]) == set(want)
    # the broadcast path counts the rated items on its way, unless capped histories could drop one
    capped = max_history > 0 and max(Counter(c for c, *_ in rows).values()) > max_history
    assert found.rated_items == (len({i for _, i, _, _ in rows}) if broadcast_mb and not capped else None)
    for item, lst in want.items():
        mine = got[got[S.ITEM_ID] == item].sort_values(S.RANK)
        assert mine[S.NEIGHBOR_ID].tolist() == [j for j, _, _ in lst], item
        np.testing.assert_allclose(mine[S.SIMILARITY], [s for _, s, _ in lst], rtol=1e-9)
        assert mine["support"].tolist() == [n for _, _, n in lst]


@pytest.mark.parametrize("plain", [False, True])
def test_the_collected_rating_matrix_merges_customers_split_across_tasks(spark: SparkSession, plain: bool) -> None:
    """Round-robin partitions split every customer's ratings over several tasks' blobs: the
    driver's merge by customer and item id gives the matrix built from all the ratings at once.
    ``plain``: Spark's own Arrow collect (the count given, and it fits maxResultSize) - the same matrix."""
    from hybridrec.neighbors.ratingsim import RatingMatrix, collect_rating_matrix

    rows = random_ratings(4)
    got = collect_rating_matrix(as_df(spark, rows).repartition(5), len(rows) if plain else None)
    a = np.array([(c, i, r) for c, i, r, _ in rows])
    want = RatingMatrix.build(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2])
    assert got.customers == want.customers and (got.item_ids == want.item_ids).all()
    g, w = got.by_item(), want.by_item()
    # customers are rows in id order both ways, so the matrices are equal cell by cell
    assert (g != w).nnz == 0 and g.nnz == len(rows)
    np.testing.assert_allclose(got.norms, want.norms, rtol=1e-15)


@pytest.mark.parametrize("weight,shrinkage", [(0.5, 0.0), (0.3, 5.0), (1.0, 2.0)])
def test_blend_equals_the_reference(spark: SparkSession, weight: float, shrinkage: float) -> None:
    rng = random.Random(9)
    image = {(i, j): rng.random() for i in range(6) for j in range(6) if i != j and rng.random() < 0.5}
    rating = {(i, j): (rng.random(), rng.randint(1, 6)) for i in range(3, 9) for j in range(3, 9)
              if i != j and rng.random() < 0.5}
    img_df = spark.createDataFrame([(i, j, s, ["Drama"]) for (i, j), s in image.items()],
                                   f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, "
                                   f"{S.SHARED_GENRES} array<string>")
    rat_df = spark.createDataFrame([(i, j, s, n) for (i, j), (s, n) in rating.items()],
                                   f"{S.ITEM_ID} long, {S.NEIGHBOR_ID} long, {S.SIMILARITY} double, support long")
    got = blend_neighbors(img_df, rat_df, weight, shrinkage, top_k=3).toPandas()
    want = reference_blend(image, rating, weight, shrinkage, 3)
    for item, lst in want.items():
        mine = got[got[S.ITEM_ID] == item].sort_values(S.RANK)
        assert mine[S.NEIGHBOR_ID].tolist() == [j for j, _ in lst]
        np.testing.assert_allclose(mine[S.SIMILARITY], [s for _, s in lst], rtol=1e-12)
    # items 0-2 have no rating pairs (cold: neighbours from the image); 6-8 no image pairs (no poster)
    assert set(got[S.ITEM_ID]) == {i for i, _ in image} | {i for i, _ in rating}
    only_rating = got[got[S.ITEM_ID] >= 6]
    assert (only_rating[S.SHARED_GENRES].map(len) == 0).all()


def test_temporal_split_holds_out_each_customers_latest_and_leaks_nothing(spark: SparkSession,
                                                                           make_cfg: Callable[..., Config]) -> None:
    rows = random_ratings(5, customers=40)
    ec = make_cfg("evaluate.holdout_fraction=0.25", "evaluate.min_ratings=4").evaluate
    split = split_ratings(as_df(spark, rows), ec).toPandas()
    assert len(split) == len(rows)  # nothing dropped, nothing doubled
    for c, g in split.groupby(S.CUSTOMER_ID):
        test, train = g[g[PART] == TEST], g[g[PART] == TRAIN]
        if len(g) < 4:
            assert test.empty
            continue
        assert len(test) == max(1, int(len(g) * 0.25)) and len(train) >= 1
        assert not set(test[S.ITEM_ID]) & set(train[S.ITEM_ID])
        # every held-out rating is at least as late as every training one (ties: larger item id later)
        last_train = train.sort_values([S.TIMESTAMP, S.ITEM_ID]).iloc[-1]
        first_test = test.sort_values([S.TIMESTAMP, S.ITEM_ID]).iloc[0]
        assert (first_test[S.TIMESTAMP], first_test[S.ITEM_ID]) > (last_train[S.TIMESTAMP], last_train[S.ITEM_ID])
    seeded = make_cfg("evaluate.split=random", "evaluate.seed=4", "evaluate.holdout_last=2").evaluate
    a = split_ratings(as_df(spark, rows), seeded).toPandas().sort_values([S.CUSTOMER_ID, S.ITEM_ID])
    b = split_ratings(as_df(spark, rows), seeded).toPandas().sort_values([S.CUSTOMER_ID, S.ITEM_ID])
    assert a[PART].tolist() == b[PART].tolist()
    sizes = a.groupby(S.CUSTOMER_ID).size()
    held = a[a[PART] == TEST].groupby(S.CUSTOMER_ID).size()
    assert all(held.get(c, 0) == (min(2, n - 1) if n >= 5 else 0) for c, n in sizes.items())


@pytest.mark.parametrize("n", [0, 7, 39, 40, 100])
def test_customer_sample_keeps_every_row_of_the_customers_with_the_smallest_hashes(spark: SparkSession,
                                                                                    n: int) -> None:
    """At most n customers, all of their rows and nothing else: the n of smallest (xxhash64 with the
    seed, id) - ranked here in Python from the hashes Spark gives each id - whatever the partitioning;
    every customer when there are n or fewer."""
    rows = random_ratings(6, customers=40)
    ids = sorted({c for c, *_ in rows})
    assert len(ids) == 40
    hashes = {r["c"]: r["h"] for r in spark.createDataFrame([(c,) for c in ids], "c long")
              .select("c", F.xxhash64("c", F.lit(11)).alias("h")).collect()}
    want = set(sorted(ids, key=lambda c: (hashes[c], c))[:n])
    for parts in (1, 4):
        got = customer_sample(as_df(spark, rows).repartition(parts), n, seed=11).toPandas()
        assert set(got[S.CUSTOMER_ID]) == want
        assert len(got) == sum(1 for c, *_ in rows if c in want)  # each kept customer's every row, once


def test_the_hybrids_shared_pool_gives_each_fit_its_own_sample(spark: SparkSession) -> None:
    """The hybrid samples its customers once, for the larger of its two fits: each fit's sample of
    that pool is exactly its sample of every rating (the n smallest hashes of the larger sample)."""
    from hybridrec.config import ColdStartConf
    from hybridrec.models.hybrid import sample_pool

    ratings = as_df(spark, random_ratings(6, customers=40)).repartition(3)
    cs = ColdStartConf(lift_customers=9, fit_customers=23, seed=5)
    pool = sample_pool(ratings, cs)
    assert pool.select(S.CUSTOMER_ID).distinct().count() == 23
    for n in (cs.lift_customers, cs.fit_customers):
        direct = customer_sample(ratings, n, cs.seed).toPandas().sort_values([S.CUSTOMER_ID, S.ITEM_ID, S.TIMESTAMP]).reset_index(drop=True)
        shared = customer_sample(pool, n, cs.seed).toPandas().sort_values([S.CUSTOMER_ID, S.ITEM_ID, S.TIMESTAMP]).reset_index(drop=True)
        pd.testing.assert_frame_equal(shared, direct)
    assert sample_pool(ratings, ColdStartConf(lift_customers=5, fit_customers=40, seed=5)) is ratings  # all


def test_spark_metrics_equal_numpy_and_spark_ranking_metrics(spark: SparkSession) -> None:
    from pyspark.mllib.evaluation import RankingMetrics

    rng = random.Random(1)
    lists = {c: rng.sample(range(50), rng.randint(0, 12)) for c in range(1, 80)}
    truth = {c: {i: float(rng.randint(4, 5)) for i in rng.sample(range(50), rng.randint(1, 6))} for c in range(1, 80)}
    counts = {i: rng.randint(0, 9) for i in range(50) if i % 7}
    vecs = {i: v / np.linalg.norm(v) for i in range(50) for v in [np.random.default_rng(i).normal(size=4)]}
    recs = spark.createDataFrame([(c, r + 1, i, 1.0) for c, lst in lists.items() for r, i in enumerate(lst)],
                                 f"{S.CUSTOMER_ID} long, {S.RANK} int, {S.ITEM_ID} long, {S.SCORE} double")
    test = spark.createDataFrame([(c, i, g) for c, d in truth.items() for i, g in d.items()],
                                 f"{S.CUSTOMER_ID} long, {S.ITEM_ID} long, {S.RATING} double")
    for gain in ("graded", "binary"):
        ctx = MetricContext((3, 10), gain, counts, 9, vecs)
        got = model_metrics(spark, recs, relevant_truth(test, 4.0), ctx, catalogue_size=60)
        gains = {c: {i: (g if gain == "graded" else 1.0) for i, g in d.items()} for c, d in truth.items()}
        want = ranking.mean_metrics(lists, gains, (3, 10), counts, 9, vecs, 60)
        for (metric, k), v in want.items():
            row = got[(got[S.METRIC] == metric) & (got[S.K] == k) & (got[S.SLICE] == SLICE_ALL)]
            assert float(row[S.VALUE].iloc[0]) == pytest.approx(v, rel=1e-9, abs=1e-12), (gain, metric, k)
        cold = {c: {i: g for i, g in d.items() if counts.get(i, 0) == 0} for c, d in gains.items()}
        cold = {c: d for c, d in cold.items() if d}
        want_cold = ranking.mean_metrics(lists, cold, (10,), counts, 9, vecs, 60)
        row = got[(got[S.METRIC] == "recall") & (got[S.K] == 10) & (got[S.SLICE] == SLICE_COLD)]
        assert float(row[S.VALUE].iloc[0]) == pytest.approx(want_cold[("recall", 10)])
        assert int(row[S.CUSTOMERS].iloc[0]) == len(cold)
    pairs = spark.sparkContext.parallelize([(lists[c], list(truth[c])) for c in sorted(truth)])
    rm = RankingMetrics(pairs)
    binary = ranking.mean_metrics(lists, {c: {i: 1.0 for i in d} for c, d in truth.items()}, (3, 10), counts, 9,
                                  vecs, 60)
    for k in (3, 10):
        assert binary[("ndcg", k)] == pytest.approx(rm.ndcgAt(k), rel=1e-9)
        assert binary[("precision", k)] == pytest.approx(rm.precisionAt(k), rel=1e-9)
        assert binary[("recall", k)] == pytest.approx(rm.recallAt(k), rel=1e-9)
        assert binary[("map", k)] == pytest.approx(rm.meanAveragePrecisionAt(k), rel=1e-9)


# ---- the evaluate stage end to end on the small demo crawl -----------------------------------------
@pytest.fixture(scope="module")
def evaluated(spark: SparkSession, make_cfg: Callable[..., Config], demo_crawl: DemoCrawl,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, EvaluateReport]:
    from hybridrec.stages.embed import run_embed
    from hybridrec.stages.ingest import run_ingest

    cfg = make_cfg(f"input.crawl_dir={demo_crawl.crawl_dir}", f"input.ratings_path={demo_crawl.ratings_path}",
                   "embed.backbones=[{name: vgg19, weights: random}]", "embed.input_size=32",
                   "similarity.blocks=labelled", "similarity.top_k=10", "similarity.block_size=40",
                   "evaluate.ks=[5, 10]", "evaluate.min_ratings=4", "evaluate.als_iterations=3", "evaluate.als_rank=8",
                   f"evaluate.report_dir={tmp_path_factory.mktemp('reports')}", "run.id=e1")
    run_ingest(spark, cfg)
    run_embed(spark, cfg)
    return cfg, run_evaluate(spark, cfg)


@pytest.mark.stage
def test_evaluation_table_holds_every_model_metric_and_cut_off(spark: SparkSession,
                                                               evaluated: tuple[Config, EvaluateReport]) -> None:
    cfg, report = evaluated
    table = spark.table(cfg.table(S.EVALUATION))
    assert [f.name for f in table.schema.fields] == [f.name for f in S.EVALUATION_SCHEMA.fields]
    assert all(f.metadata.get("comment") for f in table.schema.fields)
    rows = table.filter(F.col(S.RUN_ID) == "e1").toPandas()
    assert len(rows) == len(report.table)
    allrows = rows[rows[S.SLICE] == SLICE_ALL]
    assert set(allrows[S.MODEL]) == set(cfg.evaluate.models)
    assert set(allrows[S.METRIC]) == set(ranking.METRICS) and set(allrows[S.K]) == {5, 10}
    assert len(allrows) == len(cfg.evaluate.models) * len(ranking.METRICS) * 2
    assert rows[S.VALUE].between(0, 100).all()
    acc = allrows[allrows[S.METRIC].isin(["ndcg", "precision", "recall", "map", "hit_rate", "coverage"])]
    assert acc[S.VALUE].between(0, 1).all()
    # the rating-based models learn something on the demo's genre tastes: they beat random
    knn = allrows[(allrows[S.MODEL] == "item_knn") & (allrows[S.METRIC] == "hit_rate") & (allrows[S.K] == 10)]
    assert float(knn[S.VALUE].iloc[0]) > 0.2
    # a rerun of a run writes the same rows and no new version; another run adds its own rows
    popular = Config(**{**cfg.__dict__, "evaluate": replace(cfg.evaluate, models=["popular"]),
                        "run": replace(cfg.run, id="e2")})
    run_evaluate(spark, popular)
    version = spark.sql(f"DESCRIBE HISTORY {cfg.table(S.EVALUATION)}").first()["version"]
    run_evaluate(spark, popular)
    assert spark.sql(f"DESCRIBE HISTORY {cfg.table(S.EVALUATION)}").first()["version"] == version
    assert table.filter(F.col(S.RUN_ID) == "e1").count() == len(report.table)


@pytest.mark.stage
def test_models_see_only_the_training_part(spark: SparkSession, evaluated: tuple[Config, EvaluateReport]) -> None:
    from hybridrec.models.neighborhood import ItemKnn

    cfg, report = evaluated
    ratings = spark.table(cfg.table(S.RATINGS)).select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    split = split_ratings(ratings, cfg.evaluate)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    test = split.filter(F.col(PART) == TEST).drop(PART).toPandas()
    truth = relevant_truth(split.filter(F.col(PART) == TEST).drop(PART), cfg.evaluate.relevant_threshold)
    data, conf = training_fit_data(spark, cfg, train), ModelConf.from_config(cfg)
    customers = truth.select(S.CUSTOMER_ID)
    # item-kNN similarities are exactly those of the training rows: held-out ratings never count
    train_rows = [(int(r[0]), int(r[1]), float(r[2]), r[3].timestamp()) for r in train.collect()]
    sc = cfg.similarity
    want = reference_rating_neighbors(train_rows, RatingSimParams(sc.top_k, sc.rating_min_support,
                                                                  sc.rating_max_history))
    got = data.neighbors(ItemKnn(conf).recipe()).toPandas()
    assert len(got) == sum(len(v) for v in want.values())
    for item, lst in list(want.items())[:20]:
        mine = got[got[S.ITEM_ID] == item].sort_values(S.RANK)
        np.testing.assert_allclose(mine[S.SIMILARITY], [s for _, s, _ in lst], rtol=1e-9)
    trained = train.toPandas()
    rated = set(zip(trained[S.CUSTOMER_ID], trained[S.ITEM_ID]))
    held = set(zip(test[S.CUSTOMER_ID], test[S.ITEM_ID]))
    for model in ("popular", "als", "paper_rating", "hybrid"):
        recs = model_lists(data, conf, model, customers, 10).toPandas()
        pairs = set(zip(recs[S.CUSTOMER_ID], recs[S.ITEM_ID]))
        assert not pairs & rated, model  # never an item rated in training
        assert (recs.groupby(S.CUSTOMER_ID)[S.RANK].apply(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()
    assert report.test_ratings == len(held)


@pytest.mark.stage
def test_report_has_the_table_plots_and_a_self_contained_html(evaluated: tuple[Config, EvaluateReport]) -> None:
    cfg, report = evaluated
    md = Path(report.report_path)
    text = md.read_text()
    assert "| model | ndcg@10" in text and "| paper |" in text and "| hybrid |" in text
    for name in ("ndcg_at_10.png", "coverage_at_10.png", "genre_distribution.png"):
        assert (md.parent / name).stat().st_size > 1000, name
    html = (md.parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len([p for p in md.parent.glob("*.png")])
    assert "\n".join(report.lines()).count("| ") >= len(cfg.evaluate.models)


@pytest.mark.stage
def test_hybrid_recommend_stage_equals_one_driver_batch(spark: SparkSession,
                                                       evaluated: tuple[Config, EvaluateReport]) -> None:
    """The default recommender end to end: rating neighbours from the similarity stage and the fitted
    cold-start model; Spark's partitioned, batched scoring equals one numpy batch on the driver."""
    from hybridrec.features.vectors import embedding_vectors
    from hybridrec.models.hybrid import ColdInputs, fit_cold, fit_min_lift
    from hybridrec.models.scoring import SOURCE_COLD_START, neighbor_matrix, score_batch
    from hybridrec.neighbors.recipe import NeighborRecipe
    from hybridrec.stages.inputs import fit_data
    from hybridrec.stages.recommend import run_recommend
    from hybridrec.stages.similarity import run_similarity

    cfg, _ = evaluated
    hybrid = Config(**{**cfg.__dict__, "similarity": replace(cfg.similarity, rating_weight=1.0),
                       "recommend": replace(cfg.recommend, model="hybrid", partitions=3, batch_rows=50),
                       "run": replace(cfg.run, id="hyb1")})
    sim = run_similarity(spark, hybrid)
    assert sim.source == "rating" and "rating neighbours only" in sim.lines()[0]
    report = run_recommend(spark, hybrid)
    got = spark.table(cfg.table(S.RECOMMENDATIONS)).filter(F.col(S.RUN_ID) == "hyb1").toPandas()
    ratings = spark.table(cfg.table(S.RATINGS))
    items = spark.table(cfg.table(S.ITEMS))
    counts = ratings.groupBy(S.ITEM_ID).count().toPandas()
    thin = set(counts[counts["count"] < hybrid.recommend.cold_start.max_ratings][S.ITEM_ID])
    assert report.model == "hybrid" and report.cold_rows > 0
    assert any("cold-start model" in line for line in report.lines())
    assert any("fitted on a temporal carve-out" in line for line in report.lines())  # min_lift: null
    cold_rows = got[got[S.SOURCE] == SOURCE_COLD_START]
    assert len(cold_rows) == report.cold_rows and cold_rows[S.BECAUSE_ITEM_ID].isna().all()
    assert cold_rows[S.SCORE].between(0, 1).all()  # a probability of relevance
    warm = got[got[S.SOURCE] == "neighbors"]
    assert not set(warm[S.ITEM_ID]) & thin  # the cold model owns the thin items
    # same inputs on the driver in one batch
    neighbors = spark.table(cfg.table(S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == "hyb1")
    cs = hybrid.recommend.cold_start
    inputs = ColdInputs.collect(items, embedding_vectors(spark, hybrid.storage, hybrid.embed))
    choice = fit_min_lift(fit_data(spark, hybrid, ratings), NeighborRecipe.configured(hybrid.similarity),
                          hybrid.recommend, inputs)  # on a carve-out
    lift, by_lift = choice.lift, choice.ndcg
    cold = fit_cold(ratings, inputs, cs, hybrid.recommend.threshold).scorer(inputs, cs, lift)
    assert len(cold.catalogue.cold_ids) >= len(thin) > 0
    assert set(by_lift) == {*hybrid.recommend.cold_start.lift_grid, float("inf")} and cold.lift == lift
    assert any(f"{len(cold.catalogue.cold_ids)} cold items" in line for line in report.lines())
    # within max_ndcg_loss of the best nDCG, and no allowed lift finds more of the held-out new items
    assert by_lift[lift] >= (1 - cs.max_ndcg_loss) * max(by_lift.values()) - 1e-12
    assert all(0 <= v <= 1 for v in [*by_lift.values(), *choice.new_recall.values()])
    assert all(choice.new_recall[x] <= choice.new_recall[lift] + 1e-12 for x in cs.lift_grid
               if by_lift[x] >= (1 - cs.max_ndcg_loss) * max(by_lift.values()))
    assert any(line.startswith("min_lift carve-out") for line in report.lines())
    r = ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING).toPandas()
    want = score_batch(r[S.CUSTOMER_ID].to_numpy(), r[S.ITEM_ID].to_numpy(), r[S.RATING].to_numpy(np.float64),
                       neighbor_matrix(neighbors), hybrid.recommend.top_n, hybrid.recommend.threshold, None, cold)
    mine = got[got[S.SOURCE].isin(["neighbors", SOURCE_COLD_START])].sort_values([S.CUSTOMER_ID, S.RANK])
    want = want.sort_values([S.CUSTOMER_ID, S.RANK])
    assert mine[S.ITEM_ID].tolist() == want[S.ITEM_ID].tolist()
    assert mine[S.SOURCE].tolist() == want[S.SOURCE].tolist()
    np.testing.assert_allclose(mine[S.SCORE].to_numpy(), want[S.SCORE].to_numpy(), rtol=1e-9)
    # never more cold picks than the slots in a list the neighbours filled
    per = got.groupby(S.CUSTOMER_ID)[S.SOURCE].agg(lambda s: ((s == SOURCE_COLD_START).sum(), len(s)))
    for n_cold, n in per:
        assert n <= hybrid.recommend.top_n
        # more than the slots only where the neighbours left the list short
        assert n_cold <= hybrid.recommend.cold_start.slots or n - n_cold < hybrid.recommend.top_n - \
            hybrid.recommend.cold_start.slots
    rated = set(zip(r[S.CUSTOMER_ID], r[S.ITEM_ID]))
    assert not set(zip(got[S.CUSTOMER_ID], got[S.ITEM_ID])) & rated
    # "new for you": only items young at the run date or thinly rated, never rated, ranks 1..top_k
    new = spark.table(cfg.table(S.NEW_ITEM_RECOMMENDATIONS)).filter(F.col(S.RUN_ID) == "hyb1").toPandas()
    nc = hybrid.recommend.new
    released = items.select(S.ITEM_ID, "release_date").toPandas()
    young = {int(i) for i, d in zip(released[S.ITEM_ID], released["release_date"])
             if d is not None and not pd.isna(d) and d >= hybrid.run_date - dt.timedelta(days=nc.max_age_days)}
    counted = dict(zip(counts[S.ITEM_ID].astype(int), counts["count"]))
    fresh = young | {int(i) for i in released[S.ITEM_ID] if counted.get(int(i), 0) < nc.max_ratings}
    assert len(new) == report.new_rows > 0 and report.new_items == len(fresh)
    assert set(new[S.ITEM_ID]) <= fresh and not set(zip(new[S.CUSTOMER_ID], new[S.ITEM_ID])) & rated
    for _, g in new.groupby(S.CUSTOMER_ID):
        assert sorted(g[S.RANK]) == list(range(1, len(g) + 1)) and len(g) <= nc.top_k
    assert any(line.startswith(S.NEW_ITEM_RECOMMENDATIONS) for line in report.lines())
    # the one-pass lists equal the model's own two-pass answer: recommend(None, k, candidates=new)
    from hybridrec.models.registry import make_model
    from hybridrec.stages.inputs import run_neighbors
    from hybridrec.stages.recommend import new_item_ids

    fitted = make_model("hybrid", ModelConf.from_config(hybrid)).fit(
        fit_data(spark, hybrid, ratings, run_neighbors(spark, hybrid)))
    two = fitted.recommend(None, nc.top_k, candidates=new_item_ids(items, ratings, hybrid.run_date, nc)) \
        .toPandas().sort_values([S.CUSTOMER_ID, S.RANK])
    one = new.sort_values([S.CUSTOMER_ID, S.RANK])
    assert one[[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SOURCE]].values.tolist() == \
        two[[S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SOURCE]].values.tolist()
    np.testing.assert_allclose(one[S.SCORE].to_numpy(), two[S.SCORE].to_numpy(), rtol=1e-9)
    assert one[S.BECAUSE_ITEM_ID].fillna(-1).tolist() == two[S.BECAUSE_ITEM_ID].fillna(-1).tolist()
    # what is evaluated is what is served: the evaluate stage's hybrid, fitted on the same ratings
    # (computing its neighbours itself, as it does on a training part), gives the same lists
    data = training_fit_data(spark, hybrid, ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP))
    assert data.stored is None  # rating neighbours of all ratings are never handed to the evaluation
    evaluated_lists = model_lists(data, ModelConf.from_config(hybrid), "hybrid", None, hybrid.recommend.top_n)
    cols = [S.CUSTOMER_ID, S.RANK, S.ITEM_ID, S.SCORE, S.BECAUSE_ITEM_ID, S.SOURCE]
    key = [S.CUSTOMER_ID, S.RANK]
    served = got[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(evaluated_lists.toPandas()[cols].sort_values(key).reset_index(drop=True), served,
                                  check_dtype=False)


@pytest.mark.stage
def test_ranked_recommend_stage_serves_both_lists(spark: SparkSession, evaluated: tuple[Config, EvaluateReport]) -> None:
    """recommend.model: ranked through the recommend stage: every customer's top-n from the ranker,
    the "new for you" list among the new items only, and without a classifier a one-line error
    naming the feature that needs it."""
    from hybridrec.config import RANK_FEATURES
    from hybridrec.errors import UserError
    from hybridrec.stages.recommend import new_item_ids, run_recommend

    cfg, _ = evaluated
    features = [f for f in RANK_FEATURES if f != "predicted_affinity"]  # no train stage ran here
    ranked = Config(**{**cfg.__dict__, "recommend": replace(
        cfg.recommend, model="ranked", partitions=3, ranker=replace(cfg.recommend.ranker, features=features, rounds=40)),
        "evaluate": replace(cfg.evaluate, ease_items=300), "run": replace(cfg.run, id="rk1")})
    report = run_recommend(spark, ranked)
    assert report.model == "ranked" and any("feature importance" in line for line in report.lines())
    got = spark.table(cfg.table(S.RECOMMENDATIONS)).filter(F.col(S.RUN_ID) == "rk1").toPandas()
    ratings = spark.table(cfg.table(S.RATINGS)).select(S.CUSTOMER_ID, S.ITEM_ID).toPandas()
    assert set(got[S.SOURCE]) == {"ranked"}
    assert set(got[S.CUSTOMER_ID]) == set(ratings[S.CUSTOMER_ID])
    assert (got.groupby(S.CUSTOMER_ID)[S.RANK].apply(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()
    assert not set(zip(got[S.CUSTOMER_ID], got[S.ITEM_ID])) & set(zip(ratings[S.CUSTOMER_ID], ratings[S.ITEM_ID]))
    assert (got.groupby(S.CUSTOMER_ID).size() == ranked.recommend.top_n).mean() > 0.95
    fresh = spark.table(cfg.table(S.NEW_ITEM_RECOMMENDATIONS)).filter(F.col(S.RUN_ID) == "rk1").toPandas()
    new = new_item_ids(spark.table(cfg.table(S.ITEMS)), spark.table(cfg.table(S.RATINGS)), ranked.run_date,
                       ranked.recommend.new).toPandas()
    assert len(fresh) == report.new_rows > 0 and set(fresh[S.ITEM_ID]) <= set(new[S.ITEM_ID])
    with pytest.raises(UserError, match="predicted_affinity needs the item_categories table"):
        run_recommend(spark, Config(**{**ranked.__dict__, "recommend": replace(
            ranked.recommend, ranker=replace(ranked.recommend.ranker, features=list(RANK_FEATURES))),
            "run": replace(cfg.run, id="rk2")}))


@pytest.mark.stage
def test_similarity_stage_blends_ratings_so_items_without_posters_get_neighbours(
        spark: SparkSession, evaluated: tuple[Config, EvaluateReport]) -> None:
    from hybridrec.stages.similarity import run_similarity

    cfg, _ = evaluated
    # two rated items lose their poster vectors (the last test of the module: the tables are its own)
    lost = [r[0] for r in spark.table(cfg.table(S.RATINGS)).groupBy(S.ITEM_ID).count()
            .orderBy(F.desc("count"), S.ITEM_ID).limit(2).collect()]
    spark.sql(f"DELETE FROM {cfg.table(S.ITEM_EMBEDDINGS)} WHERE {S.ITEM_ID} IN ({lost[0]}, {lost[1]})")
    blended = Config(**{**cfg.__dict__, "similarity": replace(cfg.similarity, rating_weight=0.5),
                        "run": replace(cfg.run, id="blend1")})
    report = run_similarity(spark, blended)
    got = spark.table(cfg.table(S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == "blend1")
    embedded = spark.table(cfg.table(S.ITEM_EMBEDDINGS)).select(S.ITEM_ID)
    rated = spark.table(cfg.table(S.RATINGS)).select(S.ITEM_ID).distinct()
    no_poster = rated.join(embedded, S.ITEM_ID, "left_anti")
    assert {r[0] for r in no_poster.collect()} >= set(lost)
    served = got.join(no_poster, S.ITEM_ID, "left_semi")
    assert {r[0] for r in served.select(S.ITEM_ID).distinct().collect()} >= set(lost)
    assert served.filter(F.size(S.SHARED_GENRES) > 0).isEmpty()  # found by ratings only
    # items with a poster and no rating keep their image neighbours
    unrated = embedded.join(rated, S.ITEM_ID, "left_anti")
    if unrated.count():
        assert got.join(unrated, S.ITEM_ID, "left_semi").count() > 0
    assert report.rows == got.count() and got.groupBy(S.ITEM_ID).count().filter("count > 10").isEmpty()


@pytest.mark.stage
def test_analyst_views_answer_sql(spark: SparkSession, evaluated: tuple[Config, EvaluateReport]) -> None:
    from hybridrec.storage.views import VIEWS, create_views

    cfg, report = evaluated
    names = create_views(spark, cfg.storage)
    assert [n.split(".")[-1].strip("`") for n in names] == list(VIEWS)
    stats = spark.table(cfg.table("genre_stats")).toPandas()
    items = spark.table(cfg.table(S.ITEMS)).select(F.explode(S.GENRES).alias("g")).groupBy("g").count().toPandas()
    assert dict(zip(stats[S.GENRE], stats["movies"])) == dict(zip(items["g"], items["count"]))
    assert stats["ratings"].sum() >= spark.table(cfg.table(S.RATINGS)).count()  # multi-genre items count per genre
    latest = spark.table(cfg.table("evaluation_latest")).select(S.RUN_ID).distinct().collect()
    assert len(latest) == 1
    for name in names:
        comment = [r for r in spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect() if r[0] == "Comment"]
        assert comment and comment[0][1], name


@pytest.mark.stage
def test_new_item_protocol_ranks_only_hidden_items(spark: SparkSession, evaluated: tuple[Config, EvaluateReport]
                                                   ) -> None:
    cfg, _ = evaluated
    ec = replace(cfg.evaluate, split="new_items", new_item_fraction=0.3, seed=2)
    ratings = spark.table(cfg.table(S.RATINGS)).select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    hidden = {r[0] for r in new_items(ratings, ec).collect()}
    n_rated = ratings.select(S.ITEM_ID).distinct().count()
    assert len(hidden) == int(np.ceil(0.3 * n_rated))
    split = split_ratings(ratings, ec)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    assert train.filter(F.col(S.ITEM_ID).isin(list(hidden))).isEmpty()  # nobody rated them in training
    test = split.filter(F.col(PART) == TEST).drop(PART)
    assert test.count() + train.count() == ratings.count()
    truth = relevant_truth(test, ec.relevant_threshold)
    cfg2 = Config(**{**cfg.__dict__, "evaluate": ec})
    data, conf = training_fit_data(spark, cfg2, train), ModelConf.from_config(cfg2)
    customers, candidates = truth.select(S.CUSTOMER_ID), test.select(S.ITEM_ID).distinct()
    recall = {}
    relevant = truth.toPandas()
    for model in ("random", "genre_affinity", "paper", "hybrid", "item_knn", "popular"):
        recs = model_lists(data, conf, model, customers, 10, candidates).toPandas()
        assert set(recs[S.ITEM_ID]) <= hidden, model
        if model in ("random", "genre_affinity", "hybrid"):
            assert recs[S.CUSTOMER_ID].nunique() == truth.count(), model  # everybody gets a list
        if model == "item_knn":
            assert recs.empty  # rating similarity cannot reach items nobody rated
        top = recs.groupby(S.CUSTOMER_ID)[S.ITEM_ID].apply(set).to_dict()
        recall[model] = float(np.mean([len(top.get(c, set()) & set(items)) / len(items)
                                       for c, items in zip(relevant[S.CUSTOMER_ID], relevant["_t_items"])]))
    # the cold-start model ranks new items far better than the paper's poster neighbours and the floors
    assert recall["hybrid"] > 1.5 * recall["paper"] and recall["hybrid"] > recall["genre_affinity"] > 0, recall
    a = model_lists(data, conf, "random", customers, 10, candidates).toPandas().sort_values([S.CUSTOMER_ID, S.RANK])
    b = model_lists(data, conf, "random", customers, 10, candidates).toPandas().sort_values([S.CUSTOMER_ID, S.RANK])
    assert a[S.ITEM_ID].tolist() == b[S.ITEM_ID].tolist()  # seeded


@pytest.mark.stage
def test_analyst_notebook_runs_headless(spark: SparkSession, evaluated: tuple[Config, EvaluateReport],
                                        tmp_path: Path) -> None:
    import runpy

    from hybridrec.storage.views import create_views

    cfg, _ = evaluated
    create_views(spark, cfg.storage)
    ns = runpy.run_path(str(Path(__file__).resolve().parents[2] / "notebooks" / "02_analyst.py"),
                        init_globals={"spark": spark, "DATABASE": cfg.database, "PLOT_DIR": str(tmp_path)})
    results = ns["RESULTS"]
    assert "popular" in set(results["ndcg"]["model"])  # the newest evaluate run (e2) scored popular
    assert results["genre_stats"]["movies"].sum() > 0
    assert (tmp_path / "genres.png").stat().st_size > 1000 and (tmp_path / "ndcg.png").stat().st_size > 1000


def test_rating_neighbours_with_support_serve_a_recipe_that_does_not_read_it(spark: SparkSession) -> None:
    """paper_rating's shrinkage reads the co-rater counts, item-kNN's recipe does not: fitted after
    it on the same ratings, item-kNN reuses its neighbours instead of computing them again."""
    from hybridrec.models.base import FitData
    from hybridrec.neighbors.recipe import NeighborRecipe

    def unused(*_: object) -> DataFrame:
        raise AssertionError("a rating recipe reads no posters")

    data = FitData(spark, as_df(spark, random_ratings(3)), spark.range(0), unused, unused, unused)
    with_support = NeighborRecipe(1.0, 5, 2.0, rating=RatingSimParams(top_k=5, support=True))
    without = NeighborRecipe(1.0, 5, 0.0, rating=RatingSimParams(top_k=5, support=False))
    shrunk = data.neighbors(with_support).toPandas()
    plain = data.neighbors(without).toPandas()
    assert [k for k in data.cache if k[0] == "rating"] == [("rating", with_support.rating)]
    assert len(plain) == len(shrunk) > 0
