"""Similarity stage: neighbours of every item by the configured recipe (paper §3.2: poster
similarity within the predicted categories, blended with rating cosine per
``similarity.rating_weight``) -> ``item_neighbors``, this run's rows replaced in one commit."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.features.vectors import item_vectors, memberships
from hybridrec.neighbors.ratingsim import search_rating_neighbors
from hybridrec.neighbors.recipe import NeighborRecipe, poster_neighbors, recipe_neighbors
from hybridrec.storage.tables import ensure_table, replace_rows, sql_str


@dataclass
class SimilarityReport:
    run_id: str
    items: int = 0
    blocks: int = 0
    tasks: int = 0  # units of work: item chunks (broadcast path) or sub-block pairs (join path)
    rows: int = 0
    items_with_neighbors: int = 0
    source: str = "image"  # image | blend | rating

    @property
    def rows_in(self) -> int:
        return self.items

    @property
    def rows_out(self) -> int:
        return self.rows

    def lines(self) -> list[str]:
        if self.source == "rating":
            return [f"rating neighbours only (similarity.rating_weight 1): {self.rows} neighbour rows for "
                    f"{self.items_with_neighbors} of {self.items} rated items"]
        return [f"{self.items} items in {self.blocks} category blocks, {self.tasks} similarity work units; "
                f"{self.rows} neighbour rows for {self.items_with_neighbors} items"
                + ("; blended with rating cosine" if self.source == "blend" else "")]


def run_similarity(spark: SparkSession, cfg: Config) -> SimilarityReport:
    """The configured recipe's neighbours of every item -> ``item_neighbors`` (this run's rows)."""
    recipe = NeighborRecipe.configured(cfg.similarity)
    report = SimilarityReport(run_id=cfg.run_id, source=recipe.source)
    out = ensure_table(spark, cfg.storage, S.ITEM_NEIGHBORS)
    image = rating = None
    if recipe.image is not None:
        vectors = item_vectors(spark, cfg.storage, cfg.embed, cfg.similarity.vectors)
        image, search = poster_neighbors(spark, vectors, memberships(spark, cfg.storage, recipe.blocks, vectors),
                                         recipe.image)
        report.items, report.blocks, report.tasks = search.items, search.blocks, search.tasks
    if recipe.rating is not None:
        ratings = spark.table(ensure_table(spark, cfg.storage, S.RATINGS))
        found = search_rating_neighbors(ratings, recipe.rating)
        rating = found.neighbors
        if image is None:
            report.items = found.rated_items if found.rated_items is not None \
                else ratings.select(S.ITEM_ID).distinct().count()
    neighbors = recipe_neighbors(recipe, rating, image).select(
        S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, F.col(S.RANK).cast("int").alias(S.RANK), S.SHARED_GENRES,
        F.lit(cfg.run_id).alias(S.RUN_ID)).persist()
    report.rows = neighbors.count()
    report.items_with_neighbors = neighbors.select(S.ITEM_ID).distinct().count()
    replace_rows(spark, out, neighbors, f"{S.RUN_ID} = {sql_str(cfg.run_id)}",
                 compare_cols=[S.ITEM_ID, S.NEIGHBOR_ID, S.SIMILARITY, S.RANK, S.SHARED_GENRES])
    neighbors.unpersist()
    return report
