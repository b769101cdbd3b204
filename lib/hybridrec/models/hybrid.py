"""The default recommender (``hybrid``): the similarity stage's neighbours for items with ratings,
and the fitted cold-start model (:mod:`hybridrec.models.coldstart`) for items with fewer than
``recommend.cold_start.max_ratings`` ratings.

* **Warm side**: the configured neighbour recipe (``similarity.rating_weight``, ``rating_shrinkage``,
  ``blocks``) on the fitted ratings - exactly what the similarity stage writes, so the recommend
  stage reuses the stage's output and the evaluation computes the same recipe on its training part.
* **Cold side**: a logistic model fitted on a carve-out of the fitted ratings (a seeded
  ``fit_fraction`` of the rated items hidden), scoring every (customer, cold item) pair; its cf
  feature maps each cold item's content to CF factors learnt from the rated ones. An item with no
  TMDB votes (a brand-new release) is scored by the content-only model of the same fit.
* **Their place in the list**: a cold item takes one of the last ``slots`` positions when its
  probability is at least ``min_lift`` x the base rate; ``min_lift: null`` chooses it from
  ``lift_grid`` on a temporal carve-out of the fitted ratings (:func:`fit_min_lift`): the best
  new-item recall among the lifts that cost at most ``max_ndcg_loss`` of the best nDCG (the list
  without new items is scored as the reference, not as a candidate: exposure is on by default and
  off only when every lift of the grid costs more).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from hybridrec import schemas as S
from hybridrec.config import ColdStartConf, RecommendConf
from hybridrec.datasets.splits import customer_sample
from hybridrec.models.base import FitData, Fitted, Recommender
from hybridrec.models.coldstart import (
    ColdModels, ColdScorer, ContentMap, ItemArrays, MapParams, build_catalogue, fit_cold_model)
from hybridrec.models.neighborhood import FittedNeighbors
from hybridrec.models.scoring import neighbor_matrix, score_batch_lifts
from hybridrec.models.tuning import carve_out
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.runtime.collect import collect_vectors
from hybridrec.runtime.timing import Laps

INF = float("inf")


@dataclass(frozen=True)
class ColdInputs:
    """What every fit of the cold-start model reads besides the ratings, collected once: the items'
    TMDB metadata and genres, and the poster vectors."""

    meta: pd.DataFrame  # item_id, genres, vote_count, vote_average, release_year
    vec_ids: np.ndarray
    vectors: np.ndarray

    @staticmethod
    def collect(items: DataFrame, embeddings: DataFrame) -> "ColdInputs":
        meta = cast(pd.DataFrame, items.select(S.ITEM_ID, S.GENRES, "vote_count", "vote_average",
                                               "release_year").toPandas())
        return ColdInputs(meta, *collect_vectors(embeddings))

    @cached_property
    def arrays(self) -> ItemArrays:
        return ItemArrays.of(self.meta)


@dataclass(frozen=True)
class ColdFit:
    """The cold-start models fitted on some ratings, the content map fitted on all of them (what
    serving maps new items with), and the ratings per item that decide which items are cold."""

    model: ColdModels
    content_map: ContentMap | None
    counts: dict[int, int]

    def scorer(self, inputs: ColdInputs, cs: ColdStartConf, lift: float,
               candidates: np.ndarray | None = None) -> ColdScorer:
        """The scorer over the items with fewer than ``max_ratings`` ratings (only ``candidates``
        among them when given), with their poster neighbours among the rated items."""
        all_ids = inputs.meta[S.ITEM_ID].to_numpy(np.int64)
        cold_ids = np.array([i for i in all_ids if self.counts.get(int(i), 0) < cs.max_ratings], dtype=np.int64)
        if candidates is not None:
            cold_ids = cold_ids[np.isin(cold_ids, candidates)]
        rated = np.fromiter(self.counts, np.int64, len(self.counts))
        cat = build_catalogue(inputs.arrays, cold_ids, rated, inputs.vec_ids, inputs.vectors, cs.image_neighbors,
                              self.content_map)
        return ColdScorer(cat, self.model, cs.slots, lift)


def item_counts(ratings: DataFrame) -> dict[int, int]:
    """Each rated item's number of ratings (one aggregation; items without ratings are absent)."""
    counts = cast(pd.DataFrame, ratings.groupBy(S.ITEM_ID).count().toPandas())
    return dict(zip(counts[S.ITEM_ID].astype(np.int64).tolist(), counts["count"].astype(np.int64).tolist()))


def sample_pool(ratings: DataFrame, cs: ColdStartConf) -> DataFrame:
    """Every rating of the customers that the hybrid's two fits sample (``lift_customers`` and
    ``fit_customers``, the same seed), materialised once: :func:`customer_sample` keeps the n
    customers of smallest hash, so each fit's sample of this pool is its sample of ``ratings``,
    and the fits read every rating once instead of twice."""
    pool = customer_sample(ratings, max(cs.lift_customers, cs.fit_customers), cs.seed)
    return pool if pool is ratings else pool.localCheckpoint(eager=True)


