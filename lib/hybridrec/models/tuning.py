"""Choosing a model's settings on a carve-out of the ratings it is fitted on (never the
evaluation's test part): each customer's latest 20% is held out, a seeded sample of customers is
scored on the driver for every candidate, and binary nDCG@10 against their held-out ratings >= 4
picks the winner. Driver memory is bounded by the sample, not by the number of customers."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Hashable, Sequence, TypeVar, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf
from hybridrec.datasets.splits import PART, TEST, TRAIN, customer_sample, split_ratings
from hybridrec.metrics.ranking import discounts

HOLDOUT = 0.2
RELEVANT = 4.0
CUT_OFF = 10
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class CarveOut:
    train: DataFrame  # the carve-out's training ratings (customer_id, item_id, rating, timestamp)
    rows: pd.DataFrame  # the sampled customers' training rows (customer_id, item_id, rating, timestamp)
    gains: dict[int, dict[int, float]]  # their held-out relevant items
    held: DataFrame  # every held-out rating (customer_id, item_id, rating, timestamp), any value

    @cached_property
    def _truth(self) -> pd.DataFrame:
        """The held-out gains as rows (customer_id, item_id, gain)."""
        pairs = [(c, i, g) for c, items in self.gains.items() for i, g in items.items()]
        return pd.DataFrame(pairs, columns=[S.CUSTOMER_ID, S.ITEM_ID, "_gain"]).astype(
            {S.CUSTOMER_ID: np.int64, S.ITEM_ID: np.int64, "_gain": np.float64})

    def ndcg(self, lists: pd.DataFrame, k: int = CUT_OFF) -> float:
        """Mean nDCG@k of ``lists`` (customer_id, rank, item_id) over the sampled customers (one
        vectorised pass; :func:`hybridrec.metrics.ranking.ndcg_at` per customer is the reference)."""
        if not self.gains:
            return 0.0
        truth = self._truth
        d = discounts(k)
        hits = _top(lists, k).merge(truth, on=[S.CUSTOMER_ID, S.ITEM_ID])
        dcg = (hits["_gain"].to_numpy() * d[hits["_pos"].to_numpy()])
        dcg_by = pd.Series(dcg).groupby(hits[S.CUSTOMER_ID].to_numpy()).sum()
        ideal = truth.sort_values([S.CUSTOMER_ID, "_gain"], ascending=[True, False], kind="stable")
        ipos = ideal.groupby(S.CUSTOMER_ID).cumcount().to_numpy()
        inside = ipos < k
        idcg_by = pd.Series(ideal["_gain"].to_numpy()[inside] * d[ipos[inside]]) \
            .groupby(ideal[S.CUSTOMER_ID].to_numpy()[inside]).sum()
        ratio = (dcg_by.reindex(idcg_by.index, fill_value=0.0) / idcg_by).where(idcg_by > 0, 0.0)
        return float(ratio.sum() / len(self.gains))

    def recall(self, lists: pd.DataFrame, among: np.ndarray, k: int = CUT_OFF) -> tuple[float, int]:
        """Mean recall@k of the held-out relevant items in ``among`` (e.g. the cold items), over the
        sampled customers with at least one of them, and how many customers that is."""
        truth = self._truth
        relevant = truth[truth[S.ITEM_ID].isin(np.asarray(among, np.int64))]
        if relevant.empty:
            return 0.0, 0
        sizes = relevant.groupby(S.CUSTOMER_ID).size()
        hits = _top(lists, k).merge(relevant, on=[S.CUSTOMER_ID, S.ITEM_ID]).groupby(S.CUSTOMER_ID).size()
        return float((hits.reindex(sizes.index, fill_value=0) / sizes).mean()), len(sizes)


def _top(lists: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each customer's first k rows by rank: (customer_id, item_id, _pos) with _pos 0-based."""
    ordered = lists.sort_values([S.CUSTOMER_ID, S.RANK], kind="stable")
    pos = ordered.groupby(S.CUSTOMER_ID).cumcount().to_numpy()
    keep = pos < k
    return pd.DataFrame({S.CUSTOMER_ID: ordered[S.CUSTOMER_ID].to_numpy(np.int64)[keep],
                         S.ITEM_ID: ordered[S.ITEM_ID].to_numpy(np.int64)[keep], "_pos": pos[keep]})


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
    return CarveOut(train, rows, gains, split.filter(F.col(PART) == TEST).drop(PART))


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
