"""The genre classifier's model (paper 3.1, CMODEL on a frozen CNN), its training loop, and its
predictions on the executors. TensorFlow and Keras are imported inside the functions only.

The head - Normalization -> Dense(hidden, relu) -> Dropout -> Dense(G, sigmoid) - trains on the
stored poster vectors; :func:`fine_tune` stacks it on the CNN and re-learns the CNN's last block
on the images with a reduced learning rate. Training rows stream from Delta through
:mod:`hybridrec.features.loaders` (petastorm) into ``tf.data``; predictions for every item run on the
executors through a pandas UDF, one model load per Python worker.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, FloatType, StructField, StructType

from hybridrec import schemas as S
from hybridrec.features.tflib import quiet_import
from hybridrec.config import TrainConf
from hybridrec.errors import UserError
from hybridrec.features.backbones import ModelSpec, build_backbone, configure_devices, preprocess, preprocess_mode, \
    worker_cached
from hybridrec.features.classify import LABELS, TRAIN, VAL
from hybridrec.features.images import decode_for_cnn
from hybridrec.features.loaders import tf_dataset

PROBS, FEATS = "probs", "feats"
PIXELS = "pixels"
FEATURES_LAYER, OUTPUT_LAYER = "features", "genres"
PREDICTION = StructType([StructField(PROBS, ArrayType(FloatType())), StructField(FEATS, ArrayType(FloatType()))])


# ---- the model ------------------------------------------------------------------------
def build_head(dims: int, n_genres: int, tc: TrainConf, mean: np.ndarray, var: np.ndarray) -> Any:
    """CMODEL: standardise the CNN vector, Dense(hidden, relu) -> Dropout -> Dense(G, sigmoid)."""
    quiet_import()
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


def compile_head(model: Any, tc: TrainConf) -> Any:
    """The head compiled with the configured optimizer and binary cross-entropy (multi-label)."""
    model.compile(optimizer=_optimizer(tc.optimizer, tc.learning_rate, tc.momentum), loss="binary_crossentropy")
    return model


def _optimizer(name: str, lr: float, momentum: float) -> Any:
    quiet_import()
    import keras

    # gradients clipped by global norm: harmless for the head, a guard when fine-tuning the CNN
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum, global_clipnorm=1.0)
    return keras.optimizers.Adam(learning_rate=lr, global_clipnorm=1.0)


def seed_everything(seed: int) -> None:
    quiet_import()
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
    quiet_import()
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
        quiet_import()
        import keras

        m = keras.saving.load_model(model_path, compile=False)
        return keras.Model(m.input, [m.get_layer(FEATURES_LAYER).output, m.output])

    return worker_cached("classifier:" + model_path, build)


PREDICT_IMAGES = 64  # posters decoded and predicted at once: a worker holds at most this many images


def predict_batches(model_path: str, kind: str, size: int, resize: str, mode: str,
                    batches: Iterator[pd.Series], images: int = PREDICT_IMAGES) -> Iterator[pd.DataFrame]:
    """The prediction UDF's body: ``kind`` vector (stored embeddings) or image (poster bytes).
    Images are decoded and predicted ``images`` at a time, whatever the size of Arrow's batches
    (10,000 rows by default: 6 GB of float32 pixels at 224x224), so a worker's memory is bounded."""
    model = None
    for batch in batches:
        if model is None:
            model = _predictor(model_path)
        if kind == "vector":
            x = np.stack([np.asarray(v, np.float32) for v in batch]) if len(batch) else np.zeros((0, 1), np.float32)
            parts = [model.predict_on_batch(x)] if len(x) else []
        else:
            parts = [model.predict_on_batch(preprocess(np.stack([decode_for_cnn(bytes(b), size, resize)
                                                                 for b in batch.iloc[lo:lo + images]]), mode))
                     for lo in range(0, len(batch), images)]
        feats = np.concatenate([np.asarray(f) for f, _ in parts]) if parts else np.zeros((0, 1))
        probs = np.concatenate([np.asarray(p) for _, p in parts]) if parts else np.zeros((0, 1))
        yield pd.DataFrame({PROBS: [p.astype(np.float32).tolist() for p in probs],
                            FEATS: [f.astype(np.float32).tolist() for f in feats]})


def prediction_column(model_path: str, kind: str, size: int = 0, resize: str = "pad",
                      mode: str = "none") -> Callable[[Column], Column]:
    def udf(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        return predict_batches(model_path, kind, size, resize, mode, batches)

    return F.pandas_udf(udf, PREDICTION)  # type: ignore[call-overload]


def with_predictions(df: DataFrame, predict: Callable[[Column], Column], input_col: str) -> DataFrame:
    """``df`` plus ``probs`` and ``feats`` from a :func:`prediction_column` over ``input_col``."""
    return df.withColumn("_p", predict(F.col(input_col))).select(
        "*", F.col("_p.probs").alias(PROBS), F.col("_p.feats").alias(FEATS)).drop("_p")


# ---- stage 2: fine-tuning the CNN's last block ----------------------------------------------
def decode_pixels(size: int, resize: str) -> Callable[[Column], Column]:
    """Poster bytes -> the CNN's input as raw uint8 RGB (size*size*3 bytes), on the executors."""

    def udf(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for batch in batches:
            yield pd.Series([decode_for_cnn(bytes(b), size, resize).astype(np.uint8).tobytes() for b in batch])

    return F.pandas_udf(udf, BinaryType())  # type: ignore[call-overload]


def fine_tune(spark: SparkSession, tc: TrainConf, spec: ModelSpec, data: DataFrame, posters: DataFrame,
              head_path: Path, out_path: Path, cache_url: str) -> dict[str, list[float]]:
    """Stack the trained head on the CNN, re-learn the layers named ``fine_tune.trainable_prefix*``
    on the ``posters`` (item_id, image; decoded by executors, streamed by the loader), early stopping
    on validation."""
    quiet_import()
    import keras
    import tensorflow as tf

    ft = tc.fine_tune
    if len(spec.backbones) != 1:
        raise UserError("train.fine_tune needs a single backbone in embed.backbones (an ensemble has several)")
    b = spec.backbones[0]
    mode, size = preprocess_mode(b), spec.input_size
    seed_everything(tc.seed)
    cnn = build_backbone(b, spec)
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
    """:func:`hybridrec.features.backbones.preprocess` on a float32 tensor (the same conventions)."""
    quiet_import()
    import tensorflow as tf

    if mode == "caffe":
        return x[..., ::-1] - tf.constant([103.939, 116.779, 123.68], tf.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant([0.485, 0.456, 0.406])) / tf.constant([0.229, 0.224, 0.225])
    return x
