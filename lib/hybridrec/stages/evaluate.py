"""Evaluate stage: hold out each customer's latest ratings (:mod:`hybridrec.datasets.splits`), fit
every configured model on the rest with the same classes the recommend stage serves
(:mod:`hybridrec.models`), score their lists against the held-out part
(:mod:`hybridrec.evaluation`), and write ``evaluation`` plus a report with the comparison table and
plots. With ``split: new_items`` every model ranks only the hidden items."""
from __future__ import annotations

import datetime as dt
import time
from typing import cast

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.datasets.splits import PART, TEST, TRAIN, split_ratings
from hybridrec.evaluation.harness import (EVAL_COLUMNS, SLICE_COLD, EvaluateReport, MetricContext, model_metrics,
                                          relevant_truth, unit_vectors)
from hybridrec.evaluation.report import report_dir, write_report
from hybridrec.features.vectors import embedding_vectors
from hybridrec.models.base import FitData, Fitted, ModelConf
from hybridrec.models.registry import make_model
from hybridrec.stages.inputs import fit_data, run_neighbors
from hybridrec.storage.tables import ensure_table, replace_rows, sql_str


def training_fit_data(spark: SparkSession, cfg: Config, train: DataFrame) -> FitData:
    """What every model is fitted on: the training part, and this run's stored neighbours only when
    they learned nothing from ratings (so nothing held out leaks in)."""
    stored = run_neighbors(spark, cfg)
    if stored is not None and stored.recipe.uses_ratings:
        stored = None
    return fit_data(spark, cfg, train, stored)


def fit_model(data: FitData, conf: ModelConf, name: str) -> Fitted:
    """Model ``name`` fitted on ``data``, as the evaluation fits every model."""
    return make_model(name, conf).fit(data)


def model_lists(data: FitData, conf: ModelConf, name: str, customers: DataFrame | None, n: int,
                candidates: DataFrame | None = None) -> DataFrame:
    """Model ``name`` fitted on ``data`` as the evaluation fits every model, and its top-n of
    ``customers`` (customer_id, rank, item_id, score, because_item_id, source)."""
    return fit_model(data, conf, name).recommend(customers, n, candidates)


def run_evaluate(spark: SparkSession, cfg: Config) -> EvaluateReport:
    """Evaluate every configured model on the held-out split -> Delta ``evaluation`` (this run's rows
    replaced in one commit) and a report folder with the comparison table and plots."""
    ec = cfg.evaluate
    report = EvaluateReport(run_id=cfg.run_id, main_k=10 if 10 in ec.ks else ec.ks[0], gain=ec.gain)
    ratings = spark.table(ensure_table(spark, cfg.storage, S.RATINGS)).select(S.CUSTOMER_ID, S.ITEM_ID, S.RATING,
                                                                               S.TIMESTAMP)
    split = split_ratings(ratings, ec).localCheckpoint(eager=True)
    train = split.filter(F.col(PART) == TRAIN).drop(PART)
    test = split.filter(F.col(PART) == TEST).drop(PART)
    report.train_ratings, report.test_ratings = train.count(), test.count()
    truth = relevant_truth(test, ec.relevant_threshold).localCheckpoint(eager=True)
    report.customers = truth.count()
    counts_pdf = cast(pd.DataFrame, train.groupBy(S.ITEM_ID).agg(F.countDistinct(S.CUSTOMER_ID).alias("n")).toPandas())
    counts = dict(zip(counts_pdf[S.ITEM_ID].astype(int), counts_pdf["n"].astype(int)))
    ctx = MetricContext(tuple(ec.ks), ec.gain, counts, train.select(S.CUSTOMER_ID).distinct().count(),
                        unit_vectors(embedding_vectors(spark, cfg.storage, cfg.embed)))
    items = spark.table(ensure_table(spark, cfg.storage, S.ITEMS))
    catalogue = items.count()
    candidates = test.select(S.ITEM_ID).distinct() if ec.split == "new_items" else None
    customers = truth.select(S.CUSTOMER_ID)
    data = training_fit_data(spark, cfg, train)
    conf = ModelConf.from_config(cfg)
    frames = []
    for name in ec.models:
        started = time.perf_counter()
        fitted = fit_model(data, conf, name)
        report.fitted[name] = fitted.lines()
        recs = fitted.recommend(customers, max(ec.ks), candidates) \
            .select(S.CUSTOMER_ID, F.col(S.RANK).cast("int").alias(S.RANK), S.ITEM_ID, S.SCORE) \
            .localCheckpoint(eager=True)
        scored = time.perf_counter()
        m = model_metrics(spark, recs, truth, ctx, catalogue)
        m.insert(0, S.MODEL, name)
        frames.append(m)
        report.seconds[name] = (scored - started, time.perf_counter() - scored)
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, S.RUN_ID, cfg.run_id)
    table[S.K] = table[S.K].astype(np.int32)
    table[S.VALUE] = table[S.VALUE].round(12)  # float sums in any order give the same stored value
    cold = table[(table[S.SLICE] == SLICE_COLD)][S.CUSTOMERS]
    report.cold_customers = int(cold.max()) if len(cold) else 0
    report.table = table
    out = ensure_table(spark, cfg.storage, S.EVALUATION)
    rows = spark.createDataFrame(table[EVAL_COLUMNS]).withColumn(
        S.COMPUTED_AT, F.lit(dt.datetime.now(dt.timezone.utc)).cast("timestamp"))
    replace_rows(spark, out, rows, f"{S.RUN_ID} = {sql_str(cfg.run_id)}", compare_cols=EVAL_COLUMNS)
    report.report_path = str(write_report(report_dir(ec, cfg.data_dir, cfg.run_id), ec, table, report, items))
    return report
