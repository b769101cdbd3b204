"""Splits of the ratings, seeded and reproducible: the evaluation's held-out part, and every
carve-out of a training part a model tunes itself on (the same functions, so a carve-out is made
exactly as the evaluation's split is).

* **temporal**: per customer with at least ``min_ratings`` ratings, the latest ``holdout_fraction``
  (at least one, never all) or the last ``holdout_last`` ratings by timestamp (ties: the larger item
  id is later) are held out; customers with fewer ratings stay wholly in training.
* **random**: a seeded hash sample per customer instead of the latest.
* **new_items**: every rating of a seeded ``new_item_fraction`` of the items is held out (the
  new-item protocol: nobody rated them in training).
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf

PART = "part"
TRAIN = "train"
TEST = "test"


def new_items(ratings: DataFrame, ec: EvaluateConf) -> DataFrame:
    """(item_id): a seeded ``new_item_fraction`` of the rated items (by a hash of id and seed)."""
    items = ratings.select(S.ITEM_ID).distinct()
    n = items.count()
    hidden = int(np.ceil(ec.new_item_fraction * n))
    return items.orderBy(F.xxhash64(S.ITEM_ID, F.lit(ec.seed)), S.ITEM_ID).limit(hidden)


def split_ratings(ratings: DataFrame, ec: EvaluateConf) -> DataFrame:
    """Ratings with a ``part`` column: ``train`` or ``test`` (see the module doc)."""
    if ec.split == "new_items":
        hidden = new_items(ratings, ec).withColumn("_hidden", F.lit(True))
        return ratings.join(F.broadcast(hidden), S.ITEM_ID, "left").withColumn(
            PART, F.when(F.col("_hidden"), F.lit(TEST)).otherwise(F.lit(TRAIN))).drop("_hidden") \
            .select(*ratings.columns, PART)
    n = F.count(F.lit(1)).over(Window.partitionBy(S.CUSTOMER_ID))
    if ec.split == "temporal":
        order = Window.partitionBy(S.CUSTOMER_ID).orderBy(F.desc(S.TIMESTAMP), F.desc(S.ITEM_ID))
    else:
        order = Window.partitionBy(S.CUSTOMER_ID).orderBy(
            F.xxhash64(S.CUSTOMER_ID, S.ITEM_ID, F.lit(ec.seed)), F.asc(S.ITEM_ID))
    pos = F.row_number().over(order)  # 1 = latest (or first in hash order)
    if ec.holdout_last > 0:
        n_test = F.least(F.lit(ec.holdout_last), n - 1)
    else:
        n_test = F.least(F.greatest(F.lit(1), F.floor(n * F.lit(ec.holdout_fraction)).cast("int")), n - 1)
    return ratings.withColumn("_n", n).withColumn("_pos", pos).withColumn(
        PART, F.when((F.col("_n") >= ec.min_ratings) & (F.col("_pos") <= n_test), F.lit(TEST)).otherwise(F.lit(TRAIN))
    ).drop("_n", "_pos")


def customer_sample(ratings: DataFrame, n: int, seed: int) -> DataFrame:
    """The rows of at most ``n`` customers, a seeded sample (by a hash: the same on every run): the
    ``n`` customers of smallest (hash, id). One pass over ``ratings`` finds the first ``n + 1`` of
    its distinct customers - one more than ``n`` says there are more than ``n`` - instead of a
    count of the distinct customers and then their ordering, two aggregations over every rating."""
    order = (F.xxhash64(S.CUSTOMER_ID, F.lit(seed)), F.col(S.CUSTOMER_ID))
    first = ratings.select(S.CUSTOMER_ID).distinct().orderBy(*order).limit(n + 1).localCheckpoint(eager=True)
    if first.count() <= n:
        return ratings
    return ratings.join(F.broadcast(first.orderBy(*order).limit(n)), S.CUSTOMER_ID, "left_semi")