def fit_cold(ratings: DataFrame, inputs: ColdInputs, cs: ColdStartConf, threshold: float,
             counts: dict[int, int] | None = None, pool: DataFrame | None = None) -> ColdFit:
    """The cold-start model fitted on a carve-out of ``ratings`` (a seeded sample of at most
    ``fit_customers`` customers; nothing but these ratings is read). ``counts``: the ratings per
    item that decide which items are cold (default: ``ratings``' own, :func:`item_counts`).
    ``pool``: :func:`sample_pool` of ``ratings``, when the caller has it (the same sample)."""
    fit_rows = cast(pd.DataFrame, customer_sample(ratings if pool is None else pool, cs.fit_customers, cs.seed)
                    .select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING).toPandas())
    mapping = MapParams.configured(cs)
    model = fit_cold_model(fit_rows, inputs.arrays, inputs.vec_ids, inputs.vectors, features=cs.features,
                           fraction=cs.fit_fraction, seed=cs.seed, threshold=threshold, relevant=cs.relevant,
                           neighbours=cs.image_neighbors, l2=cs.l2, max_pairs=cs.fit_pairs, mapping=mapping)
    cmap = mapping.fit(fit_rows, inputs.arrays, inputs.vec_ids, inputs.vectors, threshold=threshold,
                       seed=cs.seed) if "cf" in cs.features else None
    return ColdFit(model, cmap, item_counts(ratings) if counts is None else counts)


@dataclass(frozen=True)
class LiftChoice:
    """``min_lift`` chosen on a temporal carve-out, and what each candidate scored there."""

    lift: float
    ndcg: dict[float, float]  # binary nDCG@top_n of the held-out ratings >= relevant
    new_recall: dict[float, float]  # recall@top_n of those on cold items (few ratings before the held-out ones)
    new_customers: int  # sampled customers with a held-out relevant cold item
    max_loss: float

    def lines(self) -> list[str]:
        terms = "; ".join(f"{lift:g}{' (no new items)' if lift == INF else ''}: nDCG {self.ndcg[lift]:.4f}, "
                          f"new-item recall {self.new_recall[lift]:.4f}" for lift in sorted(self.ndcg))
        off = ["no lift of the grid is within the nDCG loss: new items are not exposed in the main list"] \
            if self.lift == INF else []
        return [f"min_lift carve-out (best new-item recall within {self.max_loss * 100:g}% of the best nDCG, "
                f"{self.new_customers} customers with a new item held out): {terms}", *off]


def choose_lift(ndcg: dict[float, float], new_recall: dict[float, float], max_loss: float,
                candidates: list[float]) -> float:
    """The lift of ``candidates`` with the best new-item recall among those whose nDCG is at least
    (1 - max_loss) x the best nDCG of ``ndcg`` (which also holds ``inf``, the list without new items);
    ties: the larger lift, i.e. fewer cold items. ``inf`` (no exposure) only when no candidate is
    within the loss, or when it is a candidate itself."""
    floor = (1.0 - max_loss) * max(ndcg.values())
    allowed = [lift for lift in candidates if round(ndcg[lift], 12) >= round(floor, 12)]
    if not allowed:
        return INF
    return max(allowed, key=lambda x: (round(new_recall.get(x, 0.0), 12), x))


def carve_counts(counts: dict[int, int], held: DataFrame) -> dict[int, int]:
    """``counts`` (every rating's, per item) less the ratings a carve-out holds out (``held``): what
    each item had before them, over all the customers (an item left with none is absent)."""
    before = dict(counts)
    for i, n in item_counts(held).items():
        before[i] = before.get(i, 0) - n
    return {i: n for i, n in before.items() if n > 0}


