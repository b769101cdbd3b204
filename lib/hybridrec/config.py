"""Typed configuration: YAML per environment plus ``--set key=value`` overrides.

Every job takes ``--conf FILE`` (default ``conf/local.yaml``) and any number of
``--set section.key=value``. Unknown or mistyped keys are errors that name the key (and
suggest the closest valid one). Secrets are *references* (an environment-variable name or a
Databricks secret scope/key), never values; :func:`resolve_secret` reads them at the point of
use and nothing here ever prints them.

**One source of defaults.** The dataclass defaults below *are* the embedded default: they equal
the shipped ``conf/local.yaml`` key for key (a test checks it), so a config file only says how an
environment differs. Keys with a fixed set of values are ``Literal`` types; each section checks
its own values when it is built (``__post_init__``) and names the key it rejects.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from hybridrec.errors import UserError

DEFAULT_CONF = Path("conf") / "local.yaml"

# ---- the fixed sets of values ------------------------------------------------------------
SparkMode = Literal["local", "cluster"]  # local: embedded local[*] + Delta; cluster: take the provided session
RatingsFormat = Literal["auto", "csv", "parquet"]
Resize = Literal["pad", "crop"]  # pad (aspect-preserving, mean-colour border) | crop (centre crop)
Pooling = Literal["avg", "max", "flatten"]  # global pooling of a 4-D activation
Preprocess = Literal["auto", "caffe", "tf", "torch", "none"]  # auto = the backbone's own
Optimizer = Literal["sgd", "adam"]  # sgd (with momentum, the paper's) | adam
Vectors = Literal["embeddings", "features"]
Blocks = Literal["labelled", "predicted"]  # labelled (items.genres) | predicted (item_categories)
Measure = Literal["cosine", "euclidean"]
Split = Literal["temporal", "random", "new_items"]
Gain = Literal["graded", "binary"]
# popular: most rated in training; item_knn: rating cosine; als: Spark ALS (implicit); visual: poster
# neighbours without category blocks; paper: the paper's method (poster neighbours within categories);
# paper_rating: paper blended with rating cosine (evaluate.blend_*); hybrid: the default recommender
# (the similarity stage's neighbours + the fitted cold-start model, recommend.cold_start); random:
# seeded random order; genre_affinity: items scored by the customer's share of liked ratings in
# each of their genres. Every name is a registered hybridrec.models recommender.
# ranked: the two-stage recommender (candidates from item_knn, ease, svd and popularity re-ranked by
# a LightGBM lambdarank model, recommend.ranker).
ModelName = Literal["popular", "item_knn", "als", "ease", "visual", "paper", "paper_rating", "hybrid", "random",
                    "genre_affinity", "ranked"]
# the ranked model's features (hybridrec.models.ranker): CF scores and ranks, item popularity, its
# trend and age, genre affinity, similarity to the latest likes; predicted_affinity (the classifier's
# genres) and poster_sim (CNN embeddings) are the ones that come from the posters
RankFeature = Literal["knn", "knn_rank", "ease", "ease_rank", "svd", "svd_rank", "popularity", "like_share",
                      "recent", "trend",
                      "age", "genre_affinity", "predicted_affinity", "recent_sim_max", "recent_sim_mean",
                      "poster_sim", "history"]
RANK_FEATURES: tuple[str, ...] = typing.get_args(RankFeature)
POSTER_RANK_FEATURES = ("predicted_affinity", "poster_sim")
# the cold-start model's features (hybridrec.models.coldstart): prior and vote_average are TMDB
# metadata, which a brand-new release lacks; genre, image and cf are content (the regime every item has)
ColdFeature = Literal["prior", "vote_average", "genre", "image", "cf"]
# what the content -> CF map reads: the poster vector, the genres, the release decade
MapInput = Literal["image", "genre", "decade"]

EVAL_MODELS: tuple[str, ...] = typing.get_args(ModelName)
DEFAULT_EVAL_MODELS = ("popular", "item_knn", "als", "visual", "paper", "hybrid")
COLD_FEATURES: tuple[str, ...] = typing.get_args(ColdFeature)
CONTENT_FEATURES: tuple[str, ...] = ("genre", "image", "cf")  # the features an item without metadata has
MAP_INPUTS: tuple[str, ...] = typing.get_args(MapInput)


def _fail(key: str, what: str) -> UserError:
    return UserError(f"config key '{key}' {what}")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable, or a Databricks secret scope + key."""

    env: str | None = None
    scope: str | None = None
    key: str | None = None

    def describe(self) -> str:
        """A loggable description: the secret's *name*, never its value."""
        if self.env:
            return f"env:{self.env}"
        if self.scope and self.key:
            return f"secret-scope:{self.scope}/{self.key}"
        return "unset"


