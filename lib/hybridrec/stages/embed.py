"""Embed stage: poster images -> CNN feature vectors, distributed through an iterator pandas UDF.

The UDF decodes and resizes each poster on the executor (no image bytes pass through the
driver), runs the worker-cached extractor in inference batches, and returns either a vector or
a reason; failures go to ``quarantine`` and never fail a task. Only posters whose
(item, content hash, extractor) have no vector yet are computed, in chunks of
``embed.commit_every`` posters (consecutive by item id), each committed before the next starts:
a run killed after hours of GPU work keeps every finished chunk, and its rerun computes the rest.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from delta.tables import DeltaTable
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.features.backbones import ModelSpec, check_weights, get_extractor
from hybridrec.features.images import ASPECT_RULE, UnfitPoster, aspect_rule, decode_for_cnn
from hybridrec.runtime.faults import maybe_fail
from hybridrec.storage.quarantine import append_quarantine, quarantine_rows
from hybridrec.storage.tables import ensure_table, retry_on_conflict

STAGE_EMBED = S.STAGE_EMBED_POSTERS
POSTERS_PER_PARTITION = 1000
EMBED_RESULT = StructType([StructField(S.VECTOR, ArrayType(FloatType())), StructField(S.REASON, StringType())])


def assigned_gpus() -> list[str]:
    """GPU addresses Spark assigned to the running task (empty on CPU or outside a task)."""
    ctx = TaskContext.get()
    if ctx is None:
        return []
    gpu = ctx.resources().get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def embed_batches(spec: ModelSpec, batch_size: int, images: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
    """The iterator UDF's body: per Arrow batch, decode what decodes, embed in model batches."""
    extractor = None
    for batch in images:
        vectors: list[list[float] | None] = [None] * len(batch)
        reasons: list[str | None] = [None] * len(batch)
        arrays, slots = [], []
        for i, data in enumerate(batch):
            try:
                arrays.append(decode_for_cnn(bytes(data), spec.input_size, spec.resize, spec.max_aspect_ratio))
                slots.append(i)
            except UnfitPoster as exc:
                reasons[i] = str(exc)
            except Exception as exc:  # any decoder failure is a property of the file, not the job
                reasons[i] = f"poster could not be decoded for the CNN: {type(exc).__name__}: {exc}"
        if arrays:
            if extractor is None:
                extractor = get_extractor(spec, assigned_gpus())
            out = extractor(np.stack(arrays), batch_size=batch_size)
            for row, i in enumerate(slots):
                vectors[i] = out[row].tolist()
        yield pd.DataFrame({S.VECTOR: vectors, S.REASON: reasons})


