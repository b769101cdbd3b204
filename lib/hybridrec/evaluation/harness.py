"""Offline evaluation's metric side (paper §4, nDCG): models' top-n lists against the held-out
truth, through one code path for every model. It never imports a model: the evaluate stage fits
them (:mod:`hybridrec.models`) and hands their lists over.

* **Evaluated customers**: those with at least one relevant held-out rating (>= ``relevant_threshold``).
* **Metrics**: :mod:`hybridrec.metrics.ranking` per customer inside Spark tasks (partial sums),
  averaged over the evaluated customers; slice ``cold_start`` restricts the relevant items to those
  nobody rated in training (customers without one are left out of that slice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.metrics import ranking
from hybridrec.neighbors.kernels import normalise
from hybridrec.runtime.collect import collect_vectors

SLICE_ALL = "all"
SLICE_COLD = "cold_start"
EVAL_COLUMNS = [S.RUN_ID, S.MODEL, S.METRIC, S.K, S.SLICE, S.VALUE, S.CUSTOMERS]


@dataclass(frozen=True)
class MetricContext:
    """What the per-customer kernel needs besides the lists (broadcast once)."""

    ks: tuple[int, ...]
    gain: str  # graded | binary
    counts: dict[int, int]  # item -> training customers who rated it
    n_customers: int  # training customers
    unit_vectors: dict[int, np.ndarray]  # item -> unit poster vector (diversity)


PARTIAL_SCHEMA = f"{S.SLICE} string, {S.METRIC} string, {S.K} int, _sum double, _n long"


def _partials(pdf: pd.DataFrame, ctx: MetricContext) -> pd.DataFrame:
    """Per-slice, per-metric sums and customer counts over the customers of one batch."""
    sums: dict[tuple[str, str, int], float] = {}
    counts: dict[tuple[str, str, int], int] = {}
    for items, ratings, lst in zip(pdf["_t_items"], pdf["_t_ratings"], pdf["_list"]):
        ranked = [int(x) for x in lst] if lst is not None else []
        gains = {int(i): (float(r) if ctx.gain == "graded" else 1.0) for i, r in zip(items, ratings)}
        cold = {i: g for i, g in gains.items() if ctx.counts.get(i, 0) == 0}
        for slice_name, g in ((SLICE_ALL, gains), (SLICE_COLD, cold)):
            if not g:
                continue
            for k in ctx.ks:
                for m, v in ranking.customer_metrics(ranked, g, k, ctx.counts, ctx.n_customers, ctx.unit_vectors).items():
                    key = (slice_name, m, k)
                    sums[key] = sums.get(key, 0.0) + v
                    counts[key] = counts.get(key, 0) + 1
    return pd.DataFrame([(s, m, k, sums[(s, m, k)], counts[(s, m, k)]) for (s, m, k) in sums],
                        columns=[S.SLICE, S.METRIC, S.K, "_sum", "_n"])


def relevant_truth(test: DataFrame, threshold: float) -> DataFrame:
    """(customer_id, _t_items, _t_ratings): each evaluated customer's relevant held-out items."""
    return test.filter(F.col(S.RATING) >= threshold).groupBy(S.CUSTOMER_ID).agg(
        F.collect_list(S.ITEM_ID).alias("_t_items"), F.collect_list(S.RATING).alias("_t_ratings"))


def score_lists(recs: DataFrame) -> DataFrame:
    """(customer_id, rank, item_id) -> (customer_id, _list): items in rank order."""
    return recs.groupBy(S.CUSTOMER_ID).agg(F.sort_array(F.collect_list(F.struct(S.RANK, S.ITEM_ID))).alias("_l")) \
        .select(S.CUSTOMER_ID, F.col(f"_l.{S.ITEM_ID}").alias("_list"))