@dataclass(frozen=True)
class SparkConf:
    mode: SparkMode = "local"
    master: str = "local[*]"
    app_name: str = "hybridrec"
    # DEBUG also turns on the jobs' Python debug logs (py4j's gateway calls included); Parquet's
    # per-value record logs stay off (they would print customer data)
    log_level: str = "WARN"
    # Extra Spark settings applied only in local mode (a cluster's settings are never overridden).
    # maxResultSize: rating similarity collects the ratings as plain Arrow columns up to 80% of it.
    conf: dict[str, str] = field(default_factory=lambda: {"spark.sql.shuffle.partitions": "8",
                                                          "spark.driver.memory": "4g",
                                                          "spark.driver.maxResultSize": "2g"})
    # Extra options for the local-mode JVM (after hybridrec's own -D flags); none on a cluster.
    # Empty: `hybridrec sql` runs the quick (C1) JIT only, jobs the full JIT.
    java_options: str = ""
    # Where iterative algorithms (ALS) cut their lineage, so a long fit never overflows a task's
    # stack; a folder every executor reaches (a Volume, HDFS, S3) on a cluster. Empty: <data_dir>/checkpoints.
    checkpoint_dir: str = ""


@dataclass(frozen=True)
class StorageConf:
    # Local mode: warehouse/, metastore_db/ and the demo crawl live under this directory.
    data_dir: str = "${HYBRIDREC_DATA:-.hybridrec}"
    catalog: str | None = None  # Unity Catalog name on Databricks; None = session default
    database: str = "hybridrec"

    @property
    def qualified_database(self) -> str:
        """The quoted ``catalog.database`` (or ``database``) every table lives in."""
        return ".".join(f"`{p}`" for p in (self.catalog, self.database) if p)

    def table(self, name: str) -> str:
        """Fully qualified, quoted table name in the configured catalog and database."""
        return f"{self.qualified_database}.`{name}`"


@dataclass(frozen=True)
class InputConf:
    crawl_dir: str = "${HYBRIDREC_DATA:-.hybridrec}/demo/crawl"  # JSON-lines TMDB records + posters/
    posters_dir: str | None = None  # default: <crawl_dir>/posters
    ratings_path: str = "${HYBRIDREC_DATA:-.hybridrec}/demo/ratings.csv"  # CSV (header) or Parquet
    ratings_format: RatingsFormat = "auto"


@dataclass(frozen=True)
class IngestConf:
    crawl_date: str | None = None  # YYYY-MM-DD; default: crawl manifest, else the run date
    min_rating: float = 1.0
    max_rating: float = 5.0
    max_poster_bytes: int = 2 * 1024 * 1024  # 2 MiB: TMDB posters are well below this
    max_poster_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.min_rating >= self.max_rating:
            raise _fail("ingest.min_rating", "must be below 'ingest.max_rating'")
        if self.crawl_date:
            parse_date(self.crawl_date, "ingest.crawl_date")


@dataclass(frozen=True)
class DemoConf:
    # When true and input.crawl_dir does not exist yet, the pipeline first writes the seeded demo
    # crawl into out_dir (whose crawl/ and ratings.csv the input paths should point at).
    enabled: bool = True
    out_dir: str = "${HYBRIDREC_DATA:-.hybridrec}/demo"
    movies: int = 2500
    customers: int = 800
    mean_ratings_per_customer: int = 40
    poster_width: int = 96
    poster_height: int = 144
    seed: int = 7
    bad_inputs: bool = True


@dataclass(frozen=True)
class BackboneConf:
    """One CNN whose pooled activations become (part of) a poster's feature vector."""

    # vgg19 (the paper's) | any keras.applications model by name (resnet50, mobilenet_v2, ...)
    # | file (a saved Keras model at model_path)
    name: str = "vgg19"
    layer: str | None = None  # default: block5_pool for VGG; the last layer otherwise; fc1/fc2 = VGG's 4096-d
    pooling: Pooling = "avg"
    # imagenet (Keras cache, $KERAS_HOME/models) | random (seeded: tests and the offline demo) | a weights file
    weights: str = "imagenet"
    model_path: str | None = None  # for name: file (.keras / .h5)
    preprocess: Preprocess = "auto"


