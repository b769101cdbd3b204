"""How a set of item neighbours is made, named once: the blend of rating cosine and poster
similarity within category blocks.

The similarity stage writes the neighbours of the configured recipe (``similarity.*``); every
neighbour model of :mod:`hybridrec.models` states its recipe too, so a model whose recipe equals the
stored one's reuses the stage's output instead of computing it again, and one whose recipe differs
(item-kNN, the paper's poster-only method, ...) computes its own from the same functions.

    s = w * n / (n + shrinkage) * rating_cos + (1 - w) * image_sim

w = ``rating_weight`` (1: ratings only, no poster search; 0: posters only, the paper), n = the
pair's co-raters; a side the pair lacks counts 0.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from hybridrec import schemas as S
from hybridrec.config import Blocks, SimilarityConf
from hybridrec.neighbors.blocked import item_neighbors_with_tasks
from hybridrec.neighbors.kernels import SimilarityParams
from hybridrec.neighbors.ratingsim import RatingSimParams, blend_neighbors


@dataclass(frozen=True)
class NeighborRecipe:
    """What determines a neighbour set besides its inputs. ``image`` is None when the recipe uses
    no posters (w = 1), ``rating`` None when it uses no ratings (w = 0), so two recipes that would
    compute the same neighbours compare equal."""

    rating_weight: float
    top_k: int
    rating_shrinkage: float = 0.0
    blocks: Blocks | None = None  # category blocks of the poster search; None = no blocking (one block)
    image: SimilarityParams | None = None
    rating: RatingSimParams | None = None

    @classmethod
    def of(cls, sim: SimilarityConf, rating_weight: float, rating_shrinkage: float = 0.0,
           blocks: Blocks | None = None) -> "NeighborRecipe":
        """The recipe with ``sim``'s search settings (top-K, measure, block size, rating support)."""
        image = SimilarityParams(sim.measure, sim.top_k, sim.block_size, sim.max_distance, sim.broadcast_max_mb) \
            if rating_weight < 1 else None
        rating = RatingSimParams(sim.top_k, sim.rating_min_support, sim.rating_max_history,
                                 broadcast_max_mb=sim.rating_broadcast_max_mb, support=rating_shrinkage > 0) \
            if rating_weight > 0 else None
        return cls(float(rating_weight), sim.top_k, float(rating_shrinkage) if rating else 0.0,
                   blocks if image else None, image, rating)

    @classmethod
    def configured(cls, sim: SimilarityConf) -> "NeighborRecipe":
        """The similarity stage's recipe (``similarity.rating_weight``, ``rating_shrinkage``, ``blocks``)."""
        return cls.of(sim, sim.rating_weight, sim.rating_shrinkage, sim.blocks)

    @property
    def uses_ratings(self) -> bool:
        return self.rating is not None

    @property
    def uses_posters(self) -> bool:
        return self.image is not None

    @property
    def source(self) -> str:
        """image | blend | rating."""
        return "rating" if not self.uses_posters else "image" if not self.uses_ratings else "blend"


@dataclass(frozen=True)
class PosterSearch:
    """What a poster search covered: items with a vector and a block, blocks, work units."""

    items: int
    blocks: int
    tasks: int


def poster_neighbors(spark: SparkSession, vectors: DataFrame, memberships: DataFrame,
                     params: SimilarityParams) -> tuple[DataFrame, PosterSearch]:
    """Poster neighbours of every item of ``vectors`` (item_id, vector) within its blocks of
    ``memberships`` (item_id, block): (item_id, neighbor_id, similarity, shared_genres, rank)."""
    members = memberships.join(vectors.select(S.ITEM_ID), S.ITEM_ID, "left_semi").localCheckpoint(eager=True)
    items = members.select(S.ITEM_ID).distinct().count()
    blocks = members.select(S.BLOCK).distinct().count()
    neighbors, tasks = item_neighbors_with_tasks(spark, vectors, members, params)
    return neighbors, PosterSearch(items, blocks, tasks)


def recipe_neighbors(recipe: NeighborRecipe, rating: DataFrame | None = None,
                     image: DataFrame | None = None) -> DataFrame:
    """The recipe's neighbours from the rating neighbours ``rating`` (:func:`rating_neighbors` with
    ``recipe.rating``; when it uses ratings) and the poster neighbours ``image``
    (:func:`poster_neighbors` with ``recipe.image``; when it uses posters): (item_id, neighbor_id,
    similarity, shared_genres, rank), each item's top-K by (similarity desc, neighbour id asc)."""
    if not recipe.uses_ratings:
        if image is None:
            raise ValueError("a poster recipe needs its poster neighbours")
        return image
    if rating is None:
        raise ValueError("a rating recipe needs its rating neighbours")
    return blend_neighbors(image, rating, recipe.rating_weight, recipe.rating_shrinkage, recipe.top_k)
