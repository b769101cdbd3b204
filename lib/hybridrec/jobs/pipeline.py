"""The whole pipeline: (demo crawl) -> ingest -> ... with a progress line per stage and a summary."""
from __future__ import annotations

import sys
from pathlib import Path

from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.errors import UserError
from hybridrec.backbones import ModelSpec, check_weights
from hybridrec.embed import run_embed
from hybridrec.evaluate import EvaluateReport, run_evaluate
from hybridrec.ingest import preflight, run_ingest
from hybridrec.jobs.common import Timer, job_parser, parse_config, run_main
from hybridrec.jobs.demo import write_demo
from hybridrec.recommend import run_recommend
from hybridrec.session import build_session
from hybridrec.similarity import run_similarity
from hybridrec.train import run_train

STAGES = ("ingest", "embed", "train", "similarity", "recommend", "evaluate")


def _progress(stage: str, rows_in: int, rows_out: int, seconds: float) -> None:
    print(f"[{stage:<10}] rows in {rows_in:>8}  rows out {rows_out:>8}  {seconds:7.1f}s", flush=True)


def _report(stage: str, rows_in: int, rows_out: int, timer: Timer, lines: list[str]) -> None:
    _progress(stage, rows_in, rows_out, timer.seconds)
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


def run_pipeline(spark: SparkSession, cfg: Config, stages: tuple[str, ...] = STAGES) -> EvaluateReport | None:
    """Run the requested stages in order, printing one progress line each; returns the evaluation
    report when the evaluate stage ran."""
    if "ingest" in stages:
        t = Timer()
        report = run_ingest(spark, cfg)
        read = report.items.read + report.posters.read + report.ratings.read
        quarantined = sum(getattr(report, n).quarantined for n in ("items", "posters", "ratings"))
        _report("ingest", read, read - quarantined, t, report.lines())
    if "embed" in stages:
        t = Timer()
        spec = ModelSpec.from_conf(cfg.embed)
        if spec.uses_random:
            print("             note: embed uses seeded RANDOM weights (offline demo; vectors carry no ImageNet "
                  "semantics). For real features: --set 'embed.backbones=[{name: vgg19, weights: imagenet}]' with "
                  "the weights in $KERAS_HOME/models", flush=True)
        if spec.input_size != 224:
            print(f"             note: embed input size {spec.input_size}x{spec.input_size} (the paper uses 224; "
                  "the demo conf is smaller to run fast on a laptop)", flush=True)
        emb = run_embed(spark, cfg)
        _report("embed", emb.posters, emb.computed + emb.already_embedded, t, emb.lines())
    if "train" in stages:
        t = Timer()
        tr = run_train(spark, cfg)
        _report("train", tr.items, tr.categorised, t, tr.lines())
    if "similarity" in stages:
        t = Timer()
        sim = run_similarity(spark, cfg)
        _report("similarity", sim.items, sim.rows, t, sim.lines())
    if "recommend" in stages:
        t = Timer()
        rec = run_recommend(spark, cfg)
        _report("recommend", rec.customers, rec.rows, t, rec.lines())
    if "evaluate" in stages:
        t = Timer()
        ev = run_evaluate(spark, cfg)
        _report("evaluate", ev.train_ratings + ev.test_ratings, len(ev.table), t, ev.lines()[:1] + ev.lines()[-1:])
        return ev
    return None

def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        parser = job_parser(__doc__ or "pipeline")
        parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
        args, cfg = parse_config(parser, argv)
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise UserError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
        total = Timer()
        if cfg.demo.enabled and not Path(cfg.input.crawl_dir).exists():
            t = Timer()
            demo = write_demo(cfg)
            _progress("demo", 0, demo.movies + demo.ratings, t.seconds)
        if "ingest" in stages:
            preflight(cfg)
        if "embed" in stages:
            check_weights(ModelSpec.from_conf(cfg.embed))
        spark = build_session(cfg)
        evaluation = run_pipeline(spark, cfg, stages)
        from hybridrec.views import create_views

        views = create_views(spark, cfg)
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
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
