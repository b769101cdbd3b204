"""The evaluation report: a folder with ``report.md`` (tables + linked plots), ``report.html`` (the
same, plots embedded: one self-contained file to mail or attach), one bar chart per metric, and
the crawl's genre distribution (the paper's Fig. 2)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S

if TYPE_CHECKING:
    from hybridrec.config import Config
    from hybridrec.evaluate import EvaluateReport


def report_dir(cfg: "Config") -> Path:
    base = Path(cfg.evaluate.report_dir).expanduser() if cfg.evaluate.report_dir else cfg.data_dir / "reports"
    return base / f"evaluation-{cfg.run_id}"


def _bar(path: Path, labels: list[str], values: list[float], title: str, ylabel: str, rotate: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(labels) + 2), 3.6))
    ax.bar(labels, values, color="#4c72b0")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if rotate:
        ax.tick_params(axis="x", labelrotation=60)
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(spark: SparkSession, cfg: "Config", table: pd.DataFrame, report: "EvaluateReport") -> Path:
    """Write the report folder for this run; returns the Markdown file's path."""
    from hybridrec.evaluate import SHOWN, SLICE_ALL, SLICE_COLD, comparison_table
    from hybridrec.tables import ensure_table

    out = report_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    k = report.main_k
    models = list(dict.fromkeys(table[S.MODEL]))
    plots: list[tuple[str, str]] = []
    for metric in SHOWN:
        rows = table[(table[S.K] == k) & (table[S.METRIC] == metric) & (table[S.SLICE] == SLICE_ALL)]
        values = [float(rows[rows[S.MODEL] == m][S.VALUE].iloc[0]) if (rows[S.MODEL] == m).any() else 0.0
                  for m in models]
        name = f"{metric}_at_{k}.png"
        _bar(out / name, models, values, f"{metric}@{k} by model", metric, rotate=True)
        plots.append((name, f"{metric}@{k}"))
    genres = cast(pd.DataFrame, spark.table(ensure_table(spark, cfg, S.ITEMS)).select(F.explode(S.GENRES).alias("g")) \
        .groupBy("g").count().orderBy(F.desc("count"), "g").toPandas())
    _bar(out / "genre_distribution.png", genres["g"].tolist(), genres["count"].astype(float).tolist(),
         "Movies per genre in the crawl (paper Fig. 2)", "movies", rotate=True)
    plots.append(("genre_distribution.png", "genre distribution"))

    per_k = table[table[S.SLICE] == SLICE_ALL].pivot_table(index=[S.MODEL, S.K], columns=S.METRIC, values=S.VALUE)
    cold = table[table[S.SLICE] == SLICE_COLD].pivot_table(index=[S.MODEL, S.K], columns=S.METRIC, values=S.VALUE)
    md = [f"# Evaluation of run {cfg.run_id}", "",
          f"Split: {cfg.evaluate.split}, held out {_holdout(cfg)} per customer with at least "
          f"{cfg.evaluate.min_ratings} ratings; relevant = held-out rating >= {cfg.evaluate.relevant_threshold}. "
          f"{report.train_ratings} training and {report.test_ratings} held-out ratings; {report.customers} customers "
          f"evaluated, {report.cold_customers} with a relevant item nobody rated in training (cold start).", "",
          f"## Comparison at k = {k}", "", comparison_table(table, k, report.gain), "",
          "## Every cut-off", "", _md(per_k), "", "## Cold-start slice", "",
          _md(cold) if not cold.empty else "(no relevant held-out item is cold in this split)", "", "## Plots", ""]
    md += [f"![{label}]({name})" for name, label in plots]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    body = "".join(f"<h3>{html.escape(label)}</h3><img src='data:image/png;base64,"
                   f"{base64.b64encode((out / name).read_bytes()).decode()}'/>" for name, label in plots)
    (out / "report.html").write_text(
        f"<html><head><meta charset='utf-8'><title>Evaluation {html.escape(cfg.run_id)}</title></head><body>"
        f"<h1>Evaluation of run {html.escape(cfg.run_id)}</h1><pre>{html.escape(chr(10).join(md[:9]))}</pre>"
        f"<h2>Every cut-off</h2>{per_k.round(4).to_html()}<h2>Cold-start slice</h2>{cold.round(4).to_html()}"
        f"<h2>Plots</h2>{body}</body></html>")
    return path


def _holdout(cfg: "Config") -> str:
    ec = cfg.evaluate
    return f"the last {ec.holdout_last}" if ec.holdout_last > 0 else f"{ec.holdout_fraction:.0%} (at least one)"


def _md(frame: pd.DataFrame) -> str:
    frame = frame.round(4).reset_index()
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
