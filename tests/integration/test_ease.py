"""EASE on Spark: the Gram matrix equals numpy's X^T X, and the served lists equal a numpy
transcription of the model (closed form, top-K positive weights, sum over the customer's items)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.models.base import FitData, ModelConf
from hybridrec.models.ease import gram_matrix, top_items
from hybridrec.models.registry import make_model
from tests.integration.test_evaluate import as_df, random_ratings
from tests.unit.test_ease import ridge_reference


def test_gram_matrix_equals_numpy(spark: SparkSession) -> None:
    rows = random_ratings(7, customers=40, items=20)
    ratings = as_df(spark, rows).repartition(5)
    ids = top_items(ratings, 15)
    pdf = pd.DataFrame(rows, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP])
    counts = pdf.groupby(S.ITEM_ID)[S.CUSTOMER_ID].nunique().reset_index().sort_values(
        [S.CUSTOMER_ID, S.ITEM_ID], ascending=[False, True])
    assert list(ids) == sorted(counts[S.ITEM_ID].head(15))
    x = np.zeros((41, len(ids)))
    for c, i in zip(pdf[S.CUSTOMER_ID], pdf[S.ITEM_ID]):
        if i in ids:
            x[c, np.searchsorted(ids, i)] = 1.0
    np.testing.assert_allclose(gram_matrix(ratings, ids), x.T @ x)
    # a pair given twice still counts once, and chunks of a few rows (many per partition) add up the same
    twice = as_df(spark, rows + rows[:9]).repartition(3)
    np.testing.assert_allclose(gram_matrix(twice, ids, max_rows=7), x.T @ x)


@pytest.mark.parametrize("floor", [0.0, 4.0])
def test_ease_lists_equal_the_numpy_model(spark: SparkSession, make_cfg: Callable[..., Config], floor: float) -> None:
    """``floor``: the smallest rating that is an interaction (0: every rating; 4: the likes only,
    the other rated items still excluded from the lists)."""
    rows = random_ratings(8, customers=40, items=18)
    ratings = as_df(spark, rows)
    lam, top_k, n = 3.0, 5, 4
    cfg = make_cfg("evaluate.ease_items=12", f"evaluate.ease_lambda={lam}", f"evaluate.ease_top_k={top_k}",
                   f"evaluate.ease_min_rating={floor}", "recommend.partitions=3")
    items = ratings.select(S.ITEM_ID).distinct().withColumn(S.GENRES, F.array(F.lit("Drama")))
    data = FitData(spark, ratings, items, lambda: None, lambda: None, lambda blocks: None)  # type: ignore[arg-type,return-value]
    got = make_model("ease", ModelConf.from_config(cfg)).fit(data).recommend(None, n).toPandas()

    pdf = pd.DataFrame(rows, columns=[S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP])
    inter = pdf[pdf[S.RATING] >= floor]
    assert len(inter) < len(pdf) or floor == 0
    counts = pdf.groupby(S.ITEM_ID)[S.CUSTOMER_ID].nunique().reset_index()  # the most rated, by every rating
    ids = np.sort(counts.sort_values([S.CUSTOMER_ID, S.ITEM_ID], ascending=[False, True])[S.ITEM_ID].head(12)
                  .to_numpy())
    customers = sorted(pdf[S.CUSTOMER_ID].unique())
    x = np.zeros((len(customers), len(ids)))
    for c, i in zip(inter[S.CUSTOMER_ID], inter[S.ITEM_ID]):
        if i in ids:
            x[customers.index(c), np.searchsorted(ids, i)] = 1.0
    b = ridge_reference(x, lam)  # the model's definition, column by column
    kept = np.zeros_like(b)
    for k in range(len(ids)):
        mag = np.abs(b[k])
        mag[k] = -1.0
        for j in np.argsort(-mag, kind="stable")[:top_k]:
            kept[k, j] = b[k, j]
    checked = 0
    for row, c in enumerate(customers):
        rated = set(pdf.loc[pdf[S.CUSTOMER_ID] == c, S.ITEM_ID])
        scores = {int(ids[j]): float(kept[np.nonzero(x[row])[0], j].sum()) for j in range(len(ids))}
        touched = {int(ids[j]) for j in range(len(ids)) if np.any(kept[np.nonzero(x[row])[0], j] != 0)}
        cand = sorted(((s, i) for i, s in scores.items() if i not in rated and i in touched and s != 0),
                      key=lambda t: (-t[0], t[1]))
        mine = got[(got[S.CUSTOMER_ID] == c) & (got[S.SOURCE] == "neighbors")].sort_values(S.RANK)
        want = cand[:n]
        assert mine[S.ITEM_ID].tolist() == [i for _, i in want], c
        np.testing.assert_allclose(mine[S.SCORE].to_numpy(), [s for s, _ in want], rtol=1e-6)
        checked += bool(want)
    assert checked > 20


def test_one_gram_serves_every_carve_out_of_the_same_ratings(spark: SparkSession,
                                                             make_cfg: Callable[..., Config]) -> None:
    """The ranker fits its sources on a carve-out of another sample than EASE's tuning: their
    training parts are the same ratings, so the Grams EASE's tuning built serve it. The choice
    covers every (interaction threshold, lambda) pair and picks the best."""
    from hybridrec.models.ease import ItemGram, choose_ease
    from hybridrec.models.tuning import carve_out

    rows = random_ratings(9, customers=60, items=20)
    ratings = as_df(spark, rows)
    ec = make_cfg("evaluate.ease_items=12", "evaluate.tune_customers=30").evaluate
    items = ratings.select(S.ITEM_ID).distinct().withColumn(S.GENRES, F.array(F.lit("Drama")))
    data = FitData(spark, ratings, items, lambda: None, lambda: None, lambda blocks: None)  # type: ignore[arg-type,return-value]
    other = carve_out(ratings, 11, 5)  # another sample size and seed
    own = carve_out(ratings, ec.tune_customers, ec.seed)
    assert set(other.gains) != set(own.gains)  # really other customers sampled
    choice = choose_ease(data, ec)
    assert set(choice.scores) == {(m, lam) for m in ec.ease_min_ratings for lam in ec.ease_lambdas}
    assert choice.scores[(choice.min_rating, choice.lam)] == max(choice.scores.values())
    for m in ec.ease_min_ratings:
        given = ItemGram.of(other.train, ec.ease_items, m)
        np.testing.assert_array_equal(given.ids, choice.train_grams[m].ids)
        np.testing.assert_array_equal(given.gram, choice.train_grams[m].gram)
    assert not np.array_equal(choice.train_grams[0.0].gram, choice.train_grams[4.0].gram)