@dataclass(frozen=True)
class EmbedConf:
    # Several backbones = the paper's future-work ensemble: their vectors are concatenated. The
    # default is the offline demo's: VGG19 with seeded random weights at 64x64 (no ImageNet
    # download is possible offline); conf/cluster.yaml names imagenet at 224.
    backbones: list[BackboneConf] = field(default_factory=lambda: [
        BackboneConf(name="vgg19", layer="block5_pool", pooling="avg", weights="random")])
    input_size: int = 64  # square side in pixels fed to the CNN (the paper: 224)
    resize: Resize = "pad"
    # Longer side / shorter side beyond which a poster is not embedded but quarantined: a poster is
    # about 1.5 (2:3); a strip or banner would reach the CNN as mostly padding (pad) or a sliver (crop).
    max_aspect_ratio: float = 4.0
    batch_size: int = 32  # images per model call
    arrow_batch_size: int = 256  # rows per Arrow batch into the pandas UDF
    seed: int = 0  # for weights: random
    mixed_precision: bool = False  # float16 compute on GPUs
    tf_threads: int = 0  # intra-op threads per Python worker (0 = TensorFlow's default)
    # Posters per commit: a killed run keeps every finished chunk, and its rerun computes only the
    # rest (0 = one commit at the end).
    commit_every: int = 2000

    def __post_init__(self) -> None:
        if self.commit_every < 0:
            raise _fail("embed.commit_every", f"must be 0 (one commit) or a number of posters, got {self.commit_every}")
        if self.max_aspect_ratio < 1:
            raise _fail("embed.max_aspect_ratio", f"must be at least 1 (longer side / shorter side), got "
                                                  f"{self.max_aspect_ratio}")
        if not self.backbones:
            raise _fail("embed.backbones", "needs at least one backbone")
        for i, b in enumerate(self.backbones):
            if b.name == "file" and not b.model_path:
                raise _fail(f"embed.backbones[{i}].model_path", "is required for name: file")


@dataclass(frozen=True)
class FineTuneConf:
    """The paper's second training stage: re-learn the CNN's last block on the images."""

    enabled: bool = False
    trainable_prefix: str = "block5"  # layers whose name starts with this are re-learned
    epochs: int = 10
    batch_size: int = 16
    optimizer: Optimizer = "sgd"
    learning_rate: float = 1e-4  # reduced against the head's, as the paper
    momentum: float = 0.9
    patience: int = 3  # early stopping on validation loss


@dataclass(frozen=True)
class TrainConf:
    """The stacked genre classifier (paper 3.1): Dense(hidden, relu) -> Dropout -> Dense(G, sigmoid)."""

    genres: list[str] = field(default_factory=list)  # empty = every genre with >= min_items labelled items
    min_items: int = 50
    hidden: int = 1024
    dropout: float = 0.5
    epochs: int = 50  # the paper's 50; early stopping usually ends sooner
    batch_size: int = 64
    optimizer: Optimizer = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    patience: int = 5  # early stopping on validation loss (best weights restored)
    test_fraction: float = 0.2  # the paper's 80/20
    val_fraction: float = 0.1  # of all labelled items, carved from the training part
    folds: int = 0  # > 1: also k-fold cross-validation of the head
    seed: int = 0
    model_dir: str = ""  # artifacts (model, plot, metrics); default <data_dir>/models; shared storage on clusters
    petastorm_cache_url: str = ""  # petastorm's parquet cache; default file://<data_dir>/petastorm
    mlflow_tracking_uri: str = ""  # log params, metrics and the model to MLflow when set
    mlflow_experiment: str = "hybridrec-classifier"
    mlflow_artifact_location: str = ""  # for a new experiment; empty = the tracking server's default
    # the classifier is logged as an MLflow model (with a signature) and registered under this name
    # (a Unity Catalog name catalog.schema.model with registry databricks-uc); empty = not registered
    mlflow_registered_model: str = ""
    mlflow_registry_uri: str = ""  # empty = the tracking URI's own registry
    fine_tune: FineTuneConf = field(default_factory=FineTuneConf)

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 <= self.val_fraction < 1
                and self.test_fraction + self.val_fraction < 1):
            raise UserError("config keys 'train.test_fraction' and 'train.val_fraction' must be fractions "
                            "that leave a training part")
        if not 0 <= self.dropout < 1 or self.hidden < 1 or self.epochs < 1 or self.batch_size < 1 or self.folds == 1:
            raise UserError("config keys 'train.dropout' in [0, 1), 'train.hidden', 'train.epochs', "
                            "'train.batch_size' >= 1 and 'train.folds' 0 or >= 2")


