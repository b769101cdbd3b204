"""Neighbour models: the paper's scoring (sum over liked items k of sim(k, j) * r_k, top-n, "because
you rated k") over a neighbour set made by a recipe (:mod:`hybridrec.neighbors.recipe`).

* ``item_knn``: rating-based item-item cosine (SAR-like).
* ``visual``: poster neighbours with no category blocking (one block of every item).
* ``paper``: the paper's method - poster neighbours within the configured categories.
* ``paper_rating``: paper blended with rating cosine (``evaluate.blend_weight`` / ``blend_shrinkage``).

Customers left without a candidate get the labelled popularity fallback. With ``candidates`` (the
new-item protocol) only neighbours among them count, and no fallback is served.
"""
from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from hybridrec import schemas as S
from hybridrec.models.base import FitData, Fitted, Recommender, history_of, with_placeholders
from hybridrec.models.coldstart import ColdScorer
from hybridrec.models.scoring import Fallback, NewList, neighbor_matrix, popularity_fallback, score_customers
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.config import RecommendConf


class FittedNeighbors(Fitted):
    """Neighbours fitted on ``data.ratings``, scored the paper's way; subclasses may add a
    cold-start scorer (:meth:`cold_scorer`)."""

    def __init__(self, data: FitData, neighbors: DataFrame, rc: RecommendConf) -> None:
        self.data, self.neighbors, self.rc = data, neighbors, rc

    def cold_scorer(self, candidates: np.ndarray | None) -> ColdScorer | None:
        """The cold-start scorer over the cold items (among ``candidates`` when given); None: none."""
        return None

    def recommend(self, customers: DataFrame | None, n: int, candidates: DataFrame | None = None) -> DataFrame:
        history = history_of(self.data.ratings, customers)
        neighbors = self.neighbors
        fallback: Fallback | None = popularity_fallback(self.data.ratings, self.data.items)
        keep = None
        if candidates is not None:  # only candidates can be recommended: neighbours into them, no fallback
            keep = cast(pd.DataFrame, candidates.toPandas())[S.ITEM_ID].to_numpy(np.int64)
            neighbors = neighbors.join(candidates.withColumnRenamed(S.ITEM_ID, S.NEIGHBOR_ID), S.NEIGHBOR_ID,
                                       "left_semi")
            fallback = None
        nm = neighbor_matrix(neighbors)
        cold = self.cold_scorer(keep)
        if cold is not None:  # the cold-start model ranks for customers without a history too
            history = with_placeholders(history, customers)
        return score_customers(self.data.spark, history, nm, fallback, n, self.rc.threshold, self.rc.partitions,
                               self.rc.batch_rows, cold)

    def recommend_lists(self, n: int, new: DataFrame, k: int) -> DataFrame:
        """Both lists from one scoring pass (:func:`score_batch_lists`): the new list is the top-k
        of the same neighbour scores restricted to ``new``, and of the cold scorer restricted to it."""
        keep = np.sort(cast(pd.DataFrame, new.toPandas())[S.ITEM_ID].to_numpy(np.int64))
        history = history_of(self.data.ratings, None)
        fallback = popularity_fallback(self.data.ratings, self.data.items)
        cold = self.cold_scorer(None)
        fresh = NewList(keep, k, self.cold_scorer(keep) if cold is not None else None)
        return score_customers(self.data.spark, history, neighbor_matrix(self.neighbors), fallback, n,
                               self.rc.threshold, self.rc.partitions, self.rc.batch_rows, cold, fresh)


class NeighborModel(Recommender):
    """A neighbour model: its recipe's neighbours on the fitted ratings."""

    def fit(self, data: FitData) -> Fitted:
        recipe = self.recipe()
        assert recipe is not None
        return FittedNeighbors(data, data.neighbors(recipe), self.conf.recommend)


class ItemKnn(NeighborModel):
    name = "item_knn"

    def recipe(self) -> NeighborRecipe:
        return NeighborRecipe.of(self.conf.similarity, rating_weight=1.0)


class Visual(NeighborModel):
    name = "visual"

    def recipe(self) -> NeighborRecipe:
        return NeighborRecipe.of(self.conf.similarity, rating_weight=0.0, blocks=None)


class Paper(NeighborModel):
    name = "paper"

    def recipe(self) -> NeighborRecipe:
        return NeighborRecipe.of(self.conf.similarity, rating_weight=0.0, blocks=self.conf.similarity.blocks)


class PaperRating(NeighborModel):
    name = "paper_rating"

    def recipe(self) -> NeighborRecipe:
        ec = self.conf.evaluate
        return NeighborRecipe.of(self.conf.similarity, ec.blend_weight, ec.blend_shrinkage, self.conf.similarity.blocks)
