"""The embedding job: UDF vectors equal the bare model's; incremental; quarantine; weights sources."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from delta.tables import DeltaTable
from PIL import Image
from pyspark.sql import SparkSession

from hybridrec import schemas as S
from hybridrec.features.backbones import Extractor, ModelSpec
from hybridrec.config import Config
from hybridrec.crawl.demo import DemoCrawl
from hybridrec.stages.embed import STAGE_EMBED, run_embed
from hybridrec.errors import UserError
from hybridrec.features.images import decode_for_cnn
from hybridrec.storage.tables import ensure_table

pytestmark = pytest.mark.stage  # every test reads the embed stage run on the demo posters

SIZE = 32
RANDOM_VGG = "embed.backbones=[{name: vgg19, weights: random}]"


def _image(mode: str) -> bytes:
    rng = np.random.default_rng(len(mode))
    img = Image.fromarray(rng.integers(0, 255, (45, 30, 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG" if mode in ("L", "CMYK") else "PNG")
    return buf.getvalue()


def load_posters(spark: SparkSession, cfg: Config, demo: DemoCrawl, extra: dict[int, bytes]) -> dict[int, bytes]:
    """Write a posters table: 12 demo posters plus ``extra`` (id -> bytes), as ingest would."""
    files = sorted((demo.crawl_dir / "posters").glob("*.jpg"))
    good = [f for f in files if not f.name.startswith(("empty", "truncated", "notAnImage", "oversized", "banner"))][:12]
    images = {1000 + i: p.read_bytes() for i, p in enumerate(good)}
    images.update(extra)
    rows = [(k, f"/{k}.jpg", v, hashlib.sha256(v).hexdigest(), 1, 1, "JPEG", len(v), dt.date(2026, 11, 1),
             f"/{k}.jpg", "setup", dt.datetime(2026, 11, 1)) for k, v in images.items()]
    ensure_table(spark, cfg.storage, S.POSTERS)
    spark.createDataFrame(rows, S.POSTERS_SCHEMA).write.format("delta").mode("append").saveAsTable(cfg.table(S.POSTERS))
    return images


@pytest.fixture(scope="module")
def cfg(make_cfg: Callable[..., Config]) -> Config:
    return make_cfg(RANDOM_VGG, f"embed.input_size={SIZE}", "embed.arrow_batch_size=4", "embed.batch_size=3",
                    "run.id=e1")


@pytest.fixture(scope="module")
def images(spark: SparkSession, cfg: Config, demo_crawl: DemoCrawl) -> dict[int, bytes]:
    extra = {2001: _image("L"), 2002: _image("CMYK"), 2003: _image("P"), 2004: _image("RGBA"),
             3001: b"GIF89a-not-really", 3002: _image("L")[:40]}
    return load_posters(spark, cfg, demo_crawl, extra)


@pytest.fixture(scope="module")
def first(spark: SparkSession, cfg: Config, images: dict[int, bytes]):  # type: ignore[no-untyped-def]
    return run_embed(spark, cfg)


def vectors(spark: SparkSession, cfg: Config, model_key: str) -> dict[int, np.ndarray]:
    rows = spark.table(cfg.table(S.ITEM_EMBEDDINGS)).filter(f"model_key = '{model_key}'").collect()
    return {r["item_id"]: np.array(r["vector"], dtype=np.float32) for r in rows}


def bare(spec: ModelSpec, images: dict[int, bytes], ids: list[int]) -> np.ndarray:
    batch = np.stack([decode_for_cnn(images[i], spec.input_size, spec.resize) for i in ids])
    return Extractor(spec)(batch)


def test_udf_vectors_equal_the_bare_model(spark: SparkSession, cfg: Config, images: dict[int, bytes], first) -> None:  # type: ignore[no-untyped-def]
    spec = ModelSpec.from_conf(cfg.embed)
    got = vectors(spark, cfg, spec.key)
    ok = sorted(k for k in images if k < 3000)
    assert sorted(got) == ok
    np.testing.assert_allclose(np.stack([got[i] for i in ok]), bare(spec, images, ok), rtol=1e-4, atol=1e-4)
    row = spark.table(cfg.table(S.ITEM_EMBEDDINGS)).first()
    assert (row["backbone"], row["layer"], row["weights"], row["dims"]) == ("vgg19", "block5_pool/avg",
                                                                          "random(seed=0)", 512)
    assert row["content_hash"] == hashlib.sha256(images[row["item_id"]]).hexdigest()
    assert first.computed == len(ok) and first.quarantined == 2


def test_broken_images_are_quarantined_not_fatal(spark: SparkSession, cfg: Config, first) -> None:  # type: ignore[no-untyped-def]
    rows = spark.table(cfg.table(S.QUARANTINE)).filter(f"stage = '{STAGE_EMBED}'").collect()
    by_item = {int(r["record"].split()[0].split("=")[1]): r["reason"] for r in rows}
    assert set(by_item) == {3001, 3002}
    assert all(reason.startswith("poster could not be decoded for the CNN") for reason in by_item.values())


def test_a_strip_is_quarantined_at_its_limit_and_judged_again_under_a_new_one(
        spark: SparkSession, make_cfg: Callable[..., Config], demo_crawl: DemoCrawl) -> None:
    """A decodable 240x20 strip is no poster for the CNN: quarantined by embed.max_aspect_ratio (the
    crop path would otherwise build a huge intermediate), not retried under the same limit, judged
    again - and embedded - under a raised one."""
    strip = io.BytesIO()
    Image.fromarray(np.full((20, 240, 3), 90, dtype=np.uint8), "RGB").save(strip, "PNG")
    cfg = make_cfg(RANDOM_VGG, f"embed.input_size={SIZE}", "embed.resize=crop", "run.id=a1")
    load_posters(spark, cfg, demo_crawl, {4001: strip.getvalue()})
    first = run_embed(spark, cfg)
    assert (first.posters, first.computed, first.quarantined) == (13, 12, 1)
    row = spark.table(cfg.table(S.QUARANTINE)).filter(f"stage = '{STAGE_EMBED}'").collect()
    assert len(row) == 1 and row[0]["record"].startswith("item_id=4001 ")
    assert row[0]["reason"].startswith("poster is 240x20 px: aspect ratio 12.0 is beyond embed.max_aspect_ratio 4 ")
    again = run_embed(spark, cfg)
    assert (again.already_quarantined, again.computed, again.quarantined) == (1, 0, 0)
    wider = make_cfg(RANDOM_VGG, f"embed.input_size={SIZE}", "embed.resize=crop", "embed.max_aspect_ratio=12",
                     "run.id=a2", database=cfg.storage.database)
    third = run_embed(spark, wider)
    assert (third.already_embedded, third.already_quarantined, third.computed, third.quarantined) == (12, 0, 1, 0)
    assert spark.table(cfg.table(S.ITEM_EMBEDDINGS)).filter("item_id = 4001").count() == 1


def test_a_run_killed_mid_embed_keeps_its_finished_chunks_and_the_rerun_computes_only_the_rest(
        spark: SparkSession, make_cfg: Callable[..., Config], demo_crawl: DemoCrawl,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """embed.commit_every=4 over 14 posters (two of them broken): chunks of 4, 4, 4, 2 ids. The
    driver dies (KeyboardInterrupt, as from a SIGINT/SIGKILL of the job) right after the second
    chunk's commit. The killed run's vectors stay; the rerun computes exactly the posters not yet
    committed; every poster ends with one vector or one quarantine row, none with two."""
    import hybridrec.stages.embed as embed

    cfg = make_cfg(RANDOM_VGG, f"embed.input_size={SIZE}", "embed.commit_every=4", "run.id=k1")
    images = load_posters(spark, cfg, demo_crawl, {3001: b"GIF89a-not-really", 3002: _image("L")[:40]})
    ids = sorted(images)
    real, calls = embed.embed_chunk, []

    def dies_after_two(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(calls) == 2:
            raise KeyboardInterrupt("driver killed mid-embed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(embed, "embed_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_embed(spark, cfg)
    monkeypatch.setattr(embed, "embed_chunk", real)
    table = spark.table(cfg.table(S.ITEM_EMBEDDINGS))
    kept = {r[0] for r in table.select(S.ITEM_ID).collect()}
    assert kept == set(ids[:8])  # the two finished chunks (no broken poster among the first 8 ids)
    rerun = make_cfg(RANDOM_VGG, f"embed.input_size={SIZE}", "embed.commit_every=4", "run.id=k2",
                     database=cfg.storage.database)
    second = run_embed(spark, rerun)
    assert (second.already_embedded, second.computed, second.quarantined) == (8, 4, 2)
    assert second.chunks == 2  # ids 9-12 and 13-14: only what the killed run had not committed
    rows = spark.table(cfg.table(S.ITEM_EMBEDDINGS)).groupBy(S.ITEM_ID).count().collect()
    assert {r[0] for r in rows} == set(ids) - {3001, 3002} and all(r[1] == 1 for r in rows)
    bad = spark.table(cfg.table(S.QUARANTINE)).filter(f"stage = '{STAGE_EMBED}'").collect()
    assert sorted(int(r["record"].split()[0].split("=")[1]) for r in bad) == [3001, 3002]
    assert {r[S.RUN_ID] for r in spark.table(cfg.table(S.ITEM_EMBEDDINGS)).collect()} == {"k1", "k2"}


def test_rerun_computes_nothing_and_writes_nothing(spark: SparkSession, cfg: Config, first) -> None:  # type: ignore[no-untyped-def]
    before = {t: DeltaTable.forName(spark, cfg.table(t)).history(1).first()["version"]
              for t in (S.ITEM_EMBEDDINGS, S.QUARANTINE)}
    again = run_embed(spark, cfg)
    assert (again.computed, again.quarantined) == (0, 0)
    assert again.already_embedded == first.computed and again.already_quarantined == 2
    after = {t: DeltaTable.forName(spark, cfg.table(t)).history(1).first()["version"] for t in before}
    assert before == after


def test_weights_from_a_file_and_ensembles(spark: SparkSession, cfg: Config, images: dict[int, bytes],
                                           tmp_path: Path, first, make_cfg: Callable[..., Config]) -> None:  # type: ignore[no-untyped-def]
    spec = ModelSpec.from_conf(cfg.embed)
    weights = tmp_path / "vgg19_seeded.weights.h5"
    Extractor(spec).parts[0][0].save_weights(weights)
    from_file = make_cfg(f"embed.backbones=[{{name: vgg19, weights: {weights}}}]", f"embed.input_size={SIZE}",
                         database=cfg.storage.database)
    report = run_embed(spark, from_file)
    assert report.weights == f"file:{weights}" and report.computed == 16
    a, b = vectors(spark, cfg, spec.key), vectors(spark, cfg, report.model_key)
    for k in a:  # the same weights, loaded from a path, give the same vectors
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4)

    ens = make_cfg(f"embed.backbones=[{{name: vgg19, weights: random}}, {{name: vgg19, weights: random, pooling: max}}]",
                   f"embed.input_size={SIZE}", database=cfg.storage.database)
    rep = run_embed(spark, ens)
    assert rep.dims == 1024 and "vgg19+vgg19" in spark.table(cfg.table(S.ITEM_EMBEDDINGS)) \
        .filter(f"model_key = '{rep.model_key}'").first()["backbone"]


def test_saved_model_file_backbone(spark: SparkSession, cfg: Config, images: dict[int, bytes], tmp_path: Path,
                                   first, make_cfg: Callable[..., Config]) -> None:  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inp)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="features")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "poster_cnn.keras"
    model.save(path)
    file_cfg = make_cfg(f"embed.backbones=[{{name: file, model_path: {path}, layer: features, pooling: max, "
                        f"preprocess: tf}}]", f"embed.input_size={SIZE}", database=cfg.storage.database)
    report = run_embed(spark, file_cfg)
    assert report.dims == 16 and report.weights == f"file:{path}"
    got = vectors(spark, cfg, report.model_key)
    ids = sorted(got)
    batch = np.stack([decode_for_cnn(images[i], SIZE, "pad") for i in ids]).astype(np.float32) / 127.5 - 1.0
    inner = keras.Model(model.input, model.get_layer("features").output)
    want = np.asarray(inner(batch)).max(axis=(1, 2))
    np.testing.assert_allclose(np.stack([got[i] for i in ids]), want, rtol=1e-4, atol=1e-4)


def test_missing_imagenet_weights_fail_before_spark_work(spark: SparkSession, make_cfg: Callable[..., Config],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cfg = make_cfg("embed.backbones=[{name: vgg19, weights: imagenet}]")
    with pytest.raises(UserError, match="ImageNet weights for vgg19 not found: put "
                                        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 in"):
        run_embed(spark, cfg)
    assert not spark.catalog.databaseExists(cfg.storage.database)  # nothing was created