@dataclass(frozen=True)
class SimilarityConf:
    # embeddings (item_embeddings of the configured extractor) | features (the classifier's 1024-d
    # penultimate activations in item_categories, the paper's "feature maps")
    vectors: Vectors = "embeddings"
    blocks: Blocks = "predicted"
    measure: Measure = "cosine"
    max_distance: float | None = None  # keep pairs closer than this (cosine distance = 1 - cos)
    top_k: int = 50
    # no task holds more than block_size^2 scores; on the broadcast path a task's unit is block_size items.
    # 2500: one core searched 5,000 of 50,000 items x 512-d in 1.48 s (500: 3.50 s, 1000: 1.90 s, 4000: 2.25 s)
    block_size: int = 2500
    broadcast_max_mb: int = 1024  # vectors up to this size are broadcast to item-chunk tasks; larger: sub-block joins
    # Blend with rating-based item-item cosine: s = w * n / (n + shrinkage) * rating_cos + (1 - w) * image_sim,
    # w = rating_weight, n = the pair's co-raters; a missing side counts 0. 1 = the hybrid's neighbours:
    # rating cosine only (no poster search; new items go to the cold-start model); 0 = the paper.
    rating_weight: float = 1.0
    rating_shrinkage: float = 0.0
    rating_min_support: int = 1  # co-raters a rating pair needs
    rating_max_history: int = 500  # latest ratings per customer used for rating similarity (0 = all)
    # ratings up to this size are collected once and broadcast to item-range tasks (24 bytes a rating:
    # both orientations, what each Python worker holds); larger: summed per-customer partials
    rating_broadcast_max_mb: int = 2048

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.block_size < 2:
            raise UserError("config keys 'similarity.top_k' >= 1 and 'similarity.block_size' >= 2")
        if not 0 <= self.rating_weight <= 1 or self.rating_shrinkage < 0:
            raise UserError("config keys 'similarity.rating_weight' in [0, 1] and 'similarity.rating_shrinkage' >= 0")


@dataclass(frozen=True)
class EvaluateConf:
    """Offline evaluation: split each customer's ratings, fit every model on the training part, rank
    held-out items."""

    # temporal (each customer's latest ratings held out) | random (seeded) | new_items (every rating of
    # a seeded new_item_fraction of the items held out; models rank only those items)
    split: Split = "temporal"
    new_item_fraction: float = 0.15
    holdout_fraction: float = 0.2  # of each customer's ratings (at least one)
    holdout_last: int = 0  # > 0: hold out each customer's last k ratings instead of a fraction
    min_ratings: int = 5  # customers with fewer ratings stay wholly in training
    relevant_threshold: float = 4.0  # held-out ratings >= this are relevant
    gain: Gain = "graded"  # nDCG gain: the held-out rating | 1; log2 discount
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    models: list[ModelName] = field(default_factory=lambda: list(DEFAULT_EVAL_MODELS))  # type: ignore[arg-type]
    blend_weight: float = 0.5  # paper_rating: the rating blend's weight (see similarity.rating_weight)
    blend_shrinkage: float = 0.0
    als_rank: int = 32
    als_reg: float = 0.1
    als_alpha: float = 10.0  # implicit-feedback confidence scale
    als_iterations: int = 10
    # als_tune: the four above are a starting point; a coordinate search over these grids on a
    # temporal carve-out of the fitted ratings picks the settings (one parameter at a time)
    als_tune: bool = True
    als_ranks: list[int] = field(default_factory=lambda: [32, 64, 128])
    als_regs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    als_alphas: list[float] = field(default_factory=lambda: [1.0, 10.0, 40.0])
    als_iteration_grid: list[int] = field(default_factory=lambda: [10, 20])
    # the smallest rating that counts as an interaction for ALS (0 = every rating); als_min_ratings:
    # its candidates in the coordinate search (on MovieLens 100K the liked ratings alone win)
    als_min_rating: float = 0.0
    als_min_ratings: list[float] = field(default_factory=lambda: [0.0, 4.0])
    # ease (Steck 2019): a closed-form item-item model over the ease_items most-rated items; its
    # L2 weight is chosen from ease_lambdas on a temporal carve-out of the ratings it is fitted on
    # (ease_lambda set: that value, no tuning); ease_top_k weights kept per item for serving
    ease_items: int = 2000
    ease_lambdas: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 400.0, 800.0])
    ease_lambda: float | None = None
    # the smallest rating that counts as an interaction (0 = every rating); null = chosen from
    # ease_min_ratings together with lambda on the same carve-out
    ease_min_rating: float | None = None
    ease_min_ratings: list[float] = field(default_factory=lambda: [0.0, 4.0])
    ease_top_k: int = 500
    tune_customers: int = 2000  # customers of a carve-out scored for each tuning candidate (driver)
    seed: int = 0
    report_dir: str = ""  # default <storage.data_dir>/reports

    def __post_init__(self) -> None:
        if not 0 < self.new_item_fraction < 1:
            raise _fail("evaluate.new_item_fraction", "must be in (0, 1)")
        if not 0 < self.holdout_fraction < 1 or self.holdout_last < 0 or self.min_ratings < 2:
            raise UserError("config keys 'evaluate.holdout_fraction' in (0, 1), 'evaluate.holdout_last' >= 0 "
                            "and 'evaluate.min_ratings' >= 2")
        if not self.ks or any(k < 1 for k in self.ks):
            raise _fail("evaluate.ks", "needs cut-offs >= 1")
        if not self.models:
            raise _fail("evaluate.models", f"needs at least one model; models are {', '.join(EVAL_MODELS)}")
        if not 0 <= self.blend_weight <= 1 or self.blend_shrinkage < 0:
            raise UserError("config keys 'evaluate.blend_weight' in [0, 1] and 'evaluate.blend_shrinkage' >= 0")
        if self.ease_items < 2 or self.ease_top_k < 1 or not self.ease_lambdas or \
                any(x <= 0 for x in self.ease_lambdas) or (self.ease_lambda is not None and self.ease_lambda <= 0):
            raise UserError("config keys 'evaluate.ease_items' >= 2, 'evaluate.ease_top_k' >= 1 and "
                            "'evaluate.ease_lambdas' / 'evaluate.ease_lambda' > 0")
        floors = [self.als_min_rating, *self.als_min_ratings, *self.ease_min_ratings,
                  *([self.ease_min_rating] if self.ease_min_rating is not None else [])]
        if not self.als_min_ratings or not self.ease_min_ratings or any(x < 0 for x in floors):
            raise UserError("config keys 'evaluate.als_min_rating(s)' and 'evaluate.ease_min_rating(s)' "
                            "need values >= 0 (0 = every rating counts)")


