"""Column names, table names and schemas — each named once, here.

Every table row carries ``run_id`` (the run that wrote it). Comments become Delta column
comments, which analysts see with ``DESCRIBE TABLE``.
"""
from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# ---- column names --------------------------------------------------------------------
ITEM_ID = "item_id"
CUSTOMER_ID = "customer_id"
RATING = "rating"
TIMESTAMP = "timestamp"
TITLE = "title"
GENRE_IDS = "genre_ids"
GENRES = "genres"
POSTER_PATH = "poster_path"
RECORD_HASH = "record_hash"
RECORD_KIND = "record_kind"
CRAWL_DATE = "crawl_date"
SOURCE_FILE = "source_file"
RUN_ID = "run_id"
INGESTED_AT = "ingested_at"
IMAGE = "image"
CONTENT_HASH = "content_hash"
WIDTH = "width"
HEIGHT = "height"
FORMAT = "format"
BYTE_SIZE = "byte_size"
STAGE = "stage"
RECORD = "record"
REASON = "reason"
QUARANTINED_AT = "quarantined_at"
MODEL_KEY = "model_key"
BACKBONE = "backbone"
LAYER = "layer"
WEIGHTS = "weights"
DIMS = "dims"
VECTOR = "vector"
COMPUTED_AT = "computed_at"
NEIGHBOR_ID = "neighbor_id"
SIMILARITY = "similarity"
SHARED_GENRES = "shared_genres"
RANK = "rank"
SCORE = "score"
BECAUSE_ITEM_ID = "because_item_id"
SOURCE = "source"
GENRE = "genre"
GENRE_PROBS = "genre_probs"
PREDICTED_GENRES = "predicted_genres"
LABELLED = "labelled"
SPLIT = "split"
FEATURES = "features"
MODEL_URI = "model_uri"
MODEL_VERSION = "model_version"
FOLD = "fold"
MODEL = "model"
METRIC = "metric"
K = "k"
SLICE = "slice"
VALUE = "value"
CUSTOMERS = "customers"
BLOCK = "block"  # a category block of the similarity search (a genre, or ALL_ITEMS_BLOCK)
ALL_ITEMS_BLOCK = "(all)"  # the one block of every item (no category blocking)

# ---- quarantine stages (the ``stage`` column): where a bad input was set aside -------------
STAGE_INGEST_ITEMS = "ingest.items"
STAGE_INGEST_POSTERS = "ingest.posters"
STAGE_INGEST_RATINGS = "ingest.ratings"
STAGE_INGEST_CRAWL = "ingest.crawl"  # requests the crawler could not complete (its _failures.jsonl)
STAGE_EMBED_POSTERS = "embed.posters"

# ---- table names (within the configured database) ------------------------------------
ITEMS = "items"
POSTERS = "posters"
RATINGS = "ratings"
QUARANTINE = "quarantine"
ITEM_EMBEDDINGS = "item_embeddings"
ITEM_NEIGHBORS = "item_neighbors"
RECOMMENDATIONS = "recommendations"
RECOMMENDATIONS_LATEST = "recommendations_latest"
RECOMMENDATIONS_CURRENT = "recommendations_current"  # one row per customer and rank, MERGEd per run (CDF on)
NEW_ITEM_RECOMMENDATIONS = "new_item_recommendations"  # "new for you": the top-k among young or thinly rated items
ITEM_CATEGORIES = "item_categories"
CLASSIFIER_METRICS = "classifier_metrics"
EVALUATION = "evaluation"


def _f(name: str, dtype: object, nullable: bool, comment: str) -> StructField:
    return StructField(name, dtype, nullable, metadata={"comment": comment})  # type: ignore[arg-type]


ITEMS_SCHEMA = StructType(
    [
        _f(ITEM_ID, LongType(), False, "TMDB movie id"),
        _f(TITLE, StringType(), True, "Title as TMDB returns it"),
        _f("original_title", StringType(), True, "Original-language title"),
        _f("original_language", StringType(), True, "ISO 639-1 code"),
        _f("overview", StringType(), True, "Plot summary"),
        _f("release_date", DateType(), True, "Release date (null when TMDB has none)"),
        _f("release_year", IntegerType(), True, "Year of release_date"),
        _f("popularity", DoubleType(), True, "TMDB popularity score at crawl time"),
        _f("vote_average", DoubleType(), True, "TMDB mean vote, 0-10"),
        _f("vote_count", LongType(), True, "Number of TMDB votes"),
        _f("adult", BooleanType(), True, "TMDB adult flag"),
        _f(POSTER_PATH, StringType(), True, "TMDB poster path, e.g. /abc.jpg (file in the crawl's posters/)"),
        _f(GENRE_IDS, ArrayType(IntegerType()), False, "TMDB genre ids, sorted"),
        _f(GENRES, ArrayType(StringType()), False, "Genre names, same order as genre_ids"),
        _f(RECORD_KIND, StringType(), False, "list_result (genre_ids) or movie_details (genres[])"),
        _f(RECORD_HASH, StringType(), False, "sha256 of the canonical record: detects changed movies"),
        _f(CRAWL_DATE, DateType(), False, "Date of the crawl this version of the record came from"),
        _f(SOURCE_FILE, StringType(), False, "Crawl file the record was read from"),
        _f(RUN_ID, StringType(), False, "Run that wrote this row"),
        _f(INGESTED_AT, TimestampType(), False, "When this row was written (UTC)"),
    ]
)

