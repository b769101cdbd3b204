"""The genre classifier's data side, TensorFlow-free: labels, the seeded split, input moments,
and the per-item categories written after training.

The split is stratified as far as multi-label data allows: each labelled item's stratum is its
rarest modelled genre (items with none of them form one stratum), and inside a stratum items are
ordered by a seeded hash, so the first ``test_fraction`` go to test and the next
``val_fraction`` to validation. Folds for cross-validation are dealt round-robin in that order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from hybridrec import schemas as S
from hybridrec.errors import UserError

LABELS = "labels"
STRATUM = "_stratum"
TRAIN, VAL, TEST, UNLABELLED = "train", "val", "test", "unlabelled"


def genre_counts(items: DataFrame) -> dict[str, int]:
    """Labelled items per genre (``items`` has ``genres``)."""
    rows = items.select(F.explode(S.GENRES).alias(S.GENRE)).groupBy(S.GENRE).count().collect()
    return {r[S.GENRE]: int(r["count"]) for r in rows}


def choose_genres(counts: dict[str, int], configured: Sequence[str], min_items: int) -> list[str]:
    """The modelled genres: the configured ones (each must exist), else every genre with at
    least ``min_items`` labelled items; most frequent first."""
    if configured:
        missing = [g for g in configured if g not in counts]
        if missing:
            raise UserError(f"config key 'train.genres': no labelled item has genre(s) {', '.join(missing)}; "
                            f"known: {', '.join(sorted(counts))}")
        chosen = list(configured)
    else:
        chosen = [g for g, n in counts.items() if n >= min_items]
        if not chosen:
            raise UserError(f"no genre has train.min_items={min_items} labelled items with a poster vector "
                            f"(largest: {max(counts.values(), default=0)}); lower train.min_items or set train.genres")
    return sorted(chosen, key=lambda g: (-counts.get(g, 0), g))


def labelled_items(items: DataFrame, vectors: DataFrame, genres: Sequence[str]) -> DataFrame:
    """(item_id, genres, vector, labels, labelled): every item with a vector; ``labels`` is the
    multi-hot over ``genres`` (all zero for an item whose labels are all outside them)."""
    labels = F.array(*[F.array_contains(S.GENRES, g).cast("float") for g in genres])
    return vectors.join(items.select(S.ITEM_ID, S.GENRES), S.ITEM_ID, "inner").select(
        S.ITEM_ID, S.GENRES, S.VECTOR, labels.alias(LABELS), (F.size(S.GENRES) > 0).alias(S.LABELLED))


def _stratum(genres_rarest_first: Sequence[str]) -> Column:
    expr = F.lit("-")
    for i, g in reversed(list(enumerate(genres_rarest_first))):
        expr = F.when(F.array_contains(S.GENRES, g), F.lit(g)).otherwise(expr)
    return expr


def assign_splits(df: DataFrame, genres: Sequence[str], counts: dict[str, int], test_fraction: float,
                  val_fraction: float, seed: int, folds: int = 0) -> DataFrame:
    """Add ``split`` (train / val / test / unlabelled) and ``fold`` (0..folds-1, or null) to a
    frame with ``item_id``, ``genres`` and ``labelled``."""
    rarest_first = sorted(genres, key=lambda g: (counts.get(g, 0), g))
    w = Window.partitionBy(STRATUM).orderBy(F.xxhash64(F.lit(seed), S.ITEM_ID), S.ITEM_ID)
    n = F.count(F.lit(1)).over(Window.partitionBy(STRATUM))
    pos = F.row_number().over(w)
    n_test = F.round(n * test_fraction)
    n_val = F.round(n * (test_fraction + val_fraction))
    labelled = df.filter(F.col(S.LABELLED)).withColumn(STRATUM, _stratum(rarest_first)).select(
        "*",
        F.when(pos <= n_test, TEST).when(pos <= n_val, VAL).otherwise(TRAIN).alias(S.SPLIT),
        (((pos - 1) % folds).cast("int") if folds > 1 else F.lit(None).cast("int")).alias(S.FOLD),
    ).drop(STRATUM)
    unlabelled = df.filter(~F.col(S.LABELLED)).select("*", F.lit(UNLABELLED).alias(S.SPLIT),
                                                    F.lit(None).cast("int").alias(S.FOLD))
    return labelled.unionByName(unlabelled)


def vector_moments(df: DataFrame, column: str = S.VECTOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and (population) variance of an array column, computed by executors."""
    rows = df.select(F.posexplode(column).alias("d", "x")).groupBy("d").agg(
        F.avg("x").alias("m"), F.var_pop("x").alias("v")).collect()
    dims = max(r["d"] for r in rows) + 1
    mean, var = np.zeros(dims, np.float32), np.ones(dims, np.float32)
    for r in rows:
        mean[r["d"]], var[r["d"]] = r["m"], r["v"]
    return mean, var


def categories(predictions: DataFrame, genres: Sequence[str], thresholds: Sequence[float]) -> DataFrame:
    """``predictions`` (item_id, probs array in ``genres`` order, ...) -> ``genre_probs`` map and
    ``predicted_genres``: the genres at or above their tuned threshold, and always at least the one
    with the highest probability relative to its threshold (so every item sits in a block)."""
    probs = F.col("probs")
    ratio = [probs[i] / F.lit(max(t, 1e-6)) for i, t in enumerate(thresholds)]
    best = F.greatest(*ratio) if len(ratio) > 1 else ratio[0]
    chosen = F.filter(F.array(*[F.when((probs[i] >= F.lit(t)) | (ratio[i] == best), F.lit(g))
                                for i, (g, t) in enumerate(zip(genres, thresholds))]), lambda x: x.isNotNull())
    return predictions.select(
        "*",
        F.map_from_arrays(F.array(*[F.lit(g) for g in genres]), probs).alias(S.GENRE_PROBS),
        chosen.alias(S.PREDICTED_GENRES),
    )
