"""ALS's interactions: with ``als_min_rating`` only the ratings at or above it are fitted (a
customer or an item with none of them gets no factors), and the tuning searches the threshold."""
from __future__ import annotations

import datetime as dt
from typing import Callable

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.models.base import FitData
from hybridrec.models.dense import als_model, tuned_als
from tests.integration.test_evaluate import as_df, random_ratings


def test_als_fits_only_the_ratings_that_count_and_tunes_the_threshold(spark: SparkSession,
                                                                      make_cfg: Callable[..., Config]) -> None:
    rows = random_ratings(4, customers=40, items=15)
    t = dt.datetime(2024, 1, 2)
    rows += [(900, 100, 2.0, t), (900, 101, 3.0, t)]  # a customer with no like
    rows += [(c, 999, 1.0, t) for c in range(1, 6)]  # an item nobody likes
    ratings = as_df(spark, rows)
    grids = ["evaluate.als_ranks=[4]", "evaluate.als_regs=[0.1]", "evaluate.als_alphas=[1.0]",
             "evaluate.als_iteration_grid=[2]", "evaluate.als_rank=4", "evaluate.als_iterations=2",
             "evaluate.tune_customers=30", "evaluate.als_alpha=1.0"]
    every = als_model(ratings, make_cfg(*grids).evaluate)
    likes = als_model(ratings, make_cfg(*grids, "evaluate.als_min_rating=4").evaluate)
    assert 900 in every.user_ids and 999 in every.item_ids  # type: ignore[operator]
    assert 900 not in likes.user_ids and 999 not in likes.item_ids  # type: ignore[operator]
    liked_items = {i for _, i, r, _ in rows if r >= 4}
    assert set(likes.item_ids.tolist()) == liked_items
    np.testing.assert_array_equal(likes.user_ids, sorted({c for c, _, r, _ in rows if r >= 4}))

    items = ratings.select(S.ITEM_ID).distinct().withColumn(S.GENRES, F.array(F.lit("Drama")))
    data = FitData(spark, ratings, items, lambda: None, lambda: None, lambda blocks: None)  # type: ignore[arg-type,return-value]
    ec, scores = tuned_als(data, make_cfg(*grids).evaluate)
    assert sorted(scores) == ["als_alpha=1.0, als_iterations=2, als_min_rating=0.0, als_rank=4, als_reg=0.1",
                              "als_alpha=1.0, als_iterations=2, als_min_rating=4.0, als_rank=4, als_reg=0.1"]
    best = max(scores, key=lambda k: scores[k])
    assert f"als_min_rating={ec.als_min_rating}" in best