def fit_min_lift(data: FitData, recipe: NeighborRecipe, rc: RecommendConf, inputs: ColdInputs,
                 counts: dict[int, int] | None = None, pool: DataFrame | None = None) -> LiftChoice:
    """Choose ``min_lift`` from ``cold_start.lift_grid`` on a temporal carve-out of ``data.ratings``
    (of at most ``lift_customers`` sampled customers): each one's latest ``fit_holdout`` share is
    held out, the hybrid (neighbours and cold model refitted on the rest) scores the sampled
    customers on the driver once - the neighbour scores and the cold items' probabilities do not
    depend on the lift, only where the cold picks go does - and :func:`choose_lift` weighs each
    lift's new-item recall against its nDCG@top_n (held-out ratings >= relevant).

    The carve-out's cold items are those with fewer than ``max_ratings`` ratings before its
    held-out ones, counted over every customer (``counts``: ``data.ratings``' per item, computed
    when not given), not over the sample: the sample's own counts would make almost every item
    cold once the customers are many times ``lift_customers``, which is neither what serving
    sees nor cheap to score. ``pool``: :func:`sample_pool` of ``data.ratings``, when the caller
    has it (the same sample). The warm side's neighbours come from the sample alone, so an item
    with enough ratings overall but none among the sample's training ratings is ranked by neither
    side in the carve-out: the same for every lift, so it lowers every candidate's nDCG alike."""
    cs = rc.cold_start
    # a seeded sample of customers: the carve-out's neighbours are recomputed from these alone, so
    # tuning never repeats the similarity stage's full computation (all of them when there are fewer)
    sample = customer_sample(data.ratings if pool is None else pool, cs.lift_customers, cs.seed)
    carve = carve_out(sample, cs.lift_customers, cs.seed, cs.fit_holdout, cs.relevant)
    nm = neighbor_matrix(data.on(carve.train).neighbors(recipe))
    before = carve_counts(item_counts(data.ratings) if counts is None else counts, carve.held)
    cold = fit_cold(carve.train, inputs, cs, rc.threshold, before).scorer(inputs, cs, lift=1.0)
    rows = carve.rows
    candidates = list(dict.fromkeys(cs.lift_grid))
    lifts = list(dict.fromkeys([*candidates, INF]))  # inf: the list without new items, the nDCG reference
    frames = score_batch_lifts(rows[S.CUSTOMER_ID].to_numpy(np.int64), rows[S.ITEM_ID].to_numpy(np.int64),
                               rows[S.RATING].to_numpy(np.float64), nm, rc.top_n, rc.threshold, None, cold, lifts)
    ndcg = {lift: carve.ndcg(f, rc.top_n) for lift, f in zip(lifts, frames)}
    recall = {lift: carve.recall(f, cold.catalogue.cold_ids, rc.top_n) for lift, f in zip(lifts, frames)}
    new_recall = {lift: r for lift, (r, _) in recall.items()}
    return LiftChoice(choose_lift(ndcg, new_recall, cs.max_ndcg_loss, candidates), ndcg, new_recall,
                      next(iter(recall.values()))[1], cs.max_ndcg_loss)


class FittedHybrid(FittedNeighbors):
    def __init__(self, data: FitData, neighbors: DataFrame, rc: RecommendConf, inputs: ColdInputs, cold: ColdFit,
                 lift: float, choice: LiftChoice | None, fit_seconds: dict[str, float] | None = None) -> None:
        super().__init__(data, neighbors, rc)
        self.inputs, self.cold, self.lift, self.choice = inputs, cold, lift, choice
        self.fit_seconds = fit_seconds or {}
        self._all: ColdScorer | None = None

    def cold_scorer(self, candidates: np.ndarray | None) -> ColdScorer:
        if candidates is not None:
            return self.cold.scorer(self.inputs, self.rc.cold_start, self.lift, candidates)
        if self._all is None:
            self._all = self.cold.scorer(self.inputs, self.rc.cold_start, self.lift)
        return self._all

    def lines(self) -> list[str]:
        cold = self.cold_scorer(None)
        fit_time = ", ".join(f"{k} {v:.1f}s" for k, v in self.fit_seconds.items())
        return [f"{len(cold.catalogue.cold_ids)} cold items (few or no ratings) scored by the cold-start model",
                f"hybrid fit time: {fit_time}"] \
            + cold.model.lines() + (self.cold.content_map.lines() if self.cold.content_map else []) + [
            f"a cold item takes one of the last {cold.slots} slots at >= {cold.lift:g} x the base rate "
            f"({'fitted on a temporal carve-out' if self.choice else 'recommend.cold_start.min_lift'})"] \
            + (self.choice.lines() if self.choice else [])


class Hybrid(Recommender):
    name = "hybrid"

    def recipe(self) -> NeighborRecipe:
        return NeighborRecipe.configured(self.conf.similarity)

    def fit(self, data: FitData) -> Fitted:
        rc = self.conf.recommend
        cs = rc.cold_start
        recipe = self.recipe()
        laps = Laps()
        inputs = ColdInputs.collect(data.items, data.embeddings())
        counts = item_counts(data.ratings)
        pool = sample_pool(data.ratings, cs)
        laps.lap("item metadata, vectors, rating counts and the customer sample")
        choice = fit_min_lift(data, recipe, rc, inputs, counts, pool) if cs.min_lift is None else None
        laps.lap("min_lift carve-out")
        lift = choice.lift if choice else cs.min_lift
        assert lift is not None
        cold = fit_cold(data.ratings, inputs, cs, rc.threshold, counts, pool)
        laps.lap("cold-start fit")
        return FittedHybrid(data, data.neighbors(recipe), rc, inputs, cold, lift, choice, laps.seconds)
