"""The one model interface: every recommender is fitted on one set of ratings and then gives the
top-n of any set of its customers.

    fitted = make_model("hybrid", ModelConf.from_config(cfg)).fit(FitData(...))   # models.registry
    lists = fitted.recommend(customers, n)      # customer_id, rank, item_id, score, because_item_id, source

The recommend stage fits the configured model on every rating and serves its lists; the evaluate
stage fits the same classes on the training part and scores theirs, so what is measured is what is
served. Models never read tables: the stage hands them DataFrames (:class:`FitData`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Blocks, Config, EvaluateConf, RecommendConf, SimilarityConf
from hybridrec.neighbors.recipe import NeighborRecipe, poster_neighbors, recipe_neighbors
from hybridrec.neighbors.ratingsim import rating_neighbors


@dataclass(frozen=True)
class ModelConf:
    """The config sections models read (nothing else of the config reaches them)."""

    similarity: SimilarityConf
    recommend: RecommendConf
    evaluate: EvaluateConf  # als_*, blend_*, seed

    @classmethod
    def from_config(cls, cfg: Config) -> "ModelConf":
        return cls(cfg.similarity, cfg.recommend, cfg.evaluate)


@dataclass(frozen=True)
class StoredNeighbors:
    """The similarity stage's ``item_neighbors`` of this run and the recipe that made them; a stage
    hands them over only when they are valid for the ratings a model is fitted on (the same ratings,
    or a recipe that uses none)."""

    neighbors: DataFrame
    recipe: NeighborRecipe


@dataclass
class FitData:
    """What a model is fitted on: one set of ratings and what the stages know about the items.

    The vector and membership readers are called only by models that need them (a poster search,
    the cold-start model), so a config without embeddings or categories still fits the others."""

    spark: SparkSession
    ratings: DataFrame  # customer_id, item_id, rating, timestamp: the ratings fitted on
    items: DataFrame  # the items table
    embeddings: Callable[[], DataFrame]  # (item_id, vector): the configured extractor's poster embeddings
    vectors: Callable[[], DataFrame]  # (item_id, vector): the similarity search's (similarity.vectors)
    memberships: Callable[[Blocks | None], DataFrame]  # (item_id, block) for a block kind; None = one block
    stored: StoredNeighbors | None = None
    cache: dict[Any, DataFrame] = field(default_factory=dict)  # neighbour sets, shared by the models of one fit
    # (item_id, genre_probs, ...): the classifier's item_categories (None: no classifier to read)
    categories: Callable[[], DataFrame] | None = None

    def neighbors(self, recipe: NeighborRecipe) -> DataFrame:
        """The recipe's neighbours on these ratings: the stored ones when their recipe is the same,
        else computed (each rating or poster neighbour set once per FitData)."""
        if self.stored is not None and self.stored.recipe == recipe:
            return self.stored.neighbors
        rating = image = None
        if recipe.rating is not None:
            rkey: tuple[Any, ...] = ("rating", recipe.rating)
            with_support: tuple[Any, ...] = ("rating", replace(recipe.rating, support=True))
            if rkey not in self.cache and with_support in self.cache:  # the same neighbours, and their support
                rkey = with_support
            if rkey not in self.cache:
                self.cache[rkey] = rating_neighbors(self.ratings, recipe.rating).localCheckpoint(eager=True)
            rating = self.cache[rkey]
        if recipe.image is not None:
            key = ("image", recipe.blocks, recipe.image)
            if key not in self.cache:
                vectors = self.vectors()
                found, _ = poster_neighbors(self.spark, vectors, self.memberships(recipe.blocks), recipe.image)
                self.cache[key] = found.select(S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.SHARED_GENRES, S.RANK) \
                    .localCheckpoint(eager=True)
            image = self.cache[key]
        return recipe_neighbors(recipe, rating, image)

    def on(self, ratings: DataFrame) -> "FitData":
        """The same items and readers over other ``ratings`` (a carve-out): poster neighbour sets are
        shared, rating ones are not, and stored neighbours only when their recipe uses no ratings."""
        stored = self.stored if self.stored is not None and not self.stored.recipe.uses_ratings else None
        return FitData(self.spark, ratings, self.items, self.embeddings, self.vectors, self.memberships, stored,
                       {k: v for k, v in self.cache.items() if k[0] == "image"}, self.categories)


class Fitted(ABC):
    """A fitted model: the top-n of any of its customers."""

    @abstractmethod
    def recommend(self, customers: DataFrame | None, n: int, candidates: DataFrame | None = None) -> DataFrame:
        """Top-n (customer_id, rank, item_id, score, because_item_id, source) of ``customers``
        (customer_id; None = every customer of the fitted ratings), never an item the customer
        rated in the fitted ratings. ``candidates`` (item_id): recommend only those (the new-item
        protocol)."""

    def recommend_lists(self, n: int, new: DataFrame, k: int) -> DataFrame:
        """Every customer's top-n (``list`` = main) and top-k among ``new`` (item_id; ``list`` =
        new, as ``recommend(None, k, candidates=new)`` gives them). Here two passes; a model that
        can do both from one scoring pass overrides it."""
        from hybridrec.models.scoring import LIST, LIST_MAIN, LIST_NEW

        return self.recommend(None, n).withColumn(LIST, F.lit(LIST_MAIN)).unionByName(
            self.recommend(None, k, candidates=new).withColumn(LIST, F.lit(LIST_NEW)))

    def lines(self) -> list[str]:
        """What was fitted, for the stage's report."""
        return []


class Recommender(ABC):
    """A named recommender; ``fit`` returns the fitted model."""

    name: ClassVar[str]

    def __init__(self, conf: ModelConf) -> None:
        self.conf = conf

    @abstractmethod
    def fit(self, data: FitData) -> Fitted:
        """Fit on ``data.ratings`` (nothing else about customers is read)."""

    def recipe(self) -> NeighborRecipe | None:
        """The neighbour recipe of a neighbour model (None: not a neighbour model)."""
        return None


def history_of(ratings: DataFrame, customers: DataFrame | None) -> DataFrame:
    """The ratings of ``customers`` (all of them when None)."""
    rows = ratings.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    return rows if customers is None else rows.join(customers, S.CUSTOMER_ID, "left_semi")


def with_placeholders(history: DataFrame, customers: DataFrame | None) -> DataFrame:
    """``history`` plus one placeholder row (an unknown item, rated 0) for each customer with no
    rating in it, so that models which rank without a history (dense ones, the cold-start model)
    still give them a list (the new-item protocol's customers may have none in training)."""
    if customers is None:
        return history
    absent = customers.join(history, S.CUSTOMER_ID, "left_anti").select(
        S.CUSTOMER_ID, F.lit(-1).cast("long").alias(S.ITEM_ID), F.lit(0.0).alias(S.RATING),
        F.lit(None).cast("timestamp").alias(S.TIMESTAMP))
    return history.unionByName(absent)


def interactions(ratings: DataFrame, min_rating: float) -> DataFrame:
    """The ratings that count as interactions: those >= ``min_rating`` (0: every rating)."""
    return ratings.filter(F.col(S.RATING) >= min_rating) if min_rating > 0 else ratings


def interaction_values(ratings: np.ndarray, min_rating: float) -> np.ndarray:
    """1 for a rating that counts as an interaction, 0 for one that does not (a rated item all
    the same: it is excluded from the lists, it adds nothing to the scores)."""
    return (ratings >= min_rating).astype(np.float64)
