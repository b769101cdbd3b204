"""The whole pipeline: (demo crawl) -> every selected stage of the registry in order, one progress
line each, then the analyst views and a summary of what was written."""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.crawl.demo import write_demo
from hybridrec.evaluation.harness import EvaluateReport
from hybridrec.runtime.session import build_session
from hybridrec.runtime.timing import Timer
from hybridrec.stages.registry import STAGE_NAMES, STAGES, run_stage
from hybridrec.storage.views import create_views


def _progress(stage: str, rows_in: int, rows_out: int, seconds: float) -> None:
    print(f"[{stage:<10}] rows in {rows_in:>8}  rows out {rows_out:>8}  {seconds:7.1f}s", flush=True)


def _indented(lines: list[str]) -> None:
    for line in lines:
        print("             " + line, flush=True)


def _show(spark: SparkSession, title: str, query: str, n: int = 5) -> None:
    print(f"\n{title}\n  {query}")
    rows = spark.sql(query).limit(n).collect()
    if not rows:
        print("  (no rows)")
        return
    cols = list(rows[0].asDict().keys())
    print("  " + " | ".join(cols))
    for r in rows:
        print("  " + " | ".join(str(r[c]) for c in cols))


def run_pipeline(spark: SparkSession, cfg: Config, stages: tuple[str, ...] = STAGE_NAMES) -> EvaluateReport | None:
    """Run the requested stages in registry order, printing one progress line each; returns the
    evaluation report when the evaluate stage ran."""
    evaluation = None
    for stage in STAGES:
        if stage.name not in stages:
            continue
        _indented(stage.notes(cfg))
        report, seconds = run_stage(spark, cfg, stage)
        _progress(stage.name, report.rows_in, report.rows_out, seconds)
        _indented(stage.progress(report))
        if isinstance(report, EvaluateReport):
            evaluation = report
    return evaluation


def main_pipeline(cfg: Config, stages: tuple[str, ...]) -> None:
    """The pipeline command's body: the demo crawl when configured and absent, every stage's checks
    before the session starts, the stages, the views, and a summary."""
    total = Timer()
    if cfg.demo.enabled and not Path(cfg.input.crawl_dir).exists():
        t = Timer()
        demo = write_demo(cfg.demo, cfg.ingest.max_poster_bytes)
        _progress("demo", 0, demo.movies + demo.ratings, t.seconds)
    for stage in STAGES:
        if stage.name in stages:
            stage.preflight(cfg)
    spark = build_session(cfg)
    evaluation = run_pipeline(spark, cfg, stages)
    views = create_views(spark, cfg.storage)
    print(f"\nanalyst views: {', '.join(v.split('.')[-1].strip('`') for v in views)}")
    print(f"\ndone in {total.seconds:.1f}s - run id {cfg.run_id}; tables in database "
          f"{cfg.database}; local warehouse {cfg.data_dir / 'warehouse'}")
    _show(spark, "sample of items:", f"SELECT {S.ITEM_ID}, {S.TITLE}, {S.GENRES}, release_year FROM {cfg.table(S.ITEMS)} "
          f"ORDER BY popularity DESC")
    _show(spark, "quarantine of this run, by reason:",
          f"SELECT {S.STAGE}, {S.REASON}, count(*) AS n FROM {cfg.table(S.QUARANTINE)} "
          f"WHERE {S.RUN_ID} = '{cfg.run_id}' GROUP BY 1, 2 ORDER BY 1, 2", n=50)
    if "recommend" in stages:
        _show(spark, "recommendations of the newest run (a sample):",
              f"SELECT r.{S.CUSTOMER_ID}, r.{S.RANK}, i.{S.TITLE}, round(r.{S.SCORE}, 3) AS {S.SCORE}, "
              f"b.{S.TITLE} AS because_you_rated, r.{S.SOURCE} "
              f"FROM {cfg.table(S.RECOMMENDATIONS_LATEST)} r JOIN {cfg.table(S.ITEMS)} i USING ({S.ITEM_ID}) "
              f"LEFT JOIN {cfg.table(S.ITEMS)} b ON b.{S.ITEM_ID} = r.{S.BECAUSE_ITEM_ID} "
              f"WHERE r.{S.CUSTOMER_ID} = (SELECT min({S.CUSTOMER_ID}) FROM {cfg.table(S.RECOMMENDATIONS_LATEST)} "
              f"WHERE {S.SOURCE} = 'neighbors') ORDER BY r.{S.RANK}", n=10)
    if evaluation is not None:
        print(f"\nevaluation of run {cfg.run_id} (held-out ratings; table evaluation, report "
              f"{evaluation.report_path}):")
        print("\n".join(evaluation.lines()[:-1]))
    print("\nquery them: hybridrec sql \"SELECT * FROM "
          f"{cfg.table(S.ITEMS)} LIMIT 10\"")