@dataclass(frozen=True)
class ColdStartConf:
    """The hybrid's cold-start model (hybridrec.models.coldstart): items with fewer than max_ratings ratings."""

    max_ratings: int = 5  # items with fewer ratings are scored by the cold-start model
    slots: int = 2  # of each top-n list, at most this many go to cold items (the last positions)
    # a cold item takes a slot when its probability is >= min_lift x the base rate (a random cold
    # item's); null = chosen from lift_grid on a temporal carve-out of the training ratings: the lift
    # with the best new-item recall among those within max_ndcg_loss of the best nDCG (the list
    # without new items, min_lift inf, is scored there as the reference; it is chosen only when no
    # lift of the grid is within the loss, or when the grid holds it)
    min_lift: float | None = None
    max_ndcg_loss: float = 0.02  # the share of the carve-out's best nDCG that new items may cost
    lift_grid: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0])
    fit_holdout: float = 0.2  # the carve-out for min_lift: each customer's latest share of training ratings
    features: list[ColdFeature] = field(default_factory=lambda: list(COLD_FEATURES))  # type: ignore[arg-type]
    fit_fraction: float = 0.15  # share of the rated items hidden to fit the model (a carve-out of training)
    fit_customers: int = 20000  # the fit uses at most this many customers (a seeded sample)
    fit_pairs: int = 2_000_000  # ... and at most this many (customer, hidden item) pairs (a uniform sample)
    # the min_lift carve-out: its neighbours are recomputed from at most this many customers (a
    # seeded sample), never from every rating again, and it scores them once for every lift
    lift_customers: int = 20000
    relevant: float = 4.0  # a hidden rating >= this is a positive
    l2: float = 1.0
    image_neighbors: int = 50  # poster neighbours per cold item (centred cosine, among rated items)
    # the cf feature: a ridge map from content (map_inputs) to PureSVD item factors of the liked
    # ratings, its L2 chosen from map_l2_grid on a seeded carve-out of the rated items
    factors: int = 32
    map_inputs: list[MapInput] = field(default_factory=lambda: list(MAP_INPUTS))  # type: ignore[arg-type]
    map_l2_grid: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0, 1000.0])
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.features:
            raise _fail("recommend.cold_start.features", f"needs at least one feature; features are "
                                                         f"{', '.join(COLD_FEATURES)}")
        if (self.min_lift is not None and self.min_lift < 0) or not self.lift_grid \
                or any(x < 0 for x in self.lift_grid) or not 0 < self.fit_holdout < 1 \
                or not 0 <= self.max_ndcg_loss < 1:
            raise UserError("config keys 'recommend.cold_start.min_lift' >= 0 or null, 'lift_grid' of "
                            "values >= 0, 'fit_holdout' in (0, 1), 'max_ndcg_loss' in [0, 1)")
        if not 0 < self.fit_fraction < 1 or self.slots < 0 or self.max_ratings < 1 or self.fit_customers < 1 \
                or self.l2 < 0 or self.fit_pairs < 1 or self.lift_customers < 1:
            raise UserError("config keys 'recommend.cold_start.fit_fraction' in (0, 1), 'slots' >= 0, "
                            "'max_ratings' >= 1, 'fit_customers', 'fit_pairs', 'lift_customers' >= 1 and 'l2' >= 0")
        if self.factors < 1 or not self.map_l2_grid or any(x <= 0 for x in self.map_l2_grid) or not self.map_inputs:
            raise UserError("config keys 'recommend.cold_start.factors' >= 1, 'map_l2_grid' of values > 0 and "
                            f"'map_inputs' (a non-empty list of {', '.join(MAP_INPUTS)})")


