"""The recommend stage on Spark: parity with the paper's pseudocode, idempotent runs, latest view, and the
serving table (MERGE per run, change feed, CHECK constraints)."""
from __future__ import annotations

import copy
import datetime as dt
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.stages.recommend import run_recommend
from hybridrec.storage.tables import ensure_table

from tests.unit.test_scoring import paper_top_recommendations, random_world


def load_world(spark: SparkSession, cfg: Config, NN: dict, R: dict, run_id: str) -> None:
    ensure_table(spark, cfg.storage, S.ITEMS)
    rows = [(i, j, s, rank + 1, ["Drama"], run_id) for i, lst in NN.items()
            for rank, (j, s) in enumerate(sorted(lst, key=lambda js: (-js[1], js[0])))]
    spark.createDataFrame(rows, S.ITEM_NEIGHBORS_SCHEMA).write.format("delta").mode("append") \
        .saveAsTable(ensure_table(spark, cfg.storage, S.ITEM_NEIGHBORS))
    ts = dt.datetime(2026, 1, 1)
    ratings = [(c, i, r, ts, "t", "t", ts) for c, items in R.items() for i, r in items.items()]
    spark.createDataFrame(ratings, S.RATINGS_SCHEMA).write.format("delta").mode("overwrite") \
        .saveAsTable(ensure_table(spark, cfg.storage, S.RATINGS))


