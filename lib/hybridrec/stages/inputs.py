"""What the recommend and evaluate stages hand a model (:class:`hybridrec.models.base.FitData`):
the items, lazy readers of the feature tables, and this run's similarity-stage neighbours."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Blocks, Config
from hybridrec.features.vectors import embedding_vectors, item_vectors, memberships
from hybridrec.models.base import FitData, StoredNeighbors
from hybridrec.neighbors.recipe import NeighborRecipe
from hybridrec.errors import UserError
from hybridrec.storage.tables import ensure_table, table_exists


def fit_data(spark: SparkSession, cfg: Config, ratings: DataFrame, stored: StoredNeighbors | None = None) -> FitData:
    """``ratings`` with the configured feature tables (read only by the models that need them)."""
    def vectors() -> DataFrame:
        return item_vectors(spark, cfg.storage, cfg.embed, cfg.similarity.vectors)

    def blocks_of(blocks: Blocks | None) -> DataFrame:
        return memberships(spark, cfg.storage, blocks, vectors() if blocks is None else None)

    def categories() -> DataFrame:
        if not table_exists(spark, cfg.storage, S.ITEM_CATEGORIES):
            raise UserError("recommend.ranker.features: predicted_affinity needs the item_categories table: run the "
                            "train stage first, or leave predicted_affinity out of the features")
        return spark.table(cfg.storage.table(S.ITEM_CATEGORIES))

    return FitData(spark, ratings, spark.table(ensure_table(spark, cfg.storage, S.ITEMS)),
                   lambda: embedding_vectors(spark, cfg.storage, cfg.embed), vectors, blocks_of, stored,
                   categories=categories)


def run_neighbors(spark: SparkSession, cfg: Config) -> StoredNeighbors | None:
    """This run's ``item_neighbors`` (None when the similarity stage wrote none for it), made by the
    configured recipe."""
    neighbors = spark.table(ensure_table(spark, cfg.storage, S.ITEM_NEIGHBORS)).filter(F.col(S.RUN_ID) == cfg.run_id)
    if neighbors.limit(1).count() == 0:
        return None
    return StoredNeighbors(neighbors, NeighborRecipe.configured(cfg.similarity))
