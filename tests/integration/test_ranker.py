"""The ranked model on Spark: its sources equal numpy's, and the executors' lists equal one driver
batch of the same fitted sources and ranker."""
from __future__ import annotations

import datetime as dt
import random
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.models.base import FitData, ModelConf
from hybridrec.models.ease import ease_weights
from hybridrec.models.ranker import FittedRanked, ItemInputs, _batch_arrays, fit_sources, rank_batch
from hybridrec.models.registry import make_model
from hybridrec.neighbors.ratingsim import RatingSimParams
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.testing.references import reference_rating_neighbors
from tests.integration.test_evaluate import as_df

GENRES = ["Action", "Comedy", "Drama"]


def _ratings(seed: int, customers: int = 70, items: int = 30) -> list[tuple[int, int, float, dt.datetime]]:
    """Customers with 5-14 ratings over 60 days; even items are liked more by even customers."""
    rng = random.Random(seed)
    base = dt.datetime(2024, 1, 1)
    rows = []
    for c in range(1, customers + 1):
        for i in rng.sample(range(100, 100 + items), rng.randint(5, 14)):
            liked = (c % 2) == (i % 2)
            rows.append((c, i, float(rng.randint(3, 5) if liked else rng.randint(1, 3)),
                         base + dt.timedelta(days=rng.randint(0, 60), seconds=rng.randint(0, 40))))
    return rows


def _fit_data(spark: SparkSession, ratings: DataFrame, n_items: int = 32) -> FitData:
    rng = np.random.default_rng(0)
    ids = list(range(100, 100 + n_items))  # two items nobody rated
    items = spark.createDataFrame(pd.DataFrame({
        S.ITEM_ID: ids, S.GENRES: [[GENRES[i % 3]] for i in ids],
        "release_date": [dt.date(2000 + i % 20, 1 + i % 12, 1) if i % 7 else None for i in ids]}),
        f"{S.ITEM_ID} long, {S.GENRES} array<string>, release_date date")
    vectors = spark.createDataFrame([(i, rng.normal(size=8).astype(float).tolist()) for i in ids[:-3]],
                                    f"{S.ITEM_ID} long, {S.VECTOR} array<double>")
    categories = spark.createDataFrame([(i, {g: float(rng.random()) for g in GENRES}) for i in ids],
                                       f"{S.ITEM_ID} long, {S.GENRE_PROBS} map<string, float>")
    return FitData(spark, ratings, items, lambda: vectors, lambda: vectors, lambda blocks: None,  # type: ignore[arg-type,return-value]
                   categories=lambda: categories)


def test_sources_equal_numpy(spark: SparkSession, make_cfg: Callable[..., Config]) -> None:
    rows = _ratings(1)
    data = _fit_data(spark, as_df(spark, rows).repartition(4))
    cfg = make_cfg("evaluate.ease_items=20", "recommend.ranker.factors=4", "recommend.ranker.history_days=30",
                   "recommend.ranker.recent_days=7")
    rk, ec = cfg.recommend.ranker, cfg.evaluate
    recipe = NeighborRecipe.of(cfg.similarity, rating_weight=1.0)
    src = fit_sources(data, ItemInputs.collect(data, rk.features), recipe, ec, rk, 5.0, 0.0, 3.0)
    ids = src.item_ids
    assert ids.tolist() == list(range(100, 132))
    pdf = pd.DataFrame(rows, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP])
    np.testing.assert_array_equal(src.popularity, pdf[S.ITEM_ID].value_counts().reindex(ids, fill_value=0))
    liked = pdf[pdf[S.RATING] > 3.0][S.ITEM_ID].value_counts().reindex(ids, fill_value=0).to_numpy()
    overall = (pdf[S.RATING] > 3.0).mean()
    np.testing.assert_allclose(src.like_share, (liked + 10 * overall) / (src.popularity + 10))
    days = pdf[S.TIMESTAMP].to_numpy("datetime64[D]").astype(np.int64)
    last = days.max()
    for d in (last - 40, last - 29, last - 10, last):  # cumulative counts, older days clipped to the first
        row = src.daily[min(max(d - src.day0 + 1, 0), src.daily.shape[0] - 1)]
        want = pdf[days <= d][S.ITEM_ID].value_counts().reindex(ids, fill_value=0).to_numpy() if d >= src.day0 \
            else np.zeros(len(ids))  # before the first day: nothing (older ratings count on the first day)
        np.testing.assert_array_equal(row, want, err_msg=str(d))
    # EASE and PureSVD over the 20 most-rated items (ties: smaller id)
    counts = pdf.groupby(S.ITEM_ID)[S.CUSTOMER_ID].nunique().reset_index().sort_values(
        [S.CUSTOMER_ID, S.ITEM_ID], ascending=[False, True])
    top = np.sort(counts[S.ITEM_ID].head(20).to_numpy())
    np.testing.assert_array_equal(ids[src.ease_pos], top)
    x = np.zeros((71, len(top)))
    for c, i in zip(pdf[S.CUSTOMER_ID], pdf[S.ITEM_ID]):
        if i in top:
            x[c, np.searchsorted(top, i)] = 1.0
    gram = x.T @ x
    np.testing.assert_allclose(src.ease_b, ease_weights(gram, 5.0), rtol=1e-4, atol=1e-5)
    w, v = np.linalg.eigh(gram)
    lead = v[:, np.argsort(-w)[:4]]
    np.testing.assert_allclose(src.svd_v @ src.svd_v.T, lead @ lead.T, atol=1e-4)  # the same subspace
    d = np.sqrt(np.diag(gram))
    cos = gram / np.outer(d, d)
    np.fill_diagonal(cos, 0.0)
    np.testing.assert_allclose(src.cosine, cos, atol=1e-6)
    # the neighbours: rating cosine, as the reference computes it
    want = reference_rating_neighbors([(c, i, r, t.timestamp()) for c, i, r, t in rows],
                                      RatingSimParams(cfg.similarity.top_k, cfg.similarity.rating_min_support,
                                                      cfg.similarity.rating_max_history))
    knn = src.knn.csr()
    for item, lst in want.items():
        p = np.searchsorted(ids, item)
        got = {int(ids[j]): knn[p, j] for j in knn[p].indices}
        assert got == pytest.approx({o: s for o, s, _ in lst}, rel=1e-9), item
    # item features: genres, release days, predicted probabilities, centred posters (none for 3 items)
    assert src.genres.sum() == 32 and np.isnan(src.release_day).sum() == sum(1 for i in ids if i % 7 == 0)
    assert (src.predicted > 0).all()
    norms = np.linalg.norm(src.posters, axis=1)
    np.testing.assert_allclose(norms[:-3], 1.0, rtol=1e-5)
    assert (norms[-3:] == 0).all()