@dataclass(frozen=True)
class NewItemsConf:
    """``new_item_recommendations`` ("new for you"): per customer, the recommender's top_k among
    the new items - released at most max_age_days before the run date, or with fewer than
    max_ratings ratings - scored as the main list scores them (the hybrid: the cold-start model)."""

    top_k: int = 10  # 0 = no new_item_recommendations
    max_age_days: int = 365
    max_ratings: int = 5

    def __post_init__(self) -> None:
        if self.top_k < 0 or self.max_age_days < 0 or self.max_ratings < 0:
            raise UserError("config keys 'recommend.new.top_k', 'max_age_days' and 'max_ratings' must be >= 0")


@dataclass(frozen=True)
class RankerConf:
    """The ``ranked`` model (hybridrec.models.ranker): CF candidates re-ranked by a learned ranker."""

    candidates: int = 100  # per source (item_knn, ease, svd, popularity); their union is re-ranked
    features: list[RankFeature] = field(default_factory=lambda: list(RANK_FEATURES))  # type: ignore[arg-type]
    factors: int = 64  # svd source: the leading eigenvectors of ease's Gram matrix (PureSVD)
    rank_depth: int = 500  # a source's rank feature counts to this depth (deeper: depth + 1)
    recent_likes: int = 5  # the customer's latest likes (rating > threshold) for the recent_* and poster features
    recent_days: int = 30  # recent: ratings of the item in this many days before the customer's latest rating
    history_days: int = 365  # ... counted per day over this many days up to the newest rating (older: day one)
    fit_customers: int = 10000  # the ranker is fitted on a temporal carve-out of at most this many customers
    folds: int = 5  # the number of boosting rounds: k-fold cross-validation over those customers
    leaves: int = 15
    learning_rate: float = 0.05
    min_leaf: int = 50
    rounds: int = 500
    early_stopping: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.factors < 1 or self.recent_likes < 1 or self.recent_days < 1 \
                or self.rank_depth < self.candidates or self.history_days < 2 * self.recent_days \
                or self.fit_customers < 10 or self.folds < 2 or self.leaves < 2 \
                or self.learning_rate <= 0 or self.min_leaf < 1 or self.rounds < 1 or self.early_stopping < 1:
            raise UserError("config keys 'recommend.ranker.candidates', 'factors', 'recent_likes', "
                            "'recent_days', 'min_leaf', 'rounds', 'early_stopping' >= 1, 'rank_depth' >= 'candidates', "
                            "'history_days' >= 2 x 'recent_days', 'fit_customers' >= 10, 'folds' and 'leaves' >= 2, "
                            "'learning_rate' > 0")
        if not self.features:
            raise _fail("recommend.ranker.features", f"needs at least one feature; features are "
                                                     f"{', '.join(RANK_FEATURES)}")


@dataclass(frozen=True)
class RecommendConf:
    # hybrid (the default): the similarity stage's neighbours for items with ratings + the fitted
    # cold-start model for items with few or none; any other registered model serves as it is evaluated
    model: ModelName = "hybrid"
    cold_start: ColdStartConf = field(default_factory=ColdStartConf)
    ranker: RankerConf = field(default_factory=RankerConf)
    new: NewItemsConf = field(default_factory=NewItemsConf)
    top_n: int = 10
    threshold: float = 3.0  # only ratings above this add their neighbours (the paper's threshold)
    partitions: int = 0  # customer partitions (0 = the larger of the default parallelism and shuffle partitions)
    batch_rows: int = 200_000  # ratings scored per sparse product inside a task (bounds memory)


