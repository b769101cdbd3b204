"""The evaluation report: a folder with ``report.md`` (tables + linked plots), ``report.html`` (the
same, plots embedded: one self-contained file to mail or attach), one bar chart per metric, and
the crawl's genre distribution (the paper's Fig. 2)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import cast

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import EvaluateConf
from hybridrec.evaluation.harness import SHOWN, SLICE_ALL, SLICE_COLD, EvaluateReport, comparison_table


def report_dir(ec: EvaluateConf, data_dir: Path, run_id: str) -> Path:
    """``evaluate.report_dir`` (default ``<data_dir>/reports``) / ``evaluation-<run id>``."""
    base = Path(ec.report_dir).expanduser() if ec.report_dir else data_dir / "reports"
    return base / f"evaluation-{run_id}"


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


def write_report(out: Path, ec: EvaluateConf, table: pd.DataFrame, report: EvaluateReport, items: DataFrame) -> Path:
    """Write the report folder ``out`` for this run (``items``: the crawl, for its genre
    distribution); returns the Markdown file's path."""
    run_id = report.run_id
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
    genres = cast(pd.DataFrame, items.select(F.explode(S.GENRES).alias("g")).groupBy("g").count().orderBy(F.desc("count"), "g").toPandas())
    _bar(out / "genre_distribution.png", genres["g"].tolist(), genres["count"].astype(float).tolist(),
         "Movies per genre in the crawl (paper Fig. 2)", "movies", rotate=True)
    plots.append(("genre_distribution.png", "genre distribution"))

    per_k = table[table[S.SLICE] == SLICE_ALL].pivot_table(index=[S.MODEL, S.K], columns=S.METRIC, values=S.VALUE)
    cold = table[table[S.SLICE] == SLICE_COLD].pivot_table(index=[S.MODEL, S.K], columns=S.METRIC, values=S.VALUE)
    md = [f"# Evaluation of run {run_id}", "",
          f"Split: {ec.split}, held out {_holdout(ec)} per customer with at least "
          f"{ec.min_ratings} ratings; relevant = held-out rating >= {ec.relevant_threshold}. "
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
        f"<html><head><meta charset='utf-8'><title>Evaluation {html.escape(run_id)}</title></head><body>"
        f"<h1>Evaluation of run {html.escape(run_id)}</h1><pre>{html.escape(chr(10).join(md[:9]))}</pre>"
        f"<h2>Every cut-off</h2>{per_k.round(4).to_html()}<h2>Cold-start slice</h2>{cold.round(4).to_html()}"
        f"<h2>Plots</h2>{body}</body></html>")
    return path


def _holdout(ec: EvaluateConf) -> str:
    return f"the last {ec.holdout_last}" if ec.holdout_last > 0 else f"{ec.holdout_fraction:.0%} (at least one)"


def _md(frame: pd.DataFrame) -> str:
    frame = frame.round(4).reset_index()
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
