"""The feature tables as the stages read them: the configured extractor's poster embeddings, the
classifier's 1024-d features and its predicted categories, and the category memberships the
similarity search blocks on."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Blocks, EmbedConf, StorageConf, Vectors
from hybridrec.errors import UserError
from hybridrec.features.backbones import ModelSpec
from hybridrec.storage.tables import ensure_table, table_exists


def embedding_vectors(spark: SparkSession, storage: StorageConf, embed: EmbedConf) -> DataFrame:
    """(item_id, vector): the poster embeddings of the configured extractor."""
    emb = ensure_table(spark, storage, S.ITEM_EMBEDDINGS)
    key = ModelSpec.from_conf(embed).key
    return spark.table(emb).filter(F.col(S.MODEL_KEY) == key).select(S.ITEM_ID, S.VECTOR)


def categories_table(spark: SparkSession, storage: StorageConf) -> str:
    """The classifier's ``item_categories`` (one line naming the fix when the train stage has not run)."""
    if not table_exists(spark, storage, S.ITEM_CATEGORIES):
        raise UserError("similarity.blocks=predicted and similarity.vectors=features need the item_categories table: "
                        "run the train stage first, or set similarity.blocks=labelled and similarity.vectors=embeddings")
    return storage.table(S.ITEM_CATEGORIES)


def item_vectors(spark: SparkSession, storage: StorageConf, embed: EmbedConf, vectors: Vectors) -> DataFrame:
    """(item_id, vector): the configured extractor's poster embeddings (``embeddings``), or the
    classifier's 1024-d penultimate activations (``features``, the paper's "feature maps")."""
    if vectors == "features":
        return spark.table(categories_table(spark, storage)).select(S.ITEM_ID, F.col(S.FEATURES).alias(S.VECTOR))
    return embedding_vectors(spark, storage, embed)


def memberships(spark: SparkSession, storage: StorageConf, blocks: Blocks | None,
                vectors: DataFrame | None = None) -> DataFrame:
    """(item_id, block): ``labelled`` (TMDB's genres), ``predicted`` (the classifier's), or ``None``
    (one block of every item of ``vectors``: no category blocking)."""
    if blocks == "labelled":
        return spark.table(ensure_table(spark, storage, S.ITEMS)).select(S.ITEM_ID, F.explode(S.GENRES).alias(S.BLOCK))
    if blocks == "predicted":
        return spark.table(categories_table(spark, storage)).select(
            S.ITEM_ID, F.explode(S.PREDICTED_GENRES).alias(S.BLOCK))
    if vectors is None:
        raise ValueError("memberships without blocks need the vectors whose items form the one block")
    return vectors.select(S.ITEM_ID, F.lit(S.ALL_ITEMS_BLOCK).alias(S.BLOCK))