@pytest.mark.stage
def test_ranked_lists_on_the_executors_equal_one_driver_batch(spark: SparkSession,
                                                              make_cfg: Callable[..., Config]) -> None:
    rows = _ratings(2, customers=90)
    data = _fit_data(spark, as_df(spark, rows))
    cfg = make_cfg("evaluate.ease_items=25", "evaluate.ease_lambda=10", "recommend.partitions=3",
                   "recommend.batch_rows=40", "recommend.ranker.candidates=8", "recommend.ranker.rank_depth=10",
                   "recommend.ranker.factors=4", "recommend.ranker.min_leaf=5", "recommend.ranker.rounds=40",
                   "recommend.ranker.early_stopping=10")
    fitted = make_model("ranked", ModelConf.from_config(cfg)).fit(data)
    assert isinstance(fitted, FittedRanked)
    lines = fitted.lines()
    assert any("feature importance" in ln for ln in lines) and any("chosen by cross-validation" in ln for ln in lines)
    assert fitted.fit.customers >= 2 and fitted.fit.rounds >= 1
    n = 5
    got = fitted.recommend(None, n).toPandas().sort_values([S.CUSTOMER_ID, S.RANK]).reset_index(drop=True)
    pdf = pd.DataFrame(rows, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP])
    rk, threshold = cfg.recommend.ranker, cfg.recommend.threshold
    want = rank_batch(*_batch_arrays(pdf), fitted.sources, fitted.fit, rk, threshold, n) \
        .sort_values([S.CUSTOMER_ID, S.RANK]).reset_index(drop=True)
    assert len(got) == n * pdf[S.CUSTOMER_ID].nunique()
    assert got[S.ITEM_ID].tolist() == want[S.ITEM_ID].tolist()
    np.testing.assert_allclose(got[S.SCORE].to_numpy(), want[S.SCORE].to_numpy(), rtol=1e-9)
    assert got[S.BECAUSE_ITEM_ID].fillna(-1).tolist() == want[S.BECAUSE_ITEM_ID].fillna(-1).tolist()
    assert (got[S.SOURCE] == "ranked").all()
    rated = set(zip(pdf[S.CUSTOMER_ID], pdf[S.ITEM_ID]))
    assert not rated & set(zip(got[S.CUSTOMER_ID], got[S.ITEM_ID]))
    # the new-item protocol: only candidates, and a customer without ratings still gets a list
    cands = spark.createDataFrame([(i,) for i in (100, 101, 130, 131)], f"{S.ITEM_ID} long")
    who = spark.createDataFrame([(1,), (2,), (999,)], f"{S.CUSTOMER_ID} long")
    new = fitted.recommend(who, 3, candidates=cands).toPandas()
    assert set(new[S.ITEM_ID]) <= {100, 101, 130, 131} and set(new[S.CUSTOMER_ID]) == {1, 2, 999}
    assert len(new[new[S.CUSTOMER_ID] == 999]) == 3