@dataclass(frozen=True)
class CrawlConf:
    """The TMDB crawler (the paper crawled 2012-2017): discover by release year, details, posters."""

    base_url: str = "https://api.themoviedb.org/3"
    image_base_url: str = "https://image.tmdb.org/t/p"
    poster_size: str = "w342"  # TMDB image size: w92 ... w780, original
    first_year: int = 2012
    last_year: int = 2017
    max_pages: int = 500  # discover pages per year (TMDB serves at most 500)
    language: str = "en-US"
    requests_per_second: float = 20.0
    max_retries: int = 5
    backoff_seconds: float = 1.0  # doubled on every retry (unless the server says Retry-After)
    timeout_seconds: float = 10.0
    out_dir: str = ""  # default input.crawl_dir

    def __post_init__(self) -> None:
        if self.first_year > self.last_year or self.requests_per_second <= 0 or self.max_retries < 0:
            raise UserError("config keys 'crawl.first_year' <= 'crawl.last_year', 'crawl.requests_per_second' > 0 "
                            "and 'crawl.max_retries' >= 0")


# Delta's own floor for VACUUM: files younger than this may still be read by a running query or
# a time-travel read, so a shorter retention is refused (Delta's retentionDurationCheck).
SAFE_VACUUM_HOURS = 168


@dataclass(frozen=True)
class MaintenanceConf:
    """The maintenance job: retention of old runs, OPTIMIZE (clustering), VACUUM."""

    retention_runs: int = 30  # the newest runs kept in each run-stamped table (recommendations, ...)
    optimize: bool = True  # OPTIMIZE every table (compaction; liquid clustering where declared)
    vacuum_hours: int = SAFE_VACUUM_HOURS  # VACUUM files unreferenced for longer than this

    def __post_init__(self) -> None:
        if self.retention_runs < 1:
            raise _fail("maintenance.retention_runs", f"must keep at least 1 run, got {self.retention_runs}")
        if self.vacuum_hours < SAFE_VACUUM_HOURS:
            raise _fail("maintenance.vacuum_hours", f"must be at least {SAFE_VACUUM_HOURS} (7 days, Delta's safe "
                                                   f"retention for running readers and time travel), got {self.vacuum_hours}")


@dataclass(frozen=True)
class RunConf:
    id: str | None = None  # default: the run date
    date: str | None = None  # logical run date YYYY-MM-DD; default: today (UTC)

    def __post_init__(self) -> None:
        if self.date:
            parse_date(self.date, "run.date")


@dataclass(frozen=True)
class SecretsConf:
    tmdb_api_key: SecretRef = field(default_factory=lambda: SecretRef(env="TMDB_API_KEY"))


@dataclass(frozen=True)
class Config:
    env: str = "local"
    spark: SparkConf = field(default_factory=SparkConf)
    storage: StorageConf = field(default_factory=StorageConf)
    input: InputConf = field(default_factory=InputConf)
    ingest: IngestConf = field(default_factory=IngestConf)
    demo: DemoConf = field(default_factory=DemoConf)
    embed: EmbedConf = field(default_factory=EmbedConf)
    train: TrainConf = field(default_factory=TrainConf)
    similarity: SimilarityConf = field(default_factory=SimilarityConf)
    recommend: RecommendConf = field(default_factory=RecommendConf)
    evaluate: EvaluateConf = field(default_factory=EvaluateConf)
    crawl: CrawlConf = field(default_factory=CrawlConf)
    run: RunConf = field(default_factory=RunConf)
    secrets: SecretsConf = field(default_factory=SecretsConf)
    maintenance: MaintenanceConf = field(default_factory=MaintenanceConf)

    # ---- derived values -------------------------------------------------------------
    @property
    def run_date(self) -> dt.date:
        """The logical run date (conf ``run.date``, default today in UTC)."""
        if self.run.date:
            return parse_date(self.run.date, "run.date")
        return dt.datetime.now(dt.timezone.utc).date()

    @property
    def run_id(self) -> str:
        """The id stamped on every row this run writes (conf ``run.id``, default the run date)."""
        return self.run.id or self.run_date.isoformat()

    @property
    def database(self) -> str:
        """The quoted ``catalog.database`` (or ``database``) every table lives in."""
        return self.storage.qualified_database

    def table(self, name: str) -> str:
        """Fully qualified, quoted table name in the configured catalog and database."""
        return self.storage.table(name)

    @property
    def data_dir(self) -> Path:
        return Path(_expand_env(self.storage.data_dir)).expanduser().resolve()

    def describe(self) -> dict[str, Any]:
        """Config as a dict safe to print: secret references show their names only."""
        return _describe(self)


