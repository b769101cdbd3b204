"""Offline evaluation (paper §4, nDCG): hold out each customer's latest ratings, score every model on
the training part only, rank the held-out part, and compare models through one metric code path.

* **Split** (:func:`split_ratings`): per customer with at least ``min_ratings`` ratings, the latest
  ``holdout_fraction`` (at least one, never all) or the last ``holdout_last`` ratings by timestamp
  (ties: the larger item id is later) are held out; ``split: random`` holds out a seeded hash
  sample instead. Customers with fewer ratings stay wholly in training. ``split: new_items``
  holds out every rating of a seeded ``new_item_fraction`` of the items, and every model ranks
  only those items (the new-item protocol: nobody rated them in training).
* **Evaluated customers**: those with at least one relevant held-out rating (>= ``relevant_threshold``).
  Candidates are every item the customer did not rate in training.
* **Models**: see :mod:`hybridrec.evaluate_models`; each returns the top max(ks) per customer.
* **Metrics**: :mod:`hybridrec.ranking` per customer inside Spark tasks (partial sums), averaged
  over the evaluated customers; slice ``cold_start`` restricts the relevant items to those nobody
  rated in training (customers without one are left out of that slice).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Iterator, cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hybridrec import ranking
from hybridrec import schemas as S
from hybridrec.config import Config, EvaluateConf

PART = "part"
TRAIN = "train"
TEST = "test"
SLICE_ALL = "all"
SLICE_COLD = "cold_start"
EVAL_COLUMNS = [S.RUN_ID, S.MODEL, S.METRIC, S.K, S.SLICE, S.VALUE, S.CUSTOMERS]


def new_items(ratings: DataFrame, ec: EvaluateConf) -> DataFrame:
    """(item_id): a seeded ``new_item_fraction`` of the rated items (by a hash of id and seed)."""
    items = ratings.select(S.ITEM_ID).distinct()
    n = items.count()
    hidden = int(np.ceil(ec.new_item_fraction * n))
    return items.orderBy(F.xxhash64(S.ITEM_ID, F.lit(ec.seed)), S.ITEM_ID).limit(hidden)


def split_ratings(ratings: DataFrame, ec: EvaluateConf) -> DataFrame:
    """Ratings with a ``part`` column: ``train`` or ``test`` (see the module doc)."""
    if ec.split == "new_items":
        hidden = new_items(ratings, ec).withColumn("_hidden", F.lit(True))
        return ratings.join(F.broadcast(hidden), S.ITEM_ID, "left").withColumn(
            PART, F.when(F.col("_hidden"), F.lit(TEST)).otherwise(F.lit(TRAIN))).drop("_hidden") \
            .select(*ratings.columns, PART)
    n = F.count(F.lit(1)).over(Window.partitionBy(S.CUSTOMER_ID))
    if ec.split == "temporal":
        order = Window.partitionBy(S.CUSTOMER_ID).orderBy(F.desc(S.TIMESTAMP), F.desc(S.ITEM_ID))
    else:
        order = Window.partitionBy(S.CUSTOMER_ID).orderBy(
            F.xxhash64(S.CUSTOMER_ID, S.ITEM_ID, F.lit(ec.seed)), F.asc(S.ITEM_ID))
    pos = F.row_number().over(order)  # 1 = latest (or first in hash order)
    if ec.holdout_last > 0:
        n_test = F.least(F.lit(ec.holdout_last), n - 1)
    else:
        n_test = F.least(F.greatest(F.lit(1), F.floor(n * F.lit(ec.holdout_fraction)).cast("int")), n - 1)
    return ratings.withColumn("_n", n).withColumn("_pos", pos).withColumn(
        PART, F.when((F.col("_n") >= ec.min_ratings) & (F.col("_pos") <= n_test), F.lit(TEST)).otherwise(F.lit(TRAIN))
    ).drop("_n", "_pos")


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

    def lines(self) -> list[str]:
        out = [f"split: {self.train_ratings} training / {self.test_ratings} held-out ratings; "
               f"{self.customers} customers evaluated ({self.cold_customers} with a cold-start item)"]
        out += comparison_table(self.table, self.main_k, self.gain).splitlines()
        if self.seconds:
            out.append("seconds (fit + score / metrics): " + ", ".join(
                f"{m} {a:.0f}/{b:.0f}" for m, (a, b) in self.seconds.items()))
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


def run_evaluate(spark: SparkSession, cfg: Config) -> EvaluateReport:
    """Evaluate every configured model on the held-out split -> Delta ``evaluation`` (this run's rows
    replaced in one commit) and a report folder with the comparison table and plots."""
    from hybridrec.evaluate_models import ModelInputs, recommend_with
    from hybridrec.evaluate_report import write_report
    from hybridrec.tables import ensure_table, replace_rows, sql_str

    ec = cfg.evaluate
    report = EvaluateReport(run_id=cfg.run_id, main_k=10 if 10 in ec.ks else ec.ks[0], gain=ec.gain)
    ratings = spark.table(ensure_table(spark, cfg, S.RATINGS)).select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING, S.TIMESTAMP)
    split = split_ratings(ratings, ec).localCheckpoint(eager=True)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    test = split.filter(F.col(PART) == TEST).drop(PART)
    report.train_ratings, report.test_ratings = train.count(), test.count()
    truth = relevant_truth(test, ec.relevant_threshold).localCheckpoint(eager=True)
    report.customers = truth.count()
    counts_pdf = cast(pd.DataFrame, train.groupBy(S.ITEM_ID).agg(F.countDistinct(S.CUSTOMER_ID).alias("n")).toPandas())
    counts = dict(zip(counts_pdf[S.ITEM_ID].astype(int), counts_pdf["n"].astype(int)))
    ctx = MetricContext(tuple(ec.ks), ec.gain, counts, train.select(S.CUSTOMER_ID).distinct().count(),
                        unit_vectors(spark, cfg))
    catalogue = spark.table(ensure_table(spark, cfg, S.ITEMS)).count()
    candidates = test.select(S.ITEM_ID).distinct() if ec.split == "new_items" else None
    inputs = ModelInputs(train=train, customers=truth.select(S.CUSTOMER_ID), n=max(ec.ks), candidates=candidates)
    frames = []
    for model in ec.models:
        started = time.perf_counter()
        recs = recommend_with(spark, cfg, model, inputs).localCheckpoint(eager=True)
        scored = time.perf_counter()
        m = model_metrics(spark, recs, truth, ctx, catalogue)
        m.insert(0, S.MODEL, model)
        frames.append(m)
        report.seconds[model] = (scored - started, time.perf_counter() - scored)
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, S.RUN_ID, cfg.run_id)
    table[S.K] = table[S.K].astype(np.int32)
    table[S.VALUE] = table[S.VALUE].round(12)  # float sums in any order give the same stored value
    cold = table[(table[S.SLICE] == SLICE_COLD)][S.CUSTOMERS]
    report.cold_customers = int(cold.max()) if len(cold) else 0
    report.table = table
    out = ensure_table(spark, cfg, S.EVALUATION)
    rows = spark.createDataFrame(table[EVAL_COLUMNS]).withColumn(
        S.COMPUTED_AT, F.lit(dt.datetime.now(dt.timezone.utc)).cast("timestamp"))
    replace_rows(spark, out, rows, f"{S.RUN_ID} = {sql_str(cfg.run_id)}", compare_cols=EVAL_COLUMNS)
    report.report_path = str(write_report(spark, cfg, table, report))
    return report


def unit_vectors(spark: SparkSession, cfg: Config) -> dict[int, np.ndarray]:
    """item -> unit-norm poster vector of the configured extractor (for intra-list diversity)."""
    from hybridrec.similarity import collect_vectors, embedding_vectors, normalise

    ids, matrix = collect_vectors(embedding_vectors(spark, cfg))
    unit = normalise(matrix).astype(np.float32)
    return {int(i): unit[r] for r, i in enumerate(ids)}
