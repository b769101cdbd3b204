"""Choosing a model's settings on a carve-out of the ratings it is fitted on (never the
evaluation's test part): each customer's latest 20% is held out, a seeded sample of customers is
scored on the driver for every candidate, and binary nDCG@10 against their held-out ratings >= 4
picks the winner. Driver memory is bounded by the sample, not by the number of customers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence, TypeVar, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf
from hybridrec.datasets.splits import PART, TEST, TRAIN, customer_sample, split_ratings
from hybridrec.metrics.ranking import ndcg_at, recall_at

HOLDOUT = 0.2
RELEVANT = 4.0
CUT_OFF = 10
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class CarveOut:
    train: DataFrame  # the carve-out's training ratings (customer_id, item_id, rating, timestamp)
    rows: pd.DataFrame  # the sampled customers' training rows (customer_id, item_id, rating, timestamp)
    gains: dict[int, dict[int, float]]  # their held-out relevant items

    def ndcg(self, lists: pd.DataFrame, k: int = CUT_OFF) -> float:
        """Mean binary nDCG@k of ``lists`` (customer_id, rank, item_id) over the sampled customers."""
        if not self.gains:
            return 0.0
        ranked = _ranked(lists)
        return float(np.mean([ndcg_at(ranked.get(c, []), g, k) for c, g in self.gains.items()]))

    def recall(self, lists: pd.DataFrame, among: np.ndarray, k: int = CUT_OFF) -> tuple[float, int]:
        """Mean recall@k of the held-out relevant items in ``among`` (e.g. the cold items), over the
        sampled customers with at least one of them, and how many customers that is."""
        wanted = set(np.asarray(among, np.int64).tolist())
        relevant = {c: {i for i in g if i in wanted} for c, g in self.gains.items()}
        relevant = {c: r for c, r in relevant.items() if r}
        if not relevant:
            return 0.0, 0
        ranked = _ranked(lists)
        return float(np.mean([recall_at(ranked.get(c, []), r, k) for c, r in relevant.items()])), len(relevant)


def _ranked(lists: pd.DataFrame) -> dict[int, list[int]]:
    """customer -> item ids by rank."""
    ordered = lists.sort_values([S.CUSTOMER_ID, S.RANK], kind="stable")
    return {int(c): items for c, items in ordered.groupby(S.CUSTOMER_ID, sort=False)[S.ITEM_ID].agg(list).items()}


def carve_out(ratings: DataFrame, customers: int, seed: int, holdout: float = HOLDOUT,
              relevant: float = RELEVANT) -> CarveOut:
    """Each customer's latest ``holdout`` share held out (customers with >= 5 ratings), a seeded
    sample of at most ``customers`` of those with a held-out rating >= ``relevant``."""
    conf = EvaluateConf(split="temporal", holdout_fraction=holdout, holdout_last=0, min_ratings=5)
    split = split_ratings(ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP), conf) \
        .localCheckpoint(eager=True)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    held = split.filter((F.col(PART) == TEST) & (F.col(S.RATING) >= relevant)).select(S.CUSTOMER_ID, S.ITEM_ID)
    sample = customer_sample(held, customers, seed).select(S.CUSTOMER_ID).distinct()
    rows = cast(pd.DataFrame, train.join(sample, S.CUSTOMER_ID, "left_semi")
                .select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP).toPandas())
    truth = cast(pd.DataFrame, held.join(sample, S.CUSTOMER_ID, "left_semi").toPandas())
    gains = {int(c): {int(i): 1.0 for i in g[S.ITEM_ID]} for c, g in truth.groupby(S.CUSTOMER_ID)}
    return CarveOut(train, rows, gains)


def best_of(scores: dict[K, float]) -> K:
    """The candidate with the best score (ties: the first given)."""
    return max(scores, key=lambda k: round(scores[k], 12))


def coordinate_search(start: dict[str, object], grid: dict[str, Sequence[object]],
                      score: Callable[[dict[str, object]], float]) -> tuple[dict[str, object], dict[str, float]]:
    """One pass of coordinate search: each parameter in turn takes its best grid value with the
    others held at their best so far. Returns the best settings and every score, keyed by the
    settings written out (each candidate is scored once)."""
    best = dict(start)
    seen: dict[str, float] = {}

    def key(params: dict[str, object]) -> str:
        return ", ".join(f"{k}={params[k]}" for k in sorted(params))

    for name, values in grid.items():
        tried: dict[object, float] = {}
        for v in values:
            params = {**best, name: v}
            k = key(params)
            if k not in seen:
                seen[k] = score(params)
            tried[v] = seen[k]
        best[name] = best_of(tried)
    return best, seen