def embed_column(spec: ModelSpec, batch_size: int) -> Callable[[Column], Column]:
    """A ``struct<vector, reason>`` iterator pandas UDF over a binary image column."""

    def udf(images: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        maybe_fail("embed")
        return embed_batches(spec, batch_size, images)

    return F.pandas_udf(udf, EMBED_RESULT)  # type: ignore[call-overload]


def _quarantine_record(item_id: Column, content_hash: Column, model_key: str) -> Column:
    return F.concat(F.lit("item_id="), item_id.cast("string"), F.lit(" content_hash="), content_hash,
                    F.lit(f" model_key={model_key}"))


def quarantined_posters(quarantine: DataFrame, model_key: str, max_aspect_ratio: float = 0.0) -> DataFrame:
    """(item_id, content_hash) that this extractor already quarantined (any run). A poster
    quarantined for its aspect ratio counts only under the same limit: after a change of
    ``embed.max_aspect_ratio`` it is judged again (and embedded, or quarantined with the new limit)."""
    pattern = r"^item_id=(\d+) content_hash=([0-9a-f]+) model_key=(\w+)$"
    rec, reason = F.col(S.RECORD), F.col(S.REASON)
    same_rule = ~reason.contains(ASPECT_RULE) | reason.contains(aspect_rule(max_aspect_ratio))
    return quarantine.filter((F.col(S.STAGE) == STAGE_EMBED) & same_rule).select(
        F.regexp_extract(rec, pattern, 1).cast("long").alias(S.ITEM_ID),
        F.regexp_extract(rec, pattern, 2).alias(S.CONTENT_HASH),
        F.regexp_extract(rec, pattern, 3).alias(S.MODEL_KEY),
    ).filter(F.col(S.MODEL_KEY) == model_key).drop(S.MODEL_KEY).distinct()


def posters_to_embed(posters: DataFrame, existing: DataFrame, model_key: str,
                     quarantined: DataFrame | None = None) -> DataFrame:
    """Posters with no vector yet for this extractor (by item, content hash and model key),
    leaving out those it already quarantined."""
    done = existing.filter(F.col(S.MODEL_KEY) == model_key).select(S.ITEM_ID, S.CONTENT_HASH)
    if quarantined is not None:
        done = done.unionByName(quarantined)
    return posters.join(done, on=[S.ITEM_ID, S.CONTENT_HASH], how="left_anti")


def compute_embeddings(todo: DataFrame, spec: ModelSpec, batch_size: int, run_id: str) -> DataFrame:
    """``todo`` (item_id, content_hash, image) -> rows with ``vector`` and ``reason``."""
    result = todo.select(S.ITEM_ID, S.CONTENT_HASH, embed_column(spec, batch_size)(F.col(S.IMAGE)).alias("_e"))
    return result.select(
        S.ITEM_ID, S.CONTENT_HASH,
        F.lit(spec.key).alias(S.MODEL_KEY), F.lit(spec.backbone_label).alias(S.BACKBONE),
        F.lit(spec.layer_label).alias(S.LAYER), F.lit(spec.weights_label).alias(S.WEIGHTS),
        F.size("_e.vector").cast("int").alias(S.DIMS), F.col("_e.vector").alias(S.VECTOR),
        F.lit(run_id).alias(S.RUN_ID), F.current_timestamp().alias(S.COMPUTED_AT),
        F.col("_e.reason").alias(S.REASON),
    )


def chunked(keys: list[tuple[int, str]], per_chunk: int) -> list[list[tuple[int, str]]]:
    """``keys`` (item id, content hash) sorted by item id and cut into consecutive chunks of at
    most ``per_chunk`` (one chunk for 0). Pure: every key in exactly one chunk, chunks in id order."""
    keys = sorted(keys)
    if not keys:
        return []
    step = per_chunk if per_chunk > 0 else len(keys)
    return [keys[i:i + step] for i in range(0, len(keys), step)]


@dataclass
class EmbedReport:
    run_id: str
    model_key: str
    weights: str
    posters: int = 0
    already_embedded: int = 0
    already_quarantined: int = 0
    computed: int = 0
    quarantined: int = 0
    chunks: int = 0  # chunks embedded and committed
    dims: int | None = None
    seconds: float = 0.0
    tables: dict[str, str] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return self.posters

    @property
    def rows_out(self) -> int:
        return self.computed + self.already_embedded

    def lines(self) -> list[str]:
        return [f"extractor {self.model_key} ({self.weights}), {self.dims or '-'} dims: posters {self.posters}, "
                f"already embedded {self.already_embedded}, already quarantined {self.already_quarantined}, "
                f"computed {self.computed} in {self.chunks} chunk(s), quarantined {self.quarantined}"]


def embed_chunk(spark: SparkSession, report: EmbedReport, todo: DataFrame, n_todo: int, spec: ModelSpec,
                batch_size: int, run_id: str) -> None:
    """Embed one chunk and commit it: its vectors (one MERGE), then its quarantine rows (appended).
    A kill between the two loses only the chunk's quarantine rows, whose posters the rerun
    judges again; a vector is never written twice (the MERGE is by key)."""
    # An explicit partition count: AQE would otherwise coalesce this small-row, heavy-byte
    # input into one partition and leave every core but one idle.
    parts = max(spark.sparkContext.defaultParallelism, -(-n_todo // POSTERS_PER_PARTITION))
    # Computed once and materialised with its lineage cut (a local checkpoint, not a cache): the
    # MERGE below plans its source again and scans it twice, and a cached plan it fails to match
    # would run the CNN again (measured: 3x the time with persist()).
    computed = compute_embeddings(todo.repartition(parts), spec, batch_size, run_id).localCheckpoint(eager=True)
    by_reason = {r["ok"]: r["count"] for r in computed.groupBy(F.col(S.REASON).isNull().alias("ok")).count().collect()}
    computed_ok, quarantined = by_reason.get(True, 0), by_reason.get(False, 0)
    if computed_ok:
        ok = computed.filter(F.col(S.REASON).isNull()).drop(S.REASON)
        table = report.tables[S.ITEM_EMBEDDINGS]
        retry_on_conflict(table, lambda: (  # a MERGE by key: rerunning it after a conflict is exact
            DeltaTable.forName(spark, table).alias("t")
            .merge(ok.alias("s"), f"t.{S.ITEM_ID} = s.{S.ITEM_ID} AND t.{S.MODEL_KEY} = s.{S.MODEL_KEY}")
            .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()))
        report.dims = int(ok.select(S.DIMS).first()[S.DIMS])  # type: ignore[index]
    if quarantined:
        bad = computed.filter(F.col(S.REASON).isNotNull()).select(
            F.lit(report.tables[S.POSTERS]).alias(S.SOURCE_FILE),
            _quarantine_record(F.col(S.ITEM_ID), F.col(S.CONTENT_HASH), spec.key).alias(S.RECORD), S.REASON)
        # appended: earlier runs' rows stay, and these posters are never retried
        append_quarantine(spark, report.tables[S.QUARANTINE], quarantine_rows(bad, STAGE_EMBED, run_id))
    report.computed += computed_ok
    report.quarantined += quarantined
    report.chunks += 1


def run_embed(spark: SparkSession, cfg: Config) -> EmbedReport:
    """Embed every poster that has no vector for the configured extractor; write the new ones."""
    spec = ModelSpec.from_conf(cfg.embed)
    check_weights(spec)  # before any Spark work
    run_id = cfg.run_id
    report = EmbedReport(run_id=run_id, model_key=spec.key, weights=spec.weights_label)
    for name in (S.POSTERS, S.ITEM_EMBEDDINGS, S.QUARANTINE):
        report.tables[name] = ensure_table(spark, cfg.storage, name)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.embed.arrow_batch_size))
    started = dt.datetime.now()
    posters = spark.table(report.tables[S.POSTERS]).select(S.ITEM_ID, S.CONTENT_HASH, S.IMAGE)
    existing = spark.table(report.tables[S.ITEM_EMBEDDINGS])
    earlier_bad = quarantined_posters(spark.table(report.tables[S.QUARANTINE]), spec.key, spec.max_aspect_ratio) \
        .withColumn("_bad", F.lit(True))
    done = existing.filter(F.col(S.MODEL_KEY) == spec.key).select(S.ITEM_ID, S.CONTENT_HASH) \
        .withColumn("_done", F.lit(True))
    status = posters.select(S.ITEM_ID, S.CONTENT_HASH).join(done, [S.ITEM_ID, S.CONTENT_HASH], "left") \
        .join(earlier_bad, [S.ITEM_ID, S.CONTENT_HASH], "left") \
        .select(F.when(F.col("_done"), "done").when(F.col("_bad"), "bad").otherwise("todo").alias("s"))
    counts = {r["s"]: r["count"] for r in status.groupBy("s").count().collect()}  # one job for all three
    report.already_embedded, report.already_quarantined = counts.get("done", 0), counts.get("bad", 0)
    n_todo = counts.get("todo", 0)
    report.posters = n_todo + report.already_embedded + report.already_quarantined
    if n_todo:
        todo = posters_to_embed(posters, existing, spec.key, earlier_bad.drop("_bad"))
        # The keys still to embed (an id and a hash each on the driver), cut into commits. Each chunk
        # joins the posters with its keys as a literal table, so what it computes depends on no
        # table this stage writes: committing a chunk cannot invalidate (and so recompute, now
        # empty) the next chunk's plan, nor its own before its quarantine rows are written.
        keys = [(int(r[0]), str(r[1])) for r in todo.select(S.ITEM_ID, S.CONTENT_HASH).collect()]
        for part in chunked(keys, cfg.embed.commit_every):
            chunk_keys = spark.createDataFrame(part, f"{S.ITEM_ID} long, {S.CONTENT_HASH} string")
            chunk = posters.join(F.broadcast(chunk_keys), [S.ITEM_ID, S.CONTENT_HASH], "inner")
            embed_chunk(spark, report, chunk, len(part), spec, cfg.embed.batch_size, run_id)
    report.seconds = (dt.datetime.now() - started).total_seconds()
    if report.posters != report.already_embedded + report.already_quarantined + report.computed + report.quarantined:
        raise RuntimeError(f"embed: posters {report.posters} != already {report.already_embedded} + computed "
                           f"{report.computed} + quarantined {report.quarantined}")
    return report