@pytest.mark.stage
def test_spark_recommendations_equal_the_pseudocode(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    ids, NN, R = random_world(7, customers=60, grid=True)
    cfg = make_cfg("recommend.top_n=4", "recommend.threshold=3", "recommend.partitions=3",
                   "recommend.batch_rows=25", "run.id=r1")
    load_world(spark, cfg, NN, R, "r1")
    report = run_recommend(spark, cfg)
    got = spark.table(cfg.table(S.RECOMMENDATIONS)).filter("run_id = 'r1'").toPandas()
    assert report.customers == len(R) and report.rows == len(got)
    fallback = [c for c in R if not paper_top_recommendations(c, R, 4, NN, 3.0)]
    assert fallback and report.fallback_customers == len(fallback)
    for c in R:
        mine = got[got["customer_id"] == c].sort_values("rank")
        want = paper_top_recommendations(c, R, 4, NN, 3.0)
        if not want:
            assert set(mine["source"]) <= {"fallback_genre_popular", "fallback_popular"} and len(mine) > 0
            continue
        assert mine["item_id"].tolist() == [j for j, _, _ in want], c
        np.testing.assert_allclose(mine["score"].to_numpy(), [s for _, s, _ in want], rtol=1e-12)
        assert mine["because_item_id"].tolist() == [k for _, _, k in want]

    # same run again: exact replacement, no new version; a new run appends and becomes "latest"
    version = spark.sql(f"DESCRIBE HISTORY {cfg.table(S.RECOMMENDATIONS)}").first()["version"]
    run_recommend(spark, cfg)
    assert spark.sql(f"DESCRIBE HISTORY {cfg.table(S.RECOMMENDATIONS)}").first()["version"] == version
    cfg2 = make_cfg("recommend.top_n=4", "recommend.threshold=3", "run.id=r2", database=cfg.storage.database)
    load_world(spark, cfg2, NN, R, "r2")
    run_recommend(spark, cfg2)
    table = spark.table(cfg.table(S.RECOMMENDATIONS))
    assert table.filter("run_id = 'r1'").count() == report.rows  # earlier run still queryable
    latest = spark.table(cfg.table(S.RECOMMENDATIONS_LATEST))
    assert {r["run_id"] for r in latest.select("run_id").distinct().collect()} == {"r2"}
    assert latest.count() == report.rows


def _lists(df: pd.DataFrame) -> dict[tuple[int, int], tuple]:
    return {(int(r.customer_id), int(r.rank)): (int(r.item_id), float(r.score),
                                                None if r.because_item_id != r.because_item_id else r.because_item_id,
                                                r.source)
            for r in df.itertuples()}


@pytest.mark.stage
def test_the_serving_table_merges_only_what_changed_and_its_change_feed_holds_exactly_that(
        spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    ids, NN, R = random_world(11, customers=40, grid=True)
    cfg = make_cfg("recommend.top_n=4", "recommend.threshold=3", "run.id=2026-11-01")
    load_world(spark, cfg, NN, R, "2026-11-01")
    run_recommend(spark, cfg)
    full = cfg.table(S.RECOMMENDATIONS_CURRENT)
    recs = spark.table(cfg.table(S.RECOMMENDATIONS))
    first = _lists(recs.filter("run_id = '2026-11-01'").toPandas())
    assert _lists(spark.table(full).toPandas()) == first  # the serving copy is the run's lists

    # the next night: five customers rated something new; everyone else's list is unchanged
    R2 = copy.deepcopy(R)
    for c in list(R2)[:5]:
        unrated = [int(i) for i in ids if int(i) not in R2[c]]
        R2[c][unrated[0]] = 5.0
    cfg2 = make_cfg("recommend.top_n=4", "recommend.threshold=3", "run.id=2026-11-02", database=cfg.storage.database)
    load_world(spark, cfg2, NN, R2, "2026-11-02")
    report = run_recommend(spark, cfg2)
    second = _lists(spark.table(cfg.table(S.RECOMMENDATIONS)).filter("run_id = '2026-11-02'").toPandas())
    assert _lists(spark.table(full).toPandas()) == second
    inserted = set(second) - set(first)
    deleted = set(first) - set(second)
    updated = {k for k in set(first) & set(second) if first[k] != second[k]}
    assert 0 < len(inserted | deleted | updated) < len(second) / 4  # a few lists changed, most did not
    assert report.current is not None
    assert (report.current.inserted, report.current.updated, report.current.deleted) == \
        (len(inserted), len(updated), len(deleted))
    feed = spark.read.format("delta").option("readChangeFeed", "true") \
        .option("startingVersion", report.current.version).option("endingVersion", report.current.version) \
        .table(full).collect()
    by_type: dict[str, set[tuple[int, int]]] = {}
    for r in feed:
        by_type.setdefault(r["_change_type"], set()).add((r["customer_id"], r["rank"]))
    assert by_type.get("insert", set()) == inserted and by_type.get("delete", set()) == deleted
    assert by_type.get("update_postimage", set()) == updated == by_type.get("update_preimage", set())
    # a backfill of an older date leaves the serving copy alone
    older = make_cfg("recommend.top_n=4", "recommend.threshold=3", "run.id=2026-10-31", database=cfg.storage.database)
    load_world(spark, older, NN, R, "2026-10-31")
    assert run_recommend(spark, older).current is None
    assert _lists(spark.table(full).toPandas()) == second

    # CHECK constraints: rank within 1..top_n, finite scores
    row = spark.table(full).limit(1).collect()[0].asDict()
    for bad in ({"rank": 0}, {"rank": 5}, {"score": float("nan")}, {"score": float("inf")}):
        df = spark.createDataFrame([{**row, **bad}], S.RECOMMENDATIONS_CURRENT_SCHEMA)
        with pytest.raises(Exception, match="(?i)check constraint"):
            df.write.format("delta").mode("append").saveAsTable(full)
        with pytest.raises(Exception, match="(?i)check constraint"):
            df.write.format("delta").mode("append").saveAsTable(cfg.table(S.RECOMMENDATIONS))


def test_new_items_are_young_or_thinly_rated_at_the_run_date(spark: SparkSession) -> None:
    from hybridrec.config import NewItemsConf
    from hybridrec.stages.recommend import new_item_ids

    run = dt.date(2026, 6, 30)
    items = spark.createDataFrame(
        [(1, dt.date(2026, 1, 1)), (2, dt.date(2025, 6, 30)), (3, dt.date(2025, 6, 29)), (4, None),
         (5, dt.date(2027, 1, 1)), (6, None), (7, dt.date(2020, 1, 1))], "item_id long, release_date date")
    # ratings: item 3 and 6 have 2 each, item 7 has 1, item 4 has none
    ratings = spark.createDataFrame([(c, i) for i in (3, 6) for c in (1, 2)] + [(1, 7)] +
                                    [(c, i) for i in (1, 2, 5) for c in range(1, 4)], "customer_id long, item_id long")
    got = lambda conf: sorted(r[0] for r in new_item_ids(items, ratings, run, conf).collect())  # noqa: E731
    # 365 days back: 1 (Jan), 2 (exactly 365 days), 5 (not yet released); 3 is a day too old
    assert got(NewItemsConf(max_age_days=365, max_ratings=0)) == [1, 2, 5]
    # fewer than 2 ratings: 4 (none, no release date) and 7 (one)
    assert got(NewItemsConf(max_age_days=0, max_ratings=2)) == [4, 5, 7]  # 5: released after the run date
    assert got(NewItemsConf(max_age_days=365, max_ratings=3)) == [1, 2, 3, 4, 5, 6, 7]


def test_the_lift_carve_outs_cold_items_are_counted_over_every_customer(spark: SparkSession) -> None:
    """carve_counts: every customer's ratings per item less the ones the carve-out holds out - not
    the sampled customers' alone, which would make nearly every item cold at scale."""
    from hybridrec.models.hybrid import carve_counts, item_counts

    rows = [(c, i) for c in range(1, 11) for i in (1, 2)] + [(c, 3) for c in (1, 2, 3)] + [(1, 4), (2, 5)]
    ratings = spark.createDataFrame(rows, "customer_id long, item_id long")
    held = [(c, i) for c, i in rows if c <= 2 and i in (3, 4, 5)]  # the sampled customers' latest ratings
    want: dict[int, int] = {}
    for c, i in rows:
        if (c, i) not in held:
            want[i] = want.get(i, 0) + 1
    assert want == {1: 10, 2: 10, 3: 1}  # 4 and 5: rated only in the held-out part, so absent (no ratings)
    assert carve_counts(item_counts(ratings), spark.createDataFrame(held, "customer_id long, item_id long")) == want
    train = ratings.filter("customer_id <= 2 AND NOT (item_id IN (3, 4, 5))")
    assert item_counts(train) == {1: 2, 2: 2}  # the sample's own counts: 1 and 2 would look cold
