"""Train: the paper's stacked genre classifier (CMODEL on a frozen CNN), evaluated like Table 2.

Stage 1 trains the head — Normalization -> Dense(hidden, relu) -> Dropout -> Dense(G, sigmoid) —
on the stored poster vectors; the optional stage 2 re-learns the CNN's last block on the images
with a reduced learning rate (SGD with momentum by default). Training rows stream from Delta
through :mod:`hybridrec.loaders` (petastorm) into ``tf.data``; predictions for every item run on
the executors through a pandas UDF. Thresholds are tuned per genre on validation items only.
TensorFlow is imported inside the functions that need it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StructField, StructType

from hybridrec import schemas as S
from hybridrec.backbones import ModelSpec, configure_devices, preprocess, worker_cached, _build_one, _preprocess_mode
from hybridrec.classify import (LABELS, TEST, TRAIN, UNLABELLED, VAL, assign_splits, categories, choose_genres,
                                genre_counts, labelled_items, vector_moments)
from hybridrec.config import Config, TrainConf
from hybridrec.errors import UserError
from hybridrec.images import decode_for_cnn
from hybridrec.loaders import LOADER, tf_dataset
from hybridrec.metrics import BinaryMetrics, binary_metrics, tune_threshold
from hybridrec.tables import ensure_table, replace_rows, sql_str

PROBS, FEATS = "probs", "feats"
PIXELS = "pixels"
FEATURES_LAYER, OUTPUT_LAYER = "features", "genres"
PREDICTION = StructType([StructField(PROBS, ArrayType(FloatType())), StructField(FEATS, ArrayType(FloatType()))])
STAGE_HEAD, STAGE_FINE_TUNE = "head", "fine_tune"


# ---- the model ------------------------------------------------------------------------
def build_head(dims: int, n_genres: int, tc: TrainConf, mean: np.ndarray, var: np.ndarray) -> Any:
    """CMODEL: standardise the CNN vector, Dense(hidden, relu) -> Dropout -> Dense(G, sigmoid)."""
    import keras

    inp = keras.Input((dims,), name="vector")
    # near-constant dimensions carry no signal: a variance floor keeps them from being blown up
    # (which would also make fine-tuning the CNN below numerically unstable)
    floor = max(float(np.mean(var)) * 1e-3, 1e-12)
    x = keras.layers.Normalization(mean=mean, variance=np.maximum(var, floor), name="standardize")(inp)
    x = keras.layers.Dense(tc.hidden, activation="relu", name=FEATURES_LAYER)(x)
    x = keras.layers.Dropout(tc.dropout, name="dropout")(x)
    out = keras.layers.Dense(n_genres, activation="sigmoid", name=OUTPUT_LAYER)(x)
    return keras.Model(inp, out, name="cmodel")


def _optimizer(name: str, lr: float, momentum: float) -> Any:
    import keras

    # gradients clipped by global norm: harmless for the head, a guard when fine-tuning the CNN
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum, global_clipnorm=1.0)
    return keras.optimizers.Adam(learning_rate=lr, global_clipnorm=1.0)


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _read_all(ds: Any, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Exactly one pass (n rows) of a repeating loader dataset, as numpy (x, y)."""
    xs, ys = [], []
    for batch in ds.take(math.ceil(n / batch_size)):
        xs.append(batch[0].numpy())
        ys.append(batch[1].numpy())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def fit(spark: SparkSession, model: Any, train_df: DataFrame, val_df: DataFrame, cache_url: str, batch_size: int,
        epochs: int, patience: int, seed: int, to_xy: Callable[[Any], Any]) -> dict[str, list[float]]:
    """Keras fit on rows streamed by the loader: training rows shuffled by a seeded buffer, the
    validation part read once; early stopping on validation loss with the best weights kept."""
    import keras

    with tf_dataset(spark, train_df, cache_url, batch_size, shuffle_buffer=4096, seed=seed) as (train, n_train), \
            tf_dataset(spark, val_df, cache_url, batch_size) as (val, n_val):
        val_xy = _read_all(val.map(to_xy), n_val, batch_size)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        history = model.fit(train.map(to_xy), steps_per_epoch=max(1, math.ceil(n_train / batch_size)),
                            validation_data=val_xy, batch_size=batch_size, epochs=epochs,
                            callbacks=[stop, keras.callbacks.TerminateOnNaN()],
                            shuffle=False, verbose=0)  # shuffled by the loader, seeded
    losses = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if not all(math.isfinite(v) for vals in losses.values() for v in vals):
        raise RuntimeError(f"training diverged (loss {losses.get('loss', [])[-3:]}): lower the learning rate "
                           "(train.learning_rate / train.fine_tune.learning_rate)")
    return losses