POSTERS_SCHEMA = StructType(
    [
        _f(ITEM_ID, LongType(), False, "TMDB movie id"),
        _f(POSTER_PATH, StringType(), False, "TMDB poster path"),
        _f(IMAGE, BinaryType(), False, "Encoded image bytes as crawled"),
        _f(CONTENT_HASH, StringType(), False, "sha256 of the image bytes"),
        _f(WIDTH, IntegerType(), False, "Pixels"),
        _f(HEIGHT, IntegerType(), False, "Pixels"),
        _f(FORMAT, StringType(), False, "Image format (JPEG, PNG, ...)"),
        _f(BYTE_SIZE, LongType(), False, "Bytes"),
        _f(CRAWL_DATE, DateType(), False, "Crawl this poster came from"),
        _f(SOURCE_FILE, StringType(), False, "Poster file path"),
        _f(RUN_ID, StringType(), False, "Run that wrote this row"),
        _f(INGESTED_AT, TimestampType(), False, "When this row was written (UTC)"),
    ]
)

RATINGS_SCHEMA = StructType(
    [
        _f(CUSTOMER_ID, LongType(), False, "Customer id"),
        _f(ITEM_ID, LongType(), False, "TMDB movie id (present in items)"),
        _f(RATING, DoubleType(), False, "Rating within [ingest.min_rating, ingest.max_rating]"),
        _f(TIMESTAMP, TimestampType(), False, "When the rating was given (UTC)"),
        _f(SOURCE_FILE, StringType(), False, "Ratings file the row was read from"),
        _f(RUN_ID, StringType(), False, "Run that wrote this row"),
        _f(INGESTED_AT, TimestampType(), False, "When this row was written (UTC)"),
    ]
)

QUARANTINE_SCHEMA = StructType(
    [
        _f(STAGE, StringType(), False, "Stage and input kind, e.g. ingest.items, ingest.posters"),
        _f(SOURCE_FILE, StringType(), True, "File the bad record or file came from"),
        _f(RECORD, StringType(), True, "The raw record (truncated to 10,000 chars) or the file path"),
        _f(REASON, StringType(), False, "Why it was set aside, in words"),
        _f(RUN_ID, StringType(), False, "Run that quarantined it"),
        _f(QUARANTINED_AT, TimestampType(), False, "When (UTC)"),
    ]
)

ITEM_EMBEDDINGS_SCHEMA = StructType(
    [
        _f(ITEM_ID, LongType(), False, "TMDB movie id"),
        _f(CONTENT_HASH, StringType(), False, "sha256 of the poster bytes the vector was computed from"),
        _f(MODEL_KEY, StringType(), False, "Id of the whole extractor spec (backbones, layers, weights, size)"),
        _f(BACKBONE, StringType(), False, "Backbone(s), '+'-joined for an ensemble"),
        _f(LAYER, StringType(), False, "Layer/pooling per backbone"),
        _f(WEIGHTS, StringType(), False, "Weights source: imagenet, file:<path> or random(seed=N) (tests/demo)"),
        _f(DIMS, IntegerType(), False, "Vector length"),
        _f(VECTOR, ArrayType(FloatType()), False, "The poster's feature vector"),
        _f(RUN_ID, StringType(), False, "Run that computed it"),
        _f(COMPUTED_AT, TimestampType(), False, "When (UTC)"),
    ]
)

ITEM_NEIGHBORS_SCHEMA = StructType(
    [
        _f(ITEM_ID, LongType(), False, "TMDB movie id"),
        _f(NEIGHBOR_ID, LongType(), False, "A similar item within one of the item's categories"),
        _f(SIMILARITY, DoubleType(), False, "cosine, or 1/(1+euclidean distance)"),
        _f(RANK, IntegerType(), False, "1 = most similar; ties broken by neighbor_id"),
        _f(SHARED_GENRES, ArrayType(StringType()), False, "Category blocks in which the pair met (empty for a pair found by rating similarity only)"),
        _f(RUN_ID, StringType(), False, "Run that computed it"),
    ]
)