def _describe(obj: Any) -> Any:
    if isinstance(obj, SecretRef):
        return obj.describe()
    if dataclasses.is_dataclass(obj):
        return {f.name: _describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def parse_date(value: str, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"config key '{key}': '{value}' is not a date (expected YYYY-MM-DD)") from None


# ---- loading -------------------------------------------------------------------------
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` in string values (paths, mostly)."""

    def sub(m: re.Match[str]) -> str:
        return os.environ.get(m.group(1), m.group(2) if m.group(2) is not None else "")

    return _ENV_RE.sub(sub, value)


def _expanded(value: Any) -> Any:
    """A default value with ``${VAR}`` expanded in every string it holds (as the YAML's are)."""
    if isinstance(value, str):
        return _expand_env(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _expanded(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    if isinstance(value, list):
        return [_expanded(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def choices(values: tuple[Any, ...]) -> str:
    """'a or b', 'a, b or c'."""
    names = [str(v) for v in values]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML (or ``--set`` string) value to the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        return _coerce(value, args[0], key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        text = str(value) if not isinstance(value, (Mapping, list)) else None
        if text not in allowed:
            raise _fail(key, f"must be {choices(allowed)}, got '{value}'")
        return text
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _fail(key, f"must be a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(key, f"must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _fail(key, f"must be a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on"):
            return True
        if str(value).lower() in ("false", "no", "0", "off"):
            return False
        raise _fail(key, f"must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise _fail(key, f"must be a number, got {value!r}")
        try:
            number = tp(value) if tp is float else int(str(value).replace("_", ""))
        except (TypeError, ValueError):
            raise _fail(key, f"must be {_type_name(tp)}, got {value!r}") from None
        return number
    if tp is str:
        if isinstance(value, (Mapping, list)):
            raise _fail(key, f"must be a string, got {value!r}")
        return _expand_env(str(value))
    raise TypeError(f"unsupported config type {tp} for {key}")  # a bug in this module


def _build(cls: Any, data: Mapping[str, Any], prefix: str = "") -> Any:
    """``cls`` from a mapping: given keys coerced to their declared types, missing ones take the
    dataclass default (with ``${VAR}`` expanded, as a YAML value would be)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UserError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    for name, f in fields.items():
        if name in kwargs:
            continue
        if dataclasses.is_dataclass(hints[name]) and f.default_factory is hints[name]:
            kwargs[name] = _build(hints[name], {}, f"{prefix}{name}.")
        elif f.default is not dataclasses.MISSING:
            kwargs[name] = _expanded(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            kwargs[name] = _expanded(f.default_factory())
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise UserError(f"--set '{item}': expected key=value, e.g. --set ingest.min_rating=0.5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set '{item}': empty key")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (default ``conf/local.yaml``) and apply ``--set`` items; keys the
    file does not set keep the dataclass defaults (the embedded default).

    Raises :class:`UserError` with one line naming the file or key on any problem.
    """
    conf_path = Path(path) if path else DEFAULT_CONF
    if not conf_path.is_file():
        raise UserError(f"config file not found: {conf_path}")
    try:
        data = yaml.safe_load(conf_path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {conf_path}{where} is not valid YAML") from None
    if not isinstance(data, Mapping):
        raise UserError(f"config file {conf_path} must hold a mapping at the top level")
    for item in overrides or []:
        data = _merge(dict(data), _parse_override(item))
    try:
        cfg: Config = _build(Config, data)
    except UserError as exc:
        raise UserError(f"{conf_path}: {exc}") from None
    return cfg


def resolve_secret(ref: SecretRef, dbutils: Any = None) -> str:
    """Read a secret's value at the point of use. Raises UserError naming the reference if unset."""
    if ref.env:
        value = os.environ.get(ref.env)
        if value:
            return value
        raise UserError(f"secret {ref.describe()} is not set: export {ref.env}=...")
    if ref.scope and ref.key:
        if dbutils is None:
            raise UserError(f"secret {ref.describe()} needs Databricks dbutils (run on Databricks)")
        return str(dbutils.secrets.get(scope=ref.scope, key=ref.key))
    raise UserError("secret reference is empty: set env, or scope and key")