# ---- predictions on the executors -------------------------------------------------------
def _predictor(model_path: str) -> Any:
    """(features, probs) model for a saved classifier, cached per Python worker."""

    def build() -> Any:
        configure_devices([], 0)
        import keras

        m = keras.saving.load_model(model_path, compile=False)
        return keras.Model(m.input, [m.get_layer(FEATURES_LAYER).output, m.output])

    return worker_cached("classifier:" + model_path, build)


def predict_batches(model_path: str, kind: str, size: int, resize: str, mode: str,
                    batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
    """The prediction UDF's body: ``kind`` vector (stored embeddings) or image (poster bytes)."""
    model = None
    for batch in batches:
        if kind == "vector":
            x = np.stack([np.asarray(v, np.float32) for v in batch]) if len(batch) else np.zeros((0, 1), np.float32)
        else:
            x = preprocess(np.stack([decode_for_cnn(bytes(b), size, resize) for b in batch]), mode)
        if model is None:
            model = _predictor(model_path)
        feats, probs = model.predict_on_batch(x) if len(x) else (np.zeros((0, 1)), np.zeros((0, 1)))
        yield pd.DataFrame({PROBS: [p.astype(np.float32).tolist() for p in np.asarray(probs)],
                            FEATS: [f.astype(np.float32).tolist() for f in np.asarray(feats)]})


def prediction_column(model_path: str, kind: str, size: int = 0, resize: str = "pad",
                      mode: str = "none") -> Callable[[Column], Column]:
    def udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        return predict_batches(model_path, kind, size, resize, mode, batches)

    return F.pandas_udf(udf, PREDICTION)  # type: ignore[call-overload]


def with_predictions(df: DataFrame, predict: Callable[[Column], Column], input_col: str) -> DataFrame:
    """``df`` plus ``probs`` and ``feats`` from a :func:`prediction_column` over ``input_col``."""
    return df.withColumn("_p", predict(F.col(input_col))).select(
        "*", F.col("_p.probs").alias(PROBS), F.col("_p.feats").alias(FEATS)).drop("_p")


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
    categorised: int = 0

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
                   (f"; MLflow run {self.mlflow_run_id}" if self.mlflow_run_id else ""))
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


def _mlflow_log(tc: TrainConf, report: TrainReport, run_dir: Path) -> str:
    try:
        import mlflow
    except ImportError:
        raise UserError("train.mlflow_tracking_uri is set but mlflow is not installed: pip install mlflow-skinny") from None
    mlflow.set_tracking_uri(tc.mlflow_tracking_uri)
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
        return str(run.info.run_id)


# ---- the stage --------------------------------------------------------------------------
def run_train(spark: SparkSession, cfg: Config) -> TrainReport:
    """Train and evaluate the classifier; write ``classifier_metrics`` (this run's rows) and
    ``item_categories`` (the current model's view of every item, replaced atomically)."""
    tc = cfg.train
    spec = ModelSpec.from_conf(cfg.embed)
    report = TrainReport(run_id=cfg.run_id)
    items = spark.table(ensure_table(spark, cfg, S.ITEMS))
    vectors = spark.table(ensure_table(spark, cfg, S.ITEM_EMBEDDINGS)).filter(F.col(S.MODEL_KEY) == spec.key) \
        .select(S.ITEM_ID, S.VECTOR)
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
        _seed_everything(seed)
        model = build_head(dims, n_genres, tc, mean, var)
        model.compile(optimizer=_optimizer(tc.optimizer, tc.learning_rate, tc.momentum), loss="binary_crossentropy")
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
        histories[STAGE_FINE_TUNE] = fine_tune(spark, cfg, spec, data, head_path, final_path, cache_url)
        report.epochs[STAGE_FINE_TUNE] = len(histories[STAGE_FINE_TUNE]["loss"])
        posters = spark.table(ensure_table(spark, cfg, S.POSTERS)).select(S.ITEM_ID, S.IMAGE)
        b = spec.backbones[0]
        predict = prediction_column(str(final_path), "image", spec.input_size, spec.resize, _preprocess_mode(b))
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
    replace_rows(spark, ensure_table(spark, cfg, S.CLASSIFIER_METRICS),
                 spark.createDataFrame(metric_rows, S.CLASSIFIER_METRICS_SCHEMA), f"{S.RUN_ID} = {sql_str(cfg.run_id)}")
    final_stage = STAGE_FINE_TUNE if tc.fine_tune.enabled else STAGE_HEAD
    thresholds = [m.threshold for _, m in report.metrics[final_stage]]
    cats = categories(final_pred, report.genres, thresholds).select(
        S.ITEM_ID, S.GENRE_PROBS, S.PREDICTED_GENRES, F.col(FEATS).alias(S.FEATURES), S.LABELLED, S.SPLIT,
        F.lit(report.model_uri).alias(S.MODEL_URI), F.lit(cfg.run_id).alias(S.RUN_ID),
        F.current_timestamp().alias(S.COMPUTED_AT)).localCheckpoint(eager=True)
    report.categorised = cats.count()
    replace_rows(spark, ensure_table(spark, cfg, S.ITEM_CATEGORIES), cats, "true")
    (run_dir / "metrics.txt").write_text("\n".join(report.lines()) + "\n")
    if tc.mlflow_tracking_uri:
        report.mlflow_run_id = _mlflow_log(tc, report, run_dir)
    for df in (pred, final_pred, data):
        df.unpersist()
    return report


