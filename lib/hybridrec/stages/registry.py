"""The stage registry: every pipeline stage in order, with what runs before its session starts."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.features.backbones import ModelSpec, check_weights
from hybridrec.runtime.timing import Timer
from hybridrec.stages.embed import run_embed
from hybridrec.stages.evaluate import run_evaluate
from hybridrec.stages.ingest import preflight as ingest_preflight
from hybridrec.stages.ingest import run_ingest
from hybridrec.stages.maintenance import RUN_TABLES, run_maintenance
from hybridrec.stages.recommend import run_recommend
from hybridrec.stages.similarity import run_similarity
from hybridrec.stages.train import run_train


class StageReport(Protocol):
    """What every stage returns."""

    run_id: str

    @property
    def rows_in(self) -> int: ...

    @property
    def rows_out(self) -> int: ...

    def lines(self) -> list[str]: ...


def _no_checks(cfg: Config) -> None:
    return None


def _no_notes(cfg: Config) -> list[str]:
    return []


def _embed_preflight(cfg: Config) -> None:
    check_weights(ModelSpec.from_conf(cfg.embed))  # before the session starts


def _embed_notes(cfg: Config) -> list[str]:
    spec = ModelSpec.from_conf(cfg.embed)
    notes = []
    if spec.uses_random:
        notes.append("note: embed uses seeded RANDOM weights (offline demo; vectors carry no ImageNet "
                     "semantics). For real features: --set 'embed.backbones=[{name: vgg19, weights: imagenet}]' with "
                     "the weights in $KERAS_HOME/models")
    if spec.input_size != 224:
        notes.append(f"note: embed input size {spec.input_size}x{spec.input_size} (the paper uses 224; "
                     "the demo conf is smaller to run fast on a laptop)")
    return notes


def _all_lines(report: StageReport) -> list[str]:
    return report.lines()


def _first_and_last(report: StageReport) -> list[str]:
    lines = report.lines()
    return lines[:1] + lines[-1:]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its checks before any Spark work, its run, and what the pipeline prints."""

    name: str
    run: Callable[[SparkSession, Config], StageReport]
    preflight: Callable[[Config], None] = _no_checks
    notes: Callable[[Config], list[str]] = _no_notes  # printed before it runs
    progress: Callable[[StageReport], list[str]] = field(default=_all_lines)  # printed under its progress line
    writes: tuple[str, ...] = ()  # the tables (and views) it writes: what later stages and analysts may read


STAGES: tuple[Stage, ...] = (
    Stage("ingest", run_ingest, preflight=ingest_preflight, writes=(S.ITEMS, S.POSTERS, S.RATINGS, S.QUARANTINE)),
    Stage("embed", run_embed, preflight=_embed_preflight, notes=_embed_notes,
          writes=(S.ITEM_EMBEDDINGS, S.QUARANTINE)),
    Stage("train", run_train, writes=(S.CLASSIFIER_METRICS, S.ITEM_CATEGORIES)),
    Stage("similarity", run_similarity, writes=(S.ITEM_NEIGHBORS,)),
    Stage("recommend", run_recommend, writes=(S.RECOMMENDATIONS, S.RECOMMENDATIONS_CURRENT, S.RECOMMENDATIONS_LATEST,
                                              S.NEW_ITEM_RECOMMENDATIONS)),
    Stage("evaluate", run_evaluate, progress=_first_and_last, writes=(S.EVALUATION,)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
# A stage of its own job (weekly), never part of the pipeline.
MAINTENANCE = Stage("maintenance", run_maintenance, writes=RUN_TABLES)


def stage(name: str) -> Stage:
    """A pipeline stage, or the maintenance job's, by name."""
    return next(s for s in (*STAGES, MAINTENANCE) if s.name == name)


events = logging.getLogger("hybridrec.events")  # one JSON object a line; jobs.common prints it bare


def stage_event(report: StageReport, name: str, seconds: float) -> str:
    """The stage's machine-readable log line: run id, stage, rows in and out, seconds."""
    return json.dumps({"event": "stage_done", "run_id": report.run_id, "stage": name,
                       "rows_in": int(report.rows_in), "rows_out": int(report.rows_out),
                       "seconds": round(seconds, 3)}, sort_keys=True)


def run_stage(spark: SparkSession, cfg: Config, st: Stage) -> tuple[StageReport, float]:
    """Run one stage under its own Spark job description (the Spark UI names the stage and the
    run on every job it starts), then log its JSON event line. Returns the report and seconds."""
    sc = spark.sparkContext
    sc.setJobDescription(f"hybridrec {st.name} (run {cfg.run_id})")
    timer = Timer()
    try:
        report = st.run(spark, cfg)
    finally:
        sc.setJobDescription(None)  # type: ignore[arg-type]
    seconds = timer.seconds
    events.info(stage_event(report, st.name, seconds))
    return report, seconds
