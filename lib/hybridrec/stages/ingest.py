"""Ingest: a TMDB crawl (JSON lines + posters/) and a ratings file into Delta tables.

Pure transforms (``DataFrame -> DataFrame``) first, then :func:`run_ingest`, which the job
calls. Every input record ends up either in its table or in ``quarantine`` with a reason, and
the report checks read = written + quarantined exactly, per input kind.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from hybridrec import schemas as S
from hybridrec.config import Config, parse_date
from hybridrec.crawl import layout
from hybridrec.crawl.tmdb import MAX_RAW_CHARS, MOVIE_DETAILS, parse_record
from hybridrec.errors import UserError
from hybridrec.features.images import probe_image
from hybridrec.runtime import fs
from hybridrec.storage.quarantine import quarantine_rows, replace_quarantine
from hybridrec.storage.tables import UpsertResult, ensure_table, upsert_changed

STAGE_ITEMS = S.STAGE_INGEST_ITEMS
STAGE_POSTERS = S.STAGE_INGEST_POSTERS
STAGE_RATINGS = S.STAGE_INGEST_RATINGS

# mapInPandas output of the crawl parser: the items columns it can fill, plus the raw record
# and a reason (null for good records).
PARSED_SCHEMA = StructType(
    [
        StructField(S.ITEM_ID, LongType()),
        StructField(S.TITLE, StringType()),
        StructField("original_title", StringType()),
        StructField("original_language", StringType()),
        StructField("overview", StringType()),
        StructField("release_date", DateType()),
        StructField("release_year", IntegerType()),
        StructField("popularity", DoubleType()),
        StructField("vote_average", DoubleType()),
        StructField("vote_count", LongType()),
        StructField("adult", BooleanType()),
        StructField(S.POSTER_PATH, StringType()),
        StructField(S.GENRE_IDS, ArrayType(IntegerType())),
        StructField(S.GENRES, ArrayType(StringType())),
        StructField(S.RECORD_KIND, StringType()),
        StructField(S.RECORD_HASH, StringType()),
        StructField(S.SOURCE_FILE, StringType()),
        StructField(S.RECORD, StringType()),
        StructField(S.REASON, StringType()),
    ]
)
_ITEM_FIELDS = [f.name for f in PARSED_SCHEMA.fields if f.name not in (S.SOURCE_FILE, S.RECORD, S.REASON)]


# ---- crawl records ----------------------------------------------------------------------
def _parse_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for pdf in batches:
        rows = []
        for line, source in zip(pdf["value"], pdf[S.SOURCE_FILE]):
            parsed = parse_record(line)
            row = dict(parsed.item) if parsed.item else {k: None for k in _ITEM_FIELDS}
            row[S.SOURCE_FILE] = source
            row[S.RECORD] = None if parsed.item else line[:MAX_RAW_CHARS]
            row[S.REASON] = parsed.reason
            rows.append(row)
        yield pd.DataFrame(rows, columns=PARSED_SCHEMA.fieldNames())


def crawl_files(spark: SparkSession, crawl_dir: str) -> list[str]:
    """The crawl's JSON-lines files; a missing or empty crawl is a one-line user error. Names that
    start with ``_`` or ``.`` are the crawler's own (``_failures.jsonl``) or hidden, as in Hadoop."""
    if not fs.is_dir(spark, crawl_dir):
        raise UserError(f"crawl folder not found: {crawl_dir} (config input.crawl_dir)")
    files = [f.path for f in fs.list_files(spark, crawl_dir, layout.RECORD_SUFFIXES)
             if not f.name.startswith(("_", "."))]
    if not files:
        raise UserError(f"no crawl files ({', '.join('*' + s for s in layout.RECORD_SUFFIXES)}) in {crawl_dir}")
    return files


def read_crawl_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    """Every line of the crawl files as ``value`` with its ``source_file``."""
    return spark.read.text(files).select("value", F.col("_metadata.file_path").alias(S.SOURCE_FILE))


