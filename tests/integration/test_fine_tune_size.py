"""Fine-tuning at a realistic size (issue 22 point 6): 1,200 posters of TMDB's w300 size (300 x 450),
fine-tuned and predicted at 224 x 224. The Python workers decode and predict a bounded number of
posters at a time, so a worker's memory does not grow with the crawl: measured here at 0.9 GB
whether the Arrow batches hold 256 rows or 10,000 (the encoded posters are small). A worker that
held this crawl's decoded posters at once would add 1,200 x 224 x 224 x 3 float32 = 723 MB to
that; on 8,992 real posters one had grown to 9.8 GB and been killed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.config import Config
from hybridrec.crawl.demo import generate_demo
from hybridrec.stages.embed import run_embed
from hybridrec.stages.ingest import run_ingest
from hybridrec.stages.train import run_train
from hybridrec.testing.memory import PeakRss, spark_processes

POSTERS = 1200
WORKER_LIMIT_GB = 1.3  # measured 0.9 GB (TensorFlow, the model, a few 64-image batches); + 723 MB if held whole


def small_cnn(path: Path) -> Path:
    """A small CNN saved as a Keras file (the `file` backbone), 224 x 224 in, two named blocks."""
    from hybridrec.features.tflib import quiet_import

    quiet_import()
    import keras

    inp = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu", name="stem_conv")(inp)
    x = keras.layers.MaxPooling2D(2, name="stem_pool")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="last_conv")(x)
    keras.Model(inp, x, name="small_cnn").save(path)
    return path


@pytest.mark.slow
def test_fine_tuning_1200_real_size_posters_keeps_workers_bounded(spark: SparkSession, make_cfg: Callable[..., Config],
                                                                  tmp_path: Path) -> None:
    demo = generate_demo(tmp_path / "demo", movies=POSTERS, customers=20, mean_ratings_per_customer=5,
                         poster_size=(300, 450), seed=13, bad_inputs=False)
    model = small_cnn(tmp_path / "small_cnn.keras")
    cfg = make_cfg(f"input.crawl_dir={demo.crawl_dir}", f"input.ratings_path={demo.ratings_path}",
                   f"embed.backbones=[{{name: file, model_path: '{model}', pooling: avg, preprocess: caffe}}]",
                   "embed.input_size=224", "train.min_items=100", "train.epochs=3", "train.fine_tune.enabled=true",
                   "train.fine_tune.trainable_prefix=last_conv", "train.fine_tune.epochs=1", "run.id=ft-size",
                   database="ft_size")
    run_ingest(spark, cfg)
    run_embed(spark, cfg)
    with PeakRss(spark_processes(workers_only=True), relist_s=0.2) as peak:  # the largest worker
        report = run_train(spark, cfg)
    assert report.epochs["fine_tune"] >= 1 and report.model_uri.endswith("fine_tuned.keras")
    assert spark.table(cfg.table(S.ITEM_CATEGORIES)).count() == POSTERS  # every poster predicted by the tuned CNN
    assert {g for g, _ in report.metrics["fine_tune"]} == set(report.genres)
    assert 0 < peak.peak < WORKER_LIMIT_GB * 2**30, f"a Python worker peaked at {peak.peak / 2**30:.2f} GB"
