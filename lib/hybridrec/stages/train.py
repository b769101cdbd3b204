"""Train stage: the paper's stacked genre classifier (CMODEL on a frozen CNN), evaluated like Table 2.

Stage 1 trains the head (:mod:`hybridrec.features.classifier`) on the stored poster vectors; the
optional stage 2 re-learns the CNN's last block on the images with a reduced learning rate. Thresholds
are tuned per genre on validation items only; ``classifier_metrics`` gets this run's per-genre rows and
``item_categories`` the current model's view of every item.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hybridrec import schemas as S
from hybridrec.config import Config, TrainConf
from hybridrec.errors import UserError
from hybridrec.features.backbones import ModelSpec, preprocess_mode
from hybridrec.features.classifier import (FEATS, PROBS, build_head, compile_head, fine_tune, fit, prediction_column,
                                           seed_everything, with_predictions)
from hybridrec.features.classify import (LABELS, TEST, TRAIN, UNLABELLED, VAL, assign_splits, categories,
                                         choose_genres, genre_counts, labelled_items, vector_moments)
from hybridrec.features.loaders import LOADER
from hybridrec.features.vectors import embedding_vectors
from hybridrec.metrics.classification import BinaryMetrics, binary_metrics, tune_threshold
from hybridrec.runtime.guards import arrow_batch_rows, worker_crash_as_error
from hybridrec.runtime.session import is_debug
from hybridrec.storage.tables import ensure_table, replace_rows, sql_str

STAGE_HEAD, STAGE_FINE_TUNE = "head", "fine_tune"


# ---- evaluation -----------------------------------------------------------------------
def evaluate(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             genres: Sequence[str]) -> list[tuple[str, BinaryMetrics]]:
    """Per genre: threshold tuned on validation (y, p), metrics on test (y, p)."""
    (yv, pv), (yt, pt) = val, test
    return [(g, binary_metrics(yt[:, i], pt[:, i], tune_threshold(yv[:, i], pv[:, i]))) for i, g in enumerate(genres)]


def table2(rows: list[tuple[str, BinaryMetrics]], title: str) -> list[str]:
    """The per-genre table, laid out like the paper's Table 2 plus the baselines."""
    out = [title, f"{'genre':<16} {'acc':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'ROC-AUC':>8} {'thresh':>7} "
                  f"{'test':>5} {'pos':>5} {'F1 maj':>7} {'F1 rnd':>7}"]
    for g, m in rows:
        auc = f"{m.roc_auc:8.3f}" if m.roc_auc is not None else f"{'-':>8}"
        out.append(f"{g:<16} {m.accuracy:6.3f} {m.precision:6.3f} {m.recall:6.3f} {m.f1:6.3f} {auc} {m.threshold:7.3f} "
                   f"{m.n:5d} {m.positives:5d} {m.f1_majority:7.3f} {m.f1_random:7.3f}")
    return out