RECOMMENDATIONS_SCHEMA = StructType(
    [
        _f(CUSTOMER_ID, LongType(), False, "Customer id"),
        _f(RANK, IntegerType(), False, "1 = best"),
        _f(ITEM_ID, LongType(), False, "Recommended TMDB movie id (never one the customer rated)"),
        _f(SCORE, DoubleType(), False, "Sum over liked items k of similarity(k, item) * rating_k (0 for fallbacks)"),
        _f(BECAUSE_ITEM_ID, LongType(), True, "The rated item that contributed most: 'because you rated ...'"),
        _f(SOURCE, StringType(), False, "neighbors, cold_start (the hybrid's cold-start model), or fallback_genre_popular / fallback_popular"),
        _f(RUN_ID, StringType(), False, "Run that computed it"),
    ]
)

# The serving copy: the newest run's lists, one row per (customer_id, rank), changed in place by
# a MERGE per run, with Delta's Change Data Feed on, so an online store syncs only what changed.
RECOMMENDATIONS_CURRENT_SCHEMA = StructType(
    [f if f.name != RUN_ID else _f(RUN_ID, StringType(), False, "Run that last changed this row")
     for f in RECOMMENDATIONS_SCHEMA.fields]
)

# "New for you": the same columns as recommendations, some described for its rows
_NEW_ITEM_COMMENTS = {
    ITEM_ID: "A new item (young or thinly rated at the run date) the customer never rated",
    SCORE: "cold_start: the fitted probability of relevance; neighbors: as in recommendations",
    BECAUSE_ITEM_ID: "The rated item that contributed most (null for cold_start rows)",
    SOURCE: "What ranked it, as in recommendations: cold_start (the hybrid's cold-start model), neighbors, ...",
}
NEW_ITEM_RECOMMENDATIONS_SCHEMA = StructType(
    [_f(f.name, f.dataType, f.nullable, _NEW_ITEM_COMMENTS[f.name]) if f.name in _NEW_ITEM_COMMENTS else f
     for f in RECOMMENDATIONS_SCHEMA.fields]
)

ITEM_CATEGORIES_SCHEMA = StructType(
    [
        _f(ITEM_ID, LongType(), False, "TMDB movie id (every item with a poster vector, labelled or not)"),
        _f(GENRE_PROBS, MapType(StringType(), FloatType()), False, "Classifier probability per modelled genre"),
        _f(PREDICTED_GENRES, ArrayType(StringType()), False,
           "Genres whose probability reaches the genre's tuned threshold; at least the most likely one"),
        _f(FEATURES, ArrayType(FloatType()), False, "The classifier's penultimate (Dense 1024) activations"),
        _f(LABELLED, BooleanType(), False, "Whether the item had TMDB genre labels"),
        _f(SPLIT, StringType(), False, "train, val, test (the 80/20 split) or unlabelled"),
        _f(MODEL_URI, StringType(), False,
           "The classifier that made these predictions: models:/<name>/<version> when registered in MLflow, "
           "else the artifact's path"),
        _f(RUN_ID, StringType(), False, "Train run that wrote them"),
        _f(COMPUTED_AT, TimestampType(), False, "When (UTC)"),
        # added after the first release: nullable, so ensure_table adds it to an existing table
        _f(MODEL_VERSION, StringType(), True, "The registered MLflow model version (null when not registered)"),
    ]
)

CLASSIFIER_METRICS_SCHEMA = StructType(
    [
        _f(RUN_ID, StringType(), False, "Train run"),
        _f(STAGE, StringType(), False, "head (trained on stored embeddings) or fine_tune (CNN's last block re-learned)"),
        _f(FOLD, IntegerType(), True, "Cross-validation fold; null for the 80/20 split"),
        _f(GENRE, StringType(), False, "Genre"),
        _f("n_test", LongType(), False, "Test items"),
        _f("n_positive", LongType(), False, "Test items labelled with the genre"),
        _f("threshold", DoubleType(), False, "Decision threshold, tuned on validation items only (max F1)"),
        _f("accuracy", DoubleType(), False, "Test accuracy at the threshold"),
        _f("precision", DoubleType(), False, "Test precision"),
        _f("recall", DoubleType(), False, "Test recall"),
        _f("f1", DoubleType(), False, "Test F1"),
        _f("roc_auc", DoubleType(), True, "Test ROC-AUC (null when the test part holds one class)"),
        _f("f1_majority", DoubleType(), False, "Baseline: F1 of always predicting the majority class"),
        _f("f1_random", DoubleType(), False, "Baseline: expected F1 of guessing at the base rate"),
        _f(MODEL_URI, StringType(), False, "The classifier artifact evaluated"),
        _f(COMPUTED_AT, TimestampType(), False, "When (UTC)"),
    ]
)

