from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybridrec.features.backbones import ModelSpec, check_weights, get_extractor, preprocess
from hybridrec.config import BackboneConf, EmbedConf
from hybridrec.errors import UserError
from hybridrec.features.images import IMAGENET_MEAN_RGB, UnfitPoster, decode_for_cnn


def encoded(mode: str, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(0)  # fully transparent: composited on white
    else:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG")])
def test_every_mode_becomes_rgb(mode: str, fmt: str) -> None:
    arr = decode_for_cnn(encoded(mode, (40, 60), fmt), 32, "crop")
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    if mode == "RGBA":
        assert (arr == 255).all()


def test_pad_keeps_aspect_with_mean_colour_border() -> None:
    arr = decode_for_cnn(encoded("RGB", (20, 40)), 32, "pad")
    assert arr.shape == (32, 32, 3)
    assert tuple(arr[16, 0]) == IMAGENET_MEAN_RGB and tuple(arr[16, 31]) == IMAGENET_MEAN_RGB
    assert tuple(arr[16, 16]) != IMAGENET_MEAN_RGB


@pytest.mark.parametrize("resize", ["pad", "crop"])
def test_strips_beyond_the_aspect_limit_are_refused_before_any_resize(resize: str) -> None:
    for size, limit in (((200, 40), 4.0), ((40, 200), 4.0), ((1_000_000, 1), 4.0)):  # the last: a 224e6-px crop
        with pytest.raises(UnfitPoster, match=rf"poster is {size[0]}x{size[1]} px: aspect ratio [\d.]+ is beyond "
                                               rf"embed.max_aspect_ratio {limit:g} "):
            decode_for_cnn(encoded("L", size), 32, resize, max_aspect_ratio=limit)
    assert decode_for_cnn(encoded("L", (160, 40)), 32, resize, max_aspect_ratio=4.0).shape == (32, 32, 3)  # 4.0: kept
    assert decode_for_cnn(encoded("L", (200, 40)), 32, resize).shape == (32, 32, 3)  # 0: no limit


def test_caffe_preprocessing_is_vgg19s_own() -> None:
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(preprocess(x.copy(), "caffe"), keras.applications.vgg19.preprocess_input(x.copy()),
                               rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(preprocess(x.copy(), "tf"), keras.applications.mobilenet_v2.preprocess_input(x.copy()),
                               rtol=1e-6, atol=1e-5)


def test_missing_imagenet_weights_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf()]))  # vgg19, imagenet
    with pytest.raises(UserError) as err:
        check_weights(spec)
    msg = str(err.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg and str(tmp_path / "models") in msg
    fc = ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(layer="fc2")]))
    with pytest.raises(UserError, match="vgg19_weights_tf_dim_ordering_tf_kernels.h5"):
        check_weights(fc)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"staged")
    check_weights(spec)  # found where Keras looks
    with pytest.raises(UserError, match="weights file not found: /nope.h5"):
        check_weights(ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="/nope.h5")])))
    with pytest.raises(UserError, match="unknown backbone 'vgg20'"):
        check_weights(ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(name="vgg20")])))


def test_spec_key_tracks_what_changes_vectors() -> None:
    base = EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32)
    key = ModelSpec.from_conf(base).key
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32)).key == key
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random", pooling="max")], input_size=32)).key != key
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=48)).key != key
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32, seed=1)).key != key
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32,
                                         batch_size=7)).key == key  # batching never changes vectors
    assert ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32,
                                         max_aspect_ratio=9)).key == key  # which posters, not their vectors


def test_extractor_is_built_once_and_seeded() -> None:
    spec = ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random")], input_size=32))
    a, b = get_extractor(spec), get_extractor(spec)
    assert a is b and a.dims == 512
    x = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(a(x), a(x, batch_size=1), rtol=1e-5, atol=1e-5)


def test_fc2_gives_vgg19s_4096_d_features() -> None:
    """fc1/fc2 need VGG19's top (fixed 224x224 input): smaller inputs are resized to it."""
    spec = ModelSpec.from_conf(EmbedConf(backbones=[BackboneConf(weights="random", layer="fc2")], input_size=32))
    extractor = get_extractor(spec)
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    out = extractor(x)
    assert extractor.dims == 4096 and out.shape == (2, 4096) and np.isfinite(out).all()
    assert spec.layer_label == "fc2/avg"