@dataclass
class TrainReport:
    run_id: str
    loader: str = LOADER
    genres: list[str] = field(default_factory=list)
    items: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, list[tuple[str, BinaryMetrics]]] = field(default_factory=dict)
    cv: list[tuple[int, str, BinaryMetrics]] = field(default_factory=list)
    model_uri: str = ""
    plot: str = ""
    mlflow_run_id: str | None = None
    registered_uri: str | None = None  # models:/<name>/<version> when registered in MLflow
    registered_version: str | None = None
    categorised: int = 0

    @property
    def rows_in(self) -> int:
        return self.items

    @property
    def rows_out(self) -> int:
        return self.categorised

    def lines(self) -> list[str]:
        out = [f"{self.items} items with poster vectors ({', '.join(f'{k} {v}' for k, v in sorted(self.splits.items()))}); "
               f"{len(self.genres)} genres: {', '.join(self.genres)}; loader {self.loader}",
               f"epochs run: {', '.join(f'{k} {v}' for k, v in self.epochs.items())}; model {self.model_uri}; "
               f"loss plot {self.plot}"]
        for stage, rows in self.metrics.items():
            out += table2(rows, f"test metrics ({stage}; thresholds tuned on validation items):")
        if self.cv:
            folds = sorted({f for f, _, _ in self.cv})
            out.append(f"{len(folds)}-fold cross-validation, mean test F1 / ROC-AUC per genre:")
            for g in self.genres:
                ms = [m for _, gg, m in self.cv if gg == g]
                aucs = [m.roc_auc for m in ms if m.roc_auc is not None]
                out.append(f"  {g:<16} F1 {np.mean([m.f1 for m in ms]):.3f}  ROC-AUC "
                           f"{np.mean(aucs) if aucs else float('nan'):.3f}")
        out.append(f"item_categories: {self.categorised} items" +
                   (f"; MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else "") +
                   (f"; registered model {self.registered_uri}" if self.registered_uri else ""))
        return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _evaluate_splits(pred: DataFrame, genres: Sequence[str]) -> list[tuple[str, BinaryMetrics]]:
    """:func:`evaluate` on the validation and test rows of ``pred``, collected in one pass (one run of
    the prediction UDF, one model load per worker): (labels, probs) per split, ordered by item id."""
    rows = pred.filter(F.col(S.SPLIT).isin(VAL, TEST)).select(S.SPLIT, S.ITEM_ID, LABELS, PROBS) \
        .orderBy(S.ITEM_ID).collect()

    def part(split: str) -> tuple[np.ndarray, np.ndarray]:
        mine = [r for r in rows if r[S.SPLIT] == split]
        return (np.array([r[LABELS] for r in mine], np.float32).reshape(len(mine), len(genres)),
                np.array([r[PROBS] for r in mine], np.float32).reshape(len(mine), len(genres)))

    return evaluate(part(VAL), part(TEST), genres)


def _metric_rows(run_id: str, stage: str, fold: int | None, rows: list[tuple[str, BinaryMetrics]],
                 model_uri: str) -> list[tuple[Any, ...]]:
    """``classifier_metrics`` rows (schema order) for one stage and fold."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return [(run_id, stage, fold, g, m.n, m.positives, m.threshold, m.accuracy, m.precision, m.recall, m.f1,
             m.roc_auc, m.f1_majority, m.f1_random, model_uri, now) for g, m in rows]


def _plot_losses(histories: dict[str, dict[str, list[float]]], path: Path) -> None:
    """The paper's Fig. 3: loss per epoch (training and validation) for each training stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for stage, h in histories.items():
        epochs = np.arange(1, len(h["loss"]) + 1) + offset
        ax.plot(epochs, h["loss"], label=f"{stage} training loss")
        ax.plot(epochs, h["val_loss"], "--", label=f"{stage} validation loss")
        offset += len(h["loss"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.set_title("Genre classifier training (epoch vs loss)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class Logged:
    """What MLflow recorded: the run, and the registered model's URI and version (None when no
    ``train.mlflow_registered_model`` is configured)."""

    run_id: str
    model_uri: str | None = None
    version: str | None = None


def _keras_signature(model: Any) -> Any:
    """The model's MLflow signature: a float32 tensor of its input shape to its (items, genres)
    probabilities, inferred by running it on two zero inputs."""
    from mlflow.models import infer_signature

    x = np.zeros((2, *[int(d) for d in model.input_shape[1:]]), np.float32)
    return infer_signature(x, np.asarray(model.predict(x, verbose=0), np.float32))


def _mlflow_log(tc: TrainConf, report: TrainReport, run_dir: Path, final_path: Path,
                thresholds: Sequence[float], debug: bool) -> Logged:
    """Log the run (params, per-genre metrics, every artifact) and the final classifier as an MLflow
    Keras model with a signature; register it when ``train.mlflow_registered_model`` is set."""
    try:
        import mlflow
    except ImportError:
        raise UserError("train.mlflow_tracking_uri is set but mlflow is not installed: "
                        "pip install 'hybridrec[mlflow]'") from None
    if not debug:  # the stage prints its own line with the run and the version
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    from hybridrec.features.tflib import quiet_import

    quiet_import()
    import keras

    mlflow.set_tracking_uri(tc.mlflow_tracking_uri)
    if tc.mlflow_registry_uri:
        mlflow.set_registry_uri(tc.mlflow_registry_uri)
    if tc.mlflow_artifact_location and mlflow.get_experiment_by_name(tc.mlflow_experiment) is None:
        mlflow.create_experiment(tc.mlflow_experiment, artifact_location=tc.mlflow_artifact_location)
    mlflow.set_experiment(tc.mlflow_experiment)
    with mlflow.start_run(run_name=f"classifier-{report.run_id}") as run:
        params = {k: v for k, v in dataclasses.asdict(tc).items() if k != "fine_tune" and not k.startswith("mlflow")}
        params.update({f"fine_tune.{k}": v for k, v in dataclasses.asdict(tc.fine_tune).items()})
        params["genres"] = ",".join(report.genres)
        mlflow.log_params({k: str(v) for k, v in params.items()})
        for stage, rows in report.metrics.items():
            for g, m in rows:
                mlflow.log_metrics({f"{stage}.{_safe(g)}.f1": m.f1, f"{stage}.{_safe(g)}.accuracy": m.accuracy,
                                    f"{stage}.{_safe(g)}.roc_auc": m.roc_auc if m.roc_auc is not None else float("nan")})
        mlflow.log_artifacts(str(run_dir), artifact_path="classifier")
        model = keras.saving.load_model(str(final_path), compile=False)
        try:
            info = mlflow.keras.log_model(
                model, name="model", signature=_keras_signature(model),
                registered_model_name=tc.mlflow_registered_model or None,
                metadata={"genres": list(report.genres), "thresholds": [float(t) for t in thresholds],
                          "input": "image" if final_path.name.startswith("fine_tuned") else "poster vector",
                          "hybridrec_run_id": report.run_id})
        except Exception as exc:  # noqa: BLE001 - a registry refusal is the user's to fix, in one line
            if tc.mlflow_registered_model:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"train: registering the classifier as {tc.mlflow_registered_model!r} in "
                                f"{tc.mlflow_registry_uri or tc.mlflow_tracking_uri} failed: {first}") from None
            raise
        version = getattr(info, "registered_model_version", None)
        if tc.mlflow_registered_model and version is not None:
            return Logged(str(run.info.run_id), f"models:/{tc.mlflow_registered_model}/{version}", str(version))
        return Logged(str(run.info.run_id))


# ---- the stage --------------------------------------------------------------------------
def run_train(spark: SparkSession, cfg: Config) -> TrainReport:
    """Train and evaluate the classifier; write ``classifier_metrics`` (this run's rows) and
    ``item_categories`` (the current model's view of every item, replaced atomically)."""
    tc = cfg.train
    spec = ModelSpec.from_conf(cfg.embed)
    report = TrainReport(run_id=cfg.run_id)
    items = spark.table(ensure_table(spark, cfg.storage, S.ITEMS))
    vectors = embedding_vectors(spark, cfg.storage, cfg.embed)
    with_vector = items.join(vectors.select(S.ITEM_ID), S.ITEM_ID, "left_semi")
    counts = genre_counts(with_vector)
    report.genres = choose_genres(counts, tc.genres, tc.min_items)
    data = assign_splits(labelled_items(items, vectors, report.genres), report.genres, counts, tc.test_fraction,
                         tc.val_fraction, tc.seed, tc.folds).repartition(spark.sparkContext.defaultParallelism,
                                                                         S.ITEM_ID).persist()
    report.splits = {r[S.SPLIT]: int(r["count"]) for r in data.groupBy(S.SPLIT).count().collect()}
    report.items = sum(report.splits.values())
    for part in (TRAIN, VAL, TEST):
        if not report.splits.get(part):
            raise UserError(f"train: the {part} part is empty ({report.items} items with vectors for extractor "
                            f"{spec.key}); run embed first, or change train.test_fraction / train.val_fraction")
    data_dir = cfg.data_dir
    run_dir = Path(tc.model_dir or data_dir / "models") / f"classifier-{_safe(cfg.run_id)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_url = tc.petastorm_cache_url or (data_dir / "petastorm").as_uri()
    mean, var = vector_moments(data.filter(F.col(S.SPLIT) == TRAIN))
    dims, n_genres = len(mean), len(report.genres)
    histories: dict[str, dict[str, list[float]]] = {}

    def vec_xy(b: Any) -> Any:
        return b.x, b.y

    def head_on(train: DataFrame, val: DataFrame, seed: int, path: Path) -> dict[str, list[float]]:
        seed_everything(seed)
        model = compile_head(build_head(dims, n_genres, tc, mean, var), tc)
        rows = lambda df: df.select(F.col(S.VECTOR).alias("x"), F.col(LABELS).alias("y")).orderBy(S.ITEM_ID)  # noqa: E731
        h = fit(spark, model, rows(train), rows(val), cache_url, tc.batch_size, tc.epochs, tc.patience, seed, vec_xy)
        model.save(path)
        return h

    # stage 1: the head on stored vectors
    head_path = run_dir / "head.keras"
    histories[STAGE_HEAD] = head_on(data.filter(F.col(S.SPLIT) == TRAIN), data.filter(F.col(S.SPLIT) == VAL),
                                    tc.seed, head_path)
    report.epochs[STAGE_HEAD] = len(histories[STAGE_HEAD]["loss"])
    pred = with_predictions(data, prediction_column(str(head_path), "vector"), S.VECTOR).persist()
    report.metrics[STAGE_HEAD] = _evaluate_splits(pred, report.genres)
    final_path, final_pred = head_path, pred

    if tc.folds > 1:
        labelled = data.filter(F.col(S.SPLIT) != UNLABELLED)
        for f in range(tc.folds):
            fold_path = run_dir / f"head-fold{f}.keras"
            # test: fold f; validation: a seeded val_fraction of the other folds; train: the rest
            is_test = F.col(S.FOLD) == f
            is_val = ~is_test & (F.pmod(F.xxhash64(F.lit(tc.seed), F.lit(f), S.ITEM_ID), F.lit(10_000))
                                 < F.lit(int(max(tc.val_fraction, 0.05) * 10_000)))
            head_on(labelled.filter(~is_test & ~is_val), labelled.filter(is_val), tc.seed + 1 + f, fold_path)
            fp = with_predictions(labelled.filter(is_test | is_val).withColumn(
                S.SPLIT, F.when(is_test, TEST).otherwise(VAL)), prediction_column(str(fold_path), "vector"), S.VECTOR)
            for g, m in _evaluate_splits(fp, report.genres):
                report.cv.append((f, g, m))

    if tc.fine_tune.enabled:
        final_path = run_dir / "fine_tuned.keras"
        posters = spark.table(ensure_table(spark, cfg.storage, S.POSTERS)).select(S.ITEM_ID, S.IMAGE)
        # images cross into Python in Arrow batches of embed.arrow_batch_size rows (at Spark's default,
        # 10,000, the decoded training pixels alone are 1.5 GB a batch at 224x224), and any worker
        # crash ends in one line
        with arrow_batch_rows(spark, cfg.embed.arrow_batch_size), worker_crash_as_error("train.fine_tune"):
            histories[STAGE_FINE_TUNE] = fine_tune(spark, tc, spec, data, posters, head_path, final_path, cache_url)
            report.epochs[STAGE_FINE_TUNE] = len(histories[STAGE_FINE_TUNE]["loss"])
            b = spec.backbones[0]
            predict = prediction_column(str(final_path), "image", spec.input_size, spec.resize, preprocess_mode(b))
            final_pred = with_predictions(data.drop(S.VECTOR).join(posters, S.ITEM_ID), predict, S.IMAGE) \
                .drop(S.IMAGE).persist()
            report.metrics[STAGE_FINE_TUNE] = _evaluate_splits(final_pred, report.genres)
    report.model_uri = str(final_path)

    # artifacts: loss plot, metrics, genres
    report.plot = str(run_dir / "loss.png")
    _plot_losses(histories, Path(report.plot))
    (run_dir / "genres.json").write_text(json.dumps(report.genres))
    (run_dir / "history.json").write_text(json.dumps(histories))

    # tables
    metric_rows = []
    for stage, rows in report.metrics.items():
        metric_rows += _metric_rows(cfg.run_id, stage, None, rows, str(head_path if stage == STAGE_HEAD else final_path))
    for f in sorted({f for f, _, _ in report.cv}):
        metric_rows += _metric_rows(cfg.run_id, STAGE_HEAD, f, [(g, m) for ff, g, m in report.cv if ff == f],
                                    str(run_dir / f"head-fold{f}.keras"))
    replace_rows(spark, ensure_table(spark, cfg.storage, S.CLASSIFIER_METRICS),
                 spark.createDataFrame(metric_rows, S.CLASSIFIER_METRICS_SCHEMA), f"{S.RUN_ID} = {sql_str(cfg.run_id)}")
    final_stage = STAGE_FINE_TUNE if tc.fine_tune.enabled else STAGE_HEAD
    thresholds = [m.threshold for _, m in report.metrics[final_stage]]
    # logged (and registered) before item_categories is written, so every row names the model version
    if tc.mlflow_tracking_uri:
        logged = _mlflow_log(tc, report, run_dir, final_path, thresholds, is_debug(cfg))
        report.mlflow_run_id, report.registered_uri, report.registered_version = \
            logged.run_id, logged.model_uri, logged.version
    cats = categories(final_pred, report.genres, thresholds).select(
        S.ITEM_ID, S.GENRE_PROBS, S.PREDICTED_GENRES, F.col(FEATS).alias(S.FEATURES), S.LABELLED, S.SPLIT,
        F.lit(report.registered_uri or report.model_uri).alias(S.MODEL_URI), F.lit(cfg.run_id).alias(S.RUN_ID),
        F.current_timestamp().alias(S.COMPUTED_AT),
        F.lit(report.registered_version).cast("string").alias(S.MODEL_VERSION)).localCheckpoint(eager=True)
    report.categorised = cats.count()
    replace_rows(spark, ensure_table(spark, cfg.storage, S.ITEM_CATEGORIES), cats, "true")
    (run_dir / "metrics.txt").write_text("\n".join(report.lines()) + "\n")
    for df in (pred, final_pred, data):
        df.unpersist()
    return report