EVALUATION_SCHEMA = StructType(
    [
        _f(RUN_ID, StringType(), False, "Evaluate run"),
        _f(MODEL, StringType(), False, "popular, item_knn, als, visual, paper (the paper's method), paper_rating, hybrid (the default), ..."),
        _f(METRIC, StringType(), False, "ndcg, precision, recall, map, hit_rate, coverage, novelty, diversity"),
        _f(K, IntegerType(), False, "List cut-off"),
        _f(SLICE, StringType(), False, "all, or cold_start (relevant items nobody rated in training)"),
        _f(VALUE, DoubleType(), False, "Mean over the slice's customers (coverage: share of the catalogue)"),
        _f(CUSTOMERS, LongType(), False, "Customers averaged over"),
        _f(COMPUTED_AT, TimestampType(), False, "When (UTC)"),
    ]
)

TABLE_COMMENTS = {
    ITEMS: "Movies from the TMDB crawl, one row per TMDB id, newest crawl wins",
    POSTERS: "Poster images of items, validated and decoded once, one row per item",
    RATINGS: "Customer ratings, one row per (customer_id, item_id), newest timestamp wins",
    QUARANTINE: "Bad input rows and files, each with the stage and a reason; nothing is dropped silently",
    RECOMMENDATIONS: "Top-n recommendations per customer and run; recommendations_latest shows the newest run",
    ITEM_NEIGHBORS: "Top-K similar items per item, searched within the item's categories; one set per run",
    ITEM_EMBEDDINGS: "Poster feature vectors from the configured CNN backbone(s), one row per item and extractor",
    ITEM_CATEGORIES: "The current genre classifier's probabilities, predicted genres and 1024-d features per item",
    CLASSIFIER_METRICS: "Per-genre test metrics of every train run (the paper's Table 2), one row per genre and fold",
    EVALUATION: "Offline ranking metrics of every model on the held-out split, one row per run, model, metric, k, slice",
    RECOMMENDATIONS_CURRENT: "The newest run's lists for serving: one row per customer and rank, MERGEd per run; "
                             "Change Data Feed on (table_changes) for syncing an online store",
    NEW_ITEM_RECOMMENDATIONS: "New for you: per customer and run, the top-k among items released recently or with "
                              "few ratings (recommend.new)",
}

# Liquid clustering (CLUSTER BY) on the columns analysts and services filter by; OPTIMIZE
# (the maintenance job) clusters the data.
TABLE_CLUSTERING: dict[str, tuple[str, ...]] = {
    RECOMMENDATIONS: (RUN_ID, CUSTOMER_ID),
    RECOMMENDATIONS_CURRENT: (CUSTOMER_ID,),
    NEW_ITEM_RECOMMENDATIONS: (RUN_ID, CUSTOMER_ID),
}
TABLE_PROPERTIES: dict[str, dict[str, str]] = {
    RECOMMENDATIONS_CURRENT: {"delta.enableChangeDataFeed": "true"},
}
_FINITE_SCORE = f"NOT isnan({SCORE}) AND abs({SCORE}) < double('Infinity')"
# CHECK constraints every writer must satisfy (the rank bound is added per run: see
# hybridrec.storage.tables.ensure_rank_bound).
TABLE_CHECKS: dict[str, dict[str, str]] = {
    RECOMMENDATIONS: {"score_is_finite": _FINITE_SCORE},
    RECOMMENDATIONS_CURRENT: {"score_is_finite": _FINITE_SCORE},
    NEW_ITEM_RECOMMENDATIONS: {"score_is_finite": _FINITE_SCORE},
}
RANK_CHECK = "rank_within_top_n"

TABLE_SCHEMAS = {ITEMS: ITEMS_SCHEMA, POSTERS: POSTERS_SCHEMA, RATINGS: RATINGS_SCHEMA, QUARANTINE: QUARANTINE_SCHEMA,
                 ITEM_EMBEDDINGS: ITEM_EMBEDDINGS_SCHEMA, ITEM_NEIGHBORS: ITEM_NEIGHBORS_SCHEMA,
                 RECOMMENDATIONS: RECOMMENDATIONS_SCHEMA, ITEM_CATEGORIES: ITEM_CATEGORIES_SCHEMA,
                 CLASSIFIER_METRICS: CLASSIFIER_METRICS_SCHEMA, EVALUATION: EVALUATION_SCHEMA,
                 RECOMMENDATIONS_CURRENT: RECOMMENDATIONS_CURRENT_SCHEMA,
                 NEW_ITEM_RECOMMENDATIONS: NEW_ITEM_RECOMMENDATIONS_SCHEMA}