def parse_crawl(lines: DataFrame) -> DataFrame:
    """Parse crawl lines into typed item columns; bad lines keep ``record`` and get a ``reason``."""
    return lines.mapInPandas(_parse_batches, PARSED_SCHEMA)  # type: ignore[arg-type]


def split_duplicate_items(parsed_ok: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Keep one record per TMDB id (details over list results, then a deterministic hash order).

    Returns (kept, duplicates); duplicates carry a ``reason``.
    """
    w = Window.partitionBy(S.ITEM_ID).orderBy(
        F.desc(F.col(S.RECORD_KIND) == MOVIE_DETAILS), F.desc(S.RECORD_HASH), F.asc(S.SOURCE_FILE)
    )
    ranked = parsed_ok.withColumn("_rank", F.row_number().over(w)).withColumn(
        "_kept_hash", F.first(S.RECORD_HASH).over(w)
    )
    kept = ranked.filter("_rank = 1").drop("_rank", "_kept_hash")
    dups = ranked.filter("_rank > 1").withColumn(
        S.REASON,
        F.concat(F.lit("duplicate record for id "), F.col(S.ITEM_ID).cast("string"),
                 F.lit(" in this crawl; kept record "), F.substring("_kept_hash", 1, 12)),
    ).withColumn(S.RECORD, F.concat(F.lit("id="), F.col(S.ITEM_ID).cast("string"), F.lit(" hash="), F.col(S.RECORD_HASH)))
    return kept, dups.drop("_rank", "_kept_hash")


# ---- posters ----------------------------------------------------------------------------
_PROBE_SCHEMA = StructType(
    [StructField(S.WIDTH, IntegerType()), StructField(S.HEIGHT, IntegerType()),
     StructField(S.FORMAT, StringType()), StructField(S.REASON, StringType())]
)


def probe_posters(posters: DataFrame, image_col: str, max_pixels: int) -> DataFrame:
    """Add ``width``, ``height``, ``format`` and ``reason`` by decoding each image (pandas UDF)."""

    @F.pandas_udf(_PROBE_SCHEMA)  # type: ignore[call-overload]
    def probe(images: pd.Series) -> pd.DataFrame:
        out = [probe_image(b, max_pixels) for b in images]
        return pd.DataFrame({S.WIDTH: [p.width for p in out], S.HEIGHT: [p.height for p in out],
                             S.FORMAT: [p.format for p in out], S.REASON: [p.reason for p in out]})

    probed = posters.withColumn("_probe", probe(F.col(image_col)))
    return probed.select("*", *[F.col(f"_probe.{c}").alias(c) for c in _PROBE_SCHEMA.fieldNames()]).drop("_probe")


def list_poster_files(spark: SparkSession, posters_dir: str) -> tuple[DataFrame, int]:
    """Metadata of every file in the posters folder (``file_name``, ``path``, ``length``) and
    their total size in bytes.

    Listed through Hadoop's FileSystem rather than the binaryFile source, which skips zero-byte
    files — those must be quarantined, not missed. Only names and sizes reach the driver.
    """
    rows = [(f.name, f.path, f.length) for f in fs.list_files(spark, posters_dir)]
    schema = StructType([StructField("file_name", StringType(), False), StructField("path", StringType(), False),
                         StructField("length", LongType(), False)])
    return spark.createDataFrame(rows, schema), sum(r[2] for r in rows)


# Bytes of posters per decoding task. Spark's file splitting charges every file a 4 MB open cost,
# so ~100 KB posters land 32 to a task and a crawl becomes tens of thousands of tiny Python tasks
# whose fixed cost (a second each on a small machine) dwarfs the decoding (~1 ms a poster).
POSTER_BYTES_PER_TASK = 64 << 20


def poster_tasks(total_bytes: int, min_tasks: int) -> int:
    """Decoding tasks for ``total_bytes`` of posters: one per :data:`POSTER_BYTES_PER_TASK`, and
    at least ``min_tasks`` (the cluster's cores) so no core idles."""
    return max(min_tasks, -(-total_bytes // POSTER_BYTES_PER_TASK), 1)


def read_poster_bytes(spark: SparkSession, posters_dir: str, max_bytes: int, total_bytes: int) -> DataFrame:
    """``file_name`` and ``content`` of the non-empty posters up to ``max_bytes`` (the length
    filter is applied before any byte is read), in :func:`poster_tasks` partitions for the
    ``total_bytes`` the listing found."""
    return (
        spark.read.format("binaryFile").load(posters_dir)
        .filter((F.col("length") > 0) & (F.col("length") <= max_bytes))
        .select(F.element_at(F.split("path", "/"), -1).alias("file_name"), "content")
        .coalesce(poster_tasks(total_bytes, spark.sparkContext.defaultParallelism))
    )


def match_posters(items: DataFrame, files: DataFrame, max_bytes: int, posters_dir: str) -> DataFrame:
    """Join items that name a poster with the files present; add ``reason`` for missing/empty/oversized."""
    want = items.filter(F.col(S.POSTER_PATH).isNotNull()).select(
        S.ITEM_ID, S.POSTER_PATH,
        F.regexp_replace(S.POSTER_PATH, layout.POSTER_PATH_PREFIX_RE, "").alias("file_name"),
    )
    joined = want.join(files, on="file_name", how="left")
    reason = (
        F.when(F.col("path").isNull(),
               F.concat(F.lit("poster file missing: "), F.lit(posters_dir.rstrip("/") + "/"), F.col("file_name")))
        .when(F.col("length") == 0, F.lit("poster file is empty (0 bytes)"))
        .when(F.col("length") > max_bytes,
              F.concat(F.lit("poster file too large: "), F.col("length").cast("string"),
                       F.lit(f" bytes > limit {max_bytes}")))
    )
    return joined.withColumn(S.REASON, reason)


# ---- ratings ----------------------------------------------------------------------------
RATING_INPUT_COLUMNS = (S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)


def read_ratings_raw(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """Ratings as strings (so bad values can be quarantined, not cast to null) + ``source_file``."""
    if not fs.exists(spark, path):
        raise UserError(f"ratings file not found: {path} (config input.ratings_path)")
    if fmt == "auto":
        is_parquet = path.rstrip("/").endswith(".parquet") or (
            fs.is_dir(spark, path) and bool(fs.list_files(spark, path, (".parquet",))))
        fmt = "parquet" if is_parquet else "csv"
    if fmt == "csv":
        df = spark.read.option("header", True).option("mode", "PERMISSIVE").csv(path)
    else:
        df = spark.read.parquet(path)
    missing = [c for c in RATING_INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"ratings file {path} lacks column(s) {', '.join(missing)}; has {', '.join(df.columns)}")
    return df.select(*[F.col(c).cast("string").alias(c) for c in RATING_INPUT_COLUMNS],
                     F.col("_metadata.file_path").alias(S.SOURCE_FILE))


EARLIEST_RATING = dt.datetime(1900, 1, 1)


def validate_ratings(raw: DataFrame, known_items: DataFrame, min_rating: float, max_rating: float,
                     crawl_date: dt.date | None = None) -> DataFrame:
    """Type the raw ratings; add ``reason`` for each row that cannot be used (null when fine).

    ``known_items`` has one column ``item_id``: ratings for other ids are quarantined. A timestamp
    before 1900 or more than a day after ``crawl_date`` is quarantined too: a rating from the
    year 5138 would be every customer's "latest" and distort every temporal split.
    """
    t = raw.select(
        "*",
        F.expr(f"try_cast(trim({S.CUSTOMER_ID}) AS BIGINT)").alias("_cust"),
        F.expr(f"try_cast(trim({S.ITEM_ID}) AS BIGINT)").alias("_item"),
        F.expr(f"try_cast(trim({S.RATING}) AS DOUBLE)").alias("_rating"),
        F.expr(
            f"CASE WHEN trim({S.TIMESTAMP}) RLIKE '^[0-9]+$' THEN timestamp_seconds(try_cast(trim({S.TIMESTAMP}) AS BIGINT)) "
            f"ELSE try_to_timestamp(trim({S.TIMESTAMP})) END"
        ).alias("_ts"),
    )
    known = known_items.select(F.col(S.ITEM_ID).alias("_item"), F.lit(True).alias("_known"))
    t = t.join(known, on="_item", how="left")
    # the end of the day after the crawl date (UTC, the session's time zone)
    latest = dt.datetime.combine(crawl_date, dt.time()) + dt.timedelta(days=2) if crawl_date else None
    raw_txt = lambda c: F.coalesce(F.col(c), F.lit("<missing>"))  # noqa: E731
    reason = (
        F.when(F.col("_cust").isNull(), F.concat(F.lit("customer_id is not an integer: "), raw_txt(S.CUSTOMER_ID)))
        .when(F.col("_item").isNull(), F.concat(F.lit("item_id is not an integer: "), raw_txt(S.ITEM_ID)))
        .when(F.col("_rating").isNull() | F.isnan("_rating"),
              F.concat(F.lit("rating is not a number: "), raw_txt(S.RATING)))
        .when((F.col("_rating") < min_rating) | (F.col("_rating") > max_rating),
              F.concat(F.lit("rating "), F.col(S.RATING), F.lit(f" outside [{min_rating}, {max_rating}]")))
        .when(F.col("_ts").isNull(), F.concat(F.lit("timestamp is not epoch seconds or ISO-8601: "), raw_txt(S.TIMESTAMP)))
        .when(F.col("_ts") < F.lit(EARLIEST_RATING),
              F.concat(F.lit("timestamp "), F.col("_ts").cast("string"), F.lit(f" is before {EARLIEST_RATING:%Y-%m-%d}")))
        .when(F.lit(latest is not None) & (F.col("_ts") >= F.lit(latest or EARLIEST_RATING)),
              F.concat(F.lit("timestamp "), F.col("_ts").cast("string"),
                       F.lit(f" is more than a day after the crawl date {crawl_date}")))
        .when(F.col("_known").isNull(), F.concat(F.lit("unknown item_id "), F.col("_item").cast("string"),
                                                 F.lit(" (not in items)")))
    )
    return t.select(
        F.col("_cust").alias(S.CUSTOMER_ID), F.col("_item").alias(S.ITEM_ID),
        F.col("_rating").alias(S.RATING), F.col("_ts").alias(S.TIMESTAMP), S.SOURCE_FILE,
        F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in RATING_INPUT_COLUMNS]).alias(S.RECORD),
        reason.alias(S.REASON),
    )


def split_duplicate_ratings(valid: DataFrame) -> tuple[DataFrame, DataFrame]:
    """One rating per (customer, item): the newest (then highest, then first by raw text) wins."""
    w = Window.partitionBy(S.CUSTOMER_ID, S.ITEM_ID).orderBy(
        F.desc(S.TIMESTAMP), F.desc(S.RATING), F.asc(S.SOURCE_FILE), F.asc(S.RECORD))
    ranked = valid.withColumn("_rank", F.row_number().over(w)).withColumn("_kept", F.first(S.RECORD).over(w))
    kept = ranked.filter("_rank = 1").drop("_rank", "_kept")
    dups = ranked.filter("_rank > 1").withColumn(
        S.REASON, F.concat(F.lit("duplicate rating of this customer and item; kept "), F.col("_kept")))
    return kept, dups.drop("_rank", "_kept")


# ---- the crawler's misses ------------------------------------------------------------------
MAX_FAILURES_BYTES = 256 << 20  # the crawler's miss list is read on the driver


def crawl_misses(spark: SparkSession, crawl_dir: str) -> DataFrame | None:
    """The crawler's ``_failures.jsonl`` (a 404, a request still failing after its retries) as
    quarantine input: one row per request, its latest reason. None when the crawl has no such file.
    (Spark's file sources skip names starting with ``_``, so it is read on the driver.)"""
    path = layout.failures_path(crawl_dir)
    if not fs.exists(spark, path):
        return None
    text = fs.read_small_text(spark, path, MAX_FAILURES_BYTES)
    latest: dict[str, tuple[str, str]] = {}  # request -> (at, reason)
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            request, at = str(rec["request"]), str(rec.get("at") or "")
            reason = f"the crawler could not fetch it: {rec.get('reason') or 'no reason given'}"
        except (ValueError, KeyError, TypeError, AttributeError):
            request, at, reason = line[:MAX_RAW_CHARS], "", f"unreadable line in {layout.FAILURES}"
        if request not in latest or at >= latest[request][0]:
            latest[request] = (at, reason)
    rows = [(path, request, reason) for request, (_, reason) in sorted(latest.items())]
    return spark.createDataFrame(rows, f"{S.SOURCE_FILE} string, {S.RECORD} string, {S.REASON} string")


# ---- the stage ----------------------------------------------------------------------------
@dataclass
class StageCounts:
    """Input records of one kind and where each went. ``read == written + quarantined``."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def check(self, name: str) -> None:
        if self.read != self.written + self.quarantined:
            raise RuntimeError(f"{name}: read {self.read} != written {self.written} + quarantined {self.quarantined}")


@dataclass
class IngestReport:
    run_id: str
    crawl_date: dt.date
    items: StageCounts = field(default_factory=StageCounts)
    posters: StageCounts = field(default_factory=StageCounts)
    ratings: StageCounts = field(default_factory=StageCounts)
    items_without_poster: int = 0
    unreferenced_poster_files: int = 0
    crawl_misses: int = 0
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return self.items.read + self.posters.read + self.ratings.read

    @property
    def rows_out(self) -> int:
        return self.rows_in - (self.items.quarantined + self.posters.quarantined + self.ratings.quarantined)

    def lines(self) -> list[str]:
        head = f"{'input':<10}{'read':>9}{'inserted':>10}{'updated':>9}{'unchanged':>11}{'quarantined':>13}"
        out = [f"crawl of {self.crawl_date}", head]
        for name in ("items", "posters", "ratings"):
            c: StageCounts = getattr(self, name)
            out.append(f"{name:<10}{c.read:>9}{c.inserted:>10}{c.updated:>9}{c.unchanged:>11}{c.quarantined:>13}")
        out.append(f"read = inserted + updated + unchanged + quarantined holds for every input; "
                   f"items without poster_path: {self.items_without_poster}; "
                   f"poster files no record names (not read): {self.unreferenced_poster_files}")
        if self.crawl_misses:
            out.append(f"requests the crawler could not complete ({layout.FAILURES}, in quarantine as "
                       f"{S.STAGE_INGEST_CRAWL}): {self.crawl_misses}")
        return out


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith(("dbfs:", "file:"))


def preflight(cfg: Config) -> None:
    """Fail before any Spark work when a configured local input is missing (one clear line).

    Remote paths (s3a://, abfss://, dbfs:, ...) are checked through Hadoop once Spark is up.
    """
    if not cfg.input.crawl_dir:
        raise UserError("config key 'input.crawl_dir' is empty")
    if not cfg.input.ratings_path:
        raise UserError("config key 'input.ratings_path' is empty")
    if _is_local(cfg.input.crawl_dir) and not os.path.isdir(cfg.input.crawl_dir):
        raise UserError(f"crawl folder not found: {cfg.input.crawl_dir} (config input.crawl_dir)")
    if _is_local(cfg.input.ratings_path) and not os.path.exists(cfg.input.ratings_path):
        raise UserError(f"ratings file not found: {cfg.input.ratings_path} (config input.ratings_path)")


def crawl_date_for(spark: SparkSession, cfg: Config, crawl_dir: str) -> dt.date:
    """Conf ``ingest.crawl_date``, else the crawl manifest's ``crawl_date``, else the run date."""
    if cfg.ingest.crawl_date:
        return parse_date(cfg.ingest.crawl_date, "ingest.crawl_date")
    manifest = layout.manifest_path(crawl_dir)
    if fs.exists(spark, manifest):
        try:
            value = json.loads(fs.read_small_text(spark, manifest))["crawl_date"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"crawl manifest {manifest} has no valid crawl_date") from None
        return parse_date(value, f"{manifest}:crawl_date")
    return cfg.run_date


def _apply(counts: StageCounts, res: UpsertResult) -> None:
    counts.inserted, counts.updated, counts.unchanged = res.inserted, res.updated, res.unchanged


def run_ingest(spark: SparkSession, cfg: Config) -> IngestReport:
    """Read the configured crawl and ratings, upsert ``items``, ``posters``, ``ratings``, and
    replace this run's ``quarantine`` rows. Returns the counts (already checked to add up)."""
    preflight(cfg)
    crawl_dir = cfg.input.crawl_dir
    posters_dir = layout.posters_dir(crawl_dir, cfg.input.posters_dir)
    files = crawl_files(spark, crawl_dir)  # fail fast on a missing crawl
    if not fs.exists(spark, cfg.input.ratings_path):
        raise UserError(f"ratings file not found: {cfg.input.ratings_path} (config input.ratings_path)")
    run_id = cfg.run_id
    crawl_date = crawl_date_for(spark, cfg, crawl_dir)
    report = IngestReport(run_id=run_id, crawl_date=crawl_date)
    for name in (S.ITEMS, S.POSTERS, S.RATINGS, S.QUARANTINE):
        report.tables[name] = ensure_table(spark, cfg.storage, name)
    stamp = [F.lit(crawl_date).alias(S.CRAWL_DATE), F.lit(run_id).alias(S.RUN_ID),
             F.current_timestamp().alias(S.INGESTED_AT)]
    persisted: list[DataFrame] = []

    # items
    parsed = parse_crawl(read_crawl_lines(spark, files)).persist()
    persisted.append(parsed)
    report.items.read = parsed.count()
    bad_items = parsed.filter(F.col(S.REASON).isNotNull())
    kept, dup_items = split_duplicate_items(parsed.filter(F.col(S.REASON).isNull()))
    items_src = kept.select(*_ITEM_FIELDS, S.SOURCE_FILE, *stamp).select(*S.ITEMS_SCHEMA.fieldNames()).persist()
    persisted.append(items_src)
    _apply(report.items, upsert_changed(spark, report.tables[S.ITEMS], items_src, [S.ITEM_ID], S.RECORD_HASH, S.CRAWL_DATE))
    q_items = quarantine_rows(bad_items.unionByName(dup_items.select(*bad_items.columns)), STAGE_ITEMS, run_id)

    # posters
    report.items_without_poster = items_src.filter(F.col(S.POSTER_PATH).isNull()).count()
    has_posters = items_src.filter(F.col(S.POSTER_PATH).isNotNull()).limit(1).count() > 0
    if has_posters and not fs.is_dir(spark, posters_dir):
        raise UserError(f"posters folder not found: {posters_dir} (config input.posters_dir)")
    max_bytes = cfg.ingest.max_poster_bytes
    if has_posters:
        meta, listed_bytes = list_poster_files(spark, posters_dir)
        matched = match_posters(items_src, meta, max_bytes, posters_dir).persist()
        persisted.append(matched)
        report.posters.read = matched.count()
        report.unreferenced_poster_files = meta.join(matched.select("file_name"), "file_name", "left_anti").count()
        content = read_poster_bytes(spark, posters_dir, max_bytes, listed_bytes)
        ok_files = matched.filter(F.col(S.REASON).isNull()).drop(S.REASON).join(content, "file_name", "inner")
        probed = probe_posters(ok_files, "content", cfg.ingest.max_poster_pixels).persist()
        persisted.append(probed)
        poster_src = probed.filter(F.col(S.REASON).isNull()).select(
            S.ITEM_ID, S.POSTER_PATH, F.col("content").alias(S.IMAGE), F.sha2("content", 256).alias(S.CONTENT_HASH),
            S.WIDTH, S.HEIGHT, S.FORMAT, F.col("length").alias(S.BYTE_SIZE), stamp[0],
            F.col("path").alias(S.SOURCE_FILE), *stamp[1:])
        _apply(report.posters, upsert_changed(spark, report.tables[S.POSTERS], poster_src, [S.ITEM_ID],
                                              S.CONTENT_HASH, S.CRAWL_DATE))
        bad_posters = matched.filter(F.col(S.REASON).isNotNull()).unionByName(
            probed.filter(F.col(S.REASON).isNotNull()).select(*matched.columns))
        q_posters = quarantine_rows(bad_posters.select(
            F.coalesce("path", F.lit(posters_dir)).alias(S.SOURCE_FILE),
            F.concat(F.lit("item_id="), F.col(S.ITEM_ID).cast("string"), F.lit(" poster_path="), F.col(S.POSTER_PATH)).alias(S.RECORD),
            S.REASON), STAGE_POSTERS, run_id)
    else:
        q_posters = None

    # ratings
    raw = read_ratings_raw(spark, cfg.input.ratings_path, cfg.input.ratings_format)
    known = spark.table(report.tables[S.ITEMS]).select(S.ITEM_ID)
    checked = validate_ratings(raw, known, cfg.ingest.min_rating, cfg.ingest.max_rating, crawl_date).persist()
    persisted.append(checked)
    report.ratings.read = checked.count()
    kept_r, dup_r = split_duplicate_ratings(checked.filter(F.col(S.REASON).isNull()))
    ratings_src = kept_r.select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP, S.SOURCE_FILE, *stamp[1:])
    _apply(report.ratings, upsert_changed(spark, report.tables[S.RATINGS], ratings_src,
                                          [S.CUSTOMER_ID, S.ITEM_ID], S.RATING, S.TIMESTAMP))
    q_ratings = quarantine_rows(checked.filter(F.col(S.REASON).isNotNull()).unionByName(dup_r), STAGE_RATINGS, run_id)

    # quarantine: this run's ingest rows, replaced as a whole (a rerun never doubles them)
    quarantine = q_items.unionByName(q_ratings)
    if q_posters is not None:
        quarantine = quarantine.unionByName(q_posters)
    misses = crawl_misses(spark, crawl_dir)
    if misses is not None:
        quarantine = quarantine.unionByName(quarantine_rows(misses, S.STAGE_INGEST_CRAWL, run_id))
    quarantine = quarantine.persist()
    persisted.append(quarantine)
    by_stage = {r[S.STAGE]: r["count"] for r in quarantine.groupBy(S.STAGE).count().collect()}
    report.items.quarantined = by_stage.get(STAGE_ITEMS, 0)
    report.posters.quarantined = by_stage.get(STAGE_POSTERS, 0)
    report.ratings.quarantined = by_stage.get(STAGE_RATINGS, 0)
    report.crawl_misses = by_stage.get(S.STAGE_INGEST_CRAWL, 0)
    replace_quarantine(spark, report.tables[S.QUARANTINE], quarantine, run_id, "ingest.")
    for df in persisted:
        df.unpersist()
    for name in ("items", "posters", "ratings"):
        getattr(report, name).check(name)
    return report