def model_metrics(spark: SparkSession, recs: DataFrame, truth: DataFrame, ctx: MetricContext,
                  catalogue_size: int) -> pd.DataFrame:
    """(slice, metric, k, value, customers) for one model's lists, via the per-customer kernel."""
    b_ctx = spark.sparkContext.broadcast(ctx)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield _partials(pdf, b_ctx.value)

    joined = truth.join(score_lists(recs), S.CUSTOMER_ID, "left")
    parts = joined.mapInPandas(run, PARTIAL_SCHEMA)  # type: ignore[arg-type]
    agg = cast(pd.DataFrame, parts.groupBy(S.SLICE, S.METRIC, S.K).agg(F.sum("_sum").alias("_sum"),
                                                                         F.sum("_n").alias("_n")).toPandas())
    agg[S.VALUE] = agg["_sum"] / agg["_n"]
    agg[S.CUSTOMERS] = agg["_n"].astype(np.int64)
    rows = [agg[[S.SLICE, S.METRIC, S.K, S.VALUE, S.CUSTOMERS]]]
    evaluated = truth.select(S.CUSTOMER_ID)
    n_eval = int(agg.loc[agg[S.SLICE] == SLICE_ALL, "_n"].max()) if len(agg) else 0
    for k in ctx.ks:
        distinct = recs.join(evaluated, S.CUSTOMER_ID, "left_semi").filter(F.col(S.RANK) <= k) \
            .select(S.ITEM_ID).distinct().count()
        rows.append(pd.DataFrame([{S.SLICE: SLICE_ALL, S.METRIC: "coverage", S.K: k,
                                   S.VALUE: distinct / catalogue_size if catalogue_size else 0.0,
                                   S.CUSTOMERS: n_eval}]))
    b_ctx.destroy()
    return pd.concat(rows, ignore_index=True)


@dataclass
class EvaluateReport:
    run_id: str
    train_ratings: int = 0
    test_ratings: int = 0
    customers: int = 0
    cold_customers: int = 0
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    report_path: str = ""
    main_k: int = 10
    gain: str = "graded"
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (fit + score, metrics)
    fitted: dict[str, list[str]] = field(default_factory=dict)  # model -> what was fitted (tuned settings, ...)

    @property
    def rows_in(self) -> int:
        return self.train_ratings + self.test_ratings

    @property
    def rows_out(self) -> int:
        return len(self.table)

    def lines(self) -> list[str]:
        out = [f"split: {self.train_ratings} training / {self.test_ratings} held-out ratings; "
               f"{self.customers} customers evaluated ({self.cold_customers} with a cold-start item)"]
        out += comparison_table(self.table, self.main_k, self.gain).splitlines()
        if self.seconds:
            out.append("seconds (fit + score / metrics): " + ", ".join(
                f"{m} {a:.0f}/{b:.0f}" for m, (a, b) in self.seconds.items()))
        for lines in self.fitted.values():
            out += lines
        if self.report_path:
            out.append(f"report: {self.report_path}")
        return out


SHOWN = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "novelty", "diversity")


def comparison_table(table: pd.DataFrame, k: int, gain: str) -> str:
    """A Markdown table: one row per model, the metrics at k (slice all) and the cold-start recall."""
    if table.empty:
        return "(no evaluation rows)"
    at = table[(table[S.K] == k)]
    header = ["model"] + [f"{m}@{k}" for m in SHOWN] + [f"cold recall@{k}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in list(dict.fromkeys(table[S.MODEL])):
        row = [model]
        for m in SHOWN:
            v = at[(at[S.MODEL] == model) & (at[S.METRIC] == m) & (at[S.SLICE] == SLICE_ALL)][S.VALUE]
            row.append(f"{float(v.iloc[0]):.4f}" if len(v) else "-")
        v = at[(at[S.MODEL] == model) & (at[S.METRIC] == "recall") & (at[S.SLICE] == SLICE_COLD)][S.VALUE]
        row.append(f"{float(v.iloc[0]):.4f}" if len(v) else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append(f"(nDCG gain: {gain}, log2 discount; mean over evaluated customers)")
    return "\n".join(lines)


def unit_vectors(vectors: DataFrame) -> dict[int, np.ndarray]:
    """item -> unit-norm vector of (item_id, vector) (the poster embeddings: intra-list diversity)."""
    ids, matrix = collect_vectors(vectors)
    unit = normalise(matrix).astype(np.float32)
    return {int(i): unit[r] for r, i in enumerate(ids)}