# ---- stage 2: fine-tuning the CNN's last block ----------------------------------------------
def decode_pixels(size: int, resize: str) -> Callable[[Column], Column]:
    """Poster bytes -> the CNN's input as raw uint8 RGB (size*size*3 bytes), on the executors."""

    def udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for batch in batches:
            yield pd.Series([decode_for_cnn(bytes(b), size, resize).astype(np.uint8).tobytes() for b in batch])

    return F.pandas_udf(udf, BinaryType())  # type: ignore[call-overload]


def fine_tune(spark: SparkSession, cfg: Config, spec: ModelSpec, data: DataFrame, head_path: Path, out_path: Path,
              cache_url: str) -> dict[str, list[float]]:
    """Stack the trained head on the CNN, re-learn the layers named ``fine_tune.trainable_prefix*``
    on the posters (decoded by executors, streamed by the loader), early stopping on validation."""
    import keras
    import tensorflow as tf

    ft, tc = cfg.train.fine_tune, cfg.train
    if len(spec.backbones) != 1:
        raise UserError("train.fine_tune needs a single backbone in embed.backbones (an ensemble has several)")
    b = spec.backbones[0]
    mode, size = _preprocess_mode(b), spec.input_size
    _seed_everything(tc.seed)
    cnn = _build_one(b, spec)
    trainable = 0
    for layer in cnn.layers:
        layer.trainable = layer.name.startswith(ft.trainable_prefix)
        trainable += int(layer.trainable)
    if not trainable:
        raise UserError(f"train.fine_tune.trainable_prefix '{ft.trainable_prefix}' matches no layer of {b.name}")
    head = keras.saving.load_model(str(head_path), compile=False)
    inp = keras.Input((size, size, 3), name="image")
    x = cnn(inp)
    for name in ("standardize", FEATURES_LAYER, "dropout", OUTPUT_LAYER):
        x = head.get_layer(name)(x)
    model = keras.Model(inp, x, name="cmodel_fine_tuned")
    model.compile(optimizer=_optimizer(ft.optimizer, ft.learning_rate, ft.momentum), loss="binary_crossentropy")
    posters = spark.table(cfg.table(S.POSTERS)).select(S.ITEM_ID, S.IMAGE)

    def rows(split: str) -> DataFrame:
        return data.filter(F.col(S.SPLIT) == split).select(S.ITEM_ID, LABELS).join(posters, S.ITEM_ID) \
            .select(S.ITEM_ID, decode_pixels(size, spec.resize)(F.col(S.IMAGE)).alias(PIXELS),
                    F.col(LABELS).alias("y")).orderBy(S.ITEM_ID).drop(S.ITEM_ID)

    def img_xy(batch: Any) -> Any:
        pixels = tf.reshape(tf.io.decode_raw(batch.pixels, tf.uint8), (-1, size, size, 3))
        return preprocess_tf(tf.cast(pixels, tf.float32), mode), batch.y

    h = fit(spark, model, rows(TRAIN), rows(VAL), cache_url, ft.batch_size, ft.epochs, ft.patience, tc.seed, img_xy)
    model.save(out_path)
    return h


def preprocess_tf(x: Any, mode: str) -> Any:
    """:func:`hybridrec.backbones.preprocess` on a float32 tensor (the same conventions)."""
    import tensorflow as tf

    if mode == "caffe":
        return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68], tf.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant([0.485, 0.456, 0.406])) / tf.constant([0.229, 0.224, 0.225])
    return x
