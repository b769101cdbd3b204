"""CNN backbones for poster features. TensorFlow/Keras are imported inside the functions only.

A :class:`ModelSpec` (picklable, TF-free) describes the whole feature extractor: one or more
backbones (concatenated: the paper's future-work ensemble), input size and resize mode. Python
workers build it once through :func:`get_extractor` and keep it in a module-level cache, so the
model is built once per worker and reused across tasks and batches.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar, cast

import numpy as np

from hybridrec.features.tflib import quiet_import
from hybridrec.config import BackboneConf, EmbedConf
from hybridrec.errors import UserError

# keras.applications name -> (constructor, preprocess module, default feature layer or None = top-less output)
APPLICATIONS: dict[str, tuple[str, str, str | None]] = {
    "vgg16": ("VGG16", "vgg16", "block5_pool"),
    "vgg19": ("VGG19", "vgg19", "block5_pool"),
    "resnet50": ("ResNet50", "resnet", None),
    "resnet101": ("ResNet101", "resnet", None),
    "resnet50v2": ("ResNet50V2", "resnet_v2", None),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", None),
    "efficientnet_b0": ("EfficientNetB0", "efficientnet", None),
    "inception_v3": ("InceptionV3", "inception_v3", None),
    "densenet121": ("DenseNet121", "densenet", None),
    "xception": ("Xception", "xception", None),
    "convnext_tiny": ("ConvNeXtTiny", "convnext", None),
}
PREPROCESS_MODE = {"vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe", "resnet_v2": "tf", "mobilenet_v2": "tf",
                   "efficientnet": "none", "inception_v3": "tf", "densenet": "torch", "xception": "tf",
                   "convnext": "none"}
# Keras's own file names for the ImageNet weights it would download into $KERAS_HOME/models.
IMAGENET_FILES = {
    ("vgg16", False): "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ("vgg16", True): "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    ("vgg19", False): "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ("vgg19", True): "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
    ("resnet50", False): "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ("resnet50", True): "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
}
TOP_LAYERS = ("fc1", "fc2", "flatten", "predictions")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a poster's vector: backbones, input size, resize, seed."""

    backbones: tuple[BackboneConf, ...]
    input_size: int
    resize: str
    seed: int
    mixed_precision: bool = False
    tf_threads: int = 0
    # Which posters are embedded, not how: not part of the extractor's key.
    max_aspect_ratio: float = 0.0  # 0 = no limit

    @classmethod
    def from_conf(cls, conf: EmbedConf) -> "ModelSpec":
        return cls(tuple(conf.backbones), conf.input_size, conf.resize, conf.seed, conf.mixed_precision,
                   conf.tf_threads, conf.max_aspect_ratio)

    def _identity(self) -> dict[str, Any]:
        return {"backbones": [asdict(b) for b in self.backbones], "input_size": self.input_size,
                "resize": self.resize, "seed": self.seed if self.uses_random else None}

    @property
    def uses_random(self) -> bool:
        return any(b.weights == "random" for b in self.backbones)

    @property
    def key(self) -> str:
        """Stable id of the extractor (incremental key with the poster's content hash)."""
        blob = json.dumps(self._identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def backbone_label(self) -> str:
        return "+".join(b.name if b.name != "file" else f"file:{Path(b.model_path or '').name}" for b in self.backbones)

    @property
    def layer_label(self) -> str:
        return "+".join(f"{layer_of(b)}/{b.pooling}" for b in self.backbones)

    @property
    def weights_label(self) -> str:
        def one(b: BackboneConf) -> str:
            if b.weights == "random":
                return f"random(seed={self.seed})"
            if b.weights == "imagenet" and b.name != "file":
                return "imagenet"
            return f"file:{b.weights if b.weights != 'imagenet' else b.model_path}"

        return "+".join(one(b) for b in self.backbones)


def layer_of(b: BackboneConf) -> str:
    if b.layer:
        return b.layer
    if b.name in APPLICATIONS:
        return APPLICATIONS[b.name][2] or "output"
    return "output"


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def check_weights(spec: ModelSpec) -> None:
    """Fail before any Spark work when weights are missing (one line naming the file and place)."""
    for b in spec.backbones:
        if b.name == "file":
            if not b.model_path or not Path(b.model_path).is_file():
                raise UserError(f"backbone model file not found: {b.model_path} (config embed.backbones[].model_path)")
            continue
        if b.name not in APPLICATIONS:
            raise UserError(f"unknown backbone '{b.name}'; known: {', '.join(sorted(APPLICATIONS))}, file")
        if b.weights == "random":
            continue
        if b.weights != "imagenet":
            if not Path(b.weights).is_file():
                raise UserError(f"weights file not found: {b.weights} (config embed.backbones[].weights)")
            continue
        top = layer_of(b) in TOP_LAYERS
        fname = IMAGENET_FILES.get((b.name, top))
        if fname is None:
            continue  # Keras resolves the name itself; a missing file fails when the model is built
        expected = keras_home() / "models" / fname
        if not expected.is_file():
            raise UserError(
                f"ImageNet weights for {b.name} not found: put {fname} in {expected.parent} "
                f"(Keras's cache; set KERAS_HOME to move it) or set embed.backbones[].weights to a file path")


def preprocess_mode(b: BackboneConf) -> str:
    if b.preprocess != "auto":
        return b.preprocess
    if b.name in APPLICATIONS:
        return PREPROCESS_MODE[APPLICATIONS[b.name][1]]
    return "caffe"


def preprocess(x: np.ndarray, mode: str) -> np.ndarray:
    """The backbones' own input conventions on an RGB float batch (N, H, W, 3) in [0, 255].

    caffe: RGB->BGR and ImageNet mean subtraction (VGG, ResNet); tf: scale to [-1, 1];
    torch: [0, 1] then ImageNet mean/std; none: as is (models that normalise inside).
    """
    x = x.astype(np.float32, copy=False)
    if mode == "caffe":
        return x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return x


def build_backbone(b: BackboneConf, spec: ModelSpec) -> Any:
    quiet_import()
    import keras

    size = spec.input_size
    layer = layer_of(b)
    if b.name == "file":
        base = keras.saving.load_model(b.model_path, compile=False)
        if b.weights not in ("imagenet", "random") and b.weights:
            base.load_weights(b.weights)
    else:
        ctor_name = APPLICATIONS[b.name][0]
        ctor = getattr(keras.applications, ctor_name)
        top = layer in TOP_LAYERS
        if b.weights == "random":
            keras.utils.set_random_seed(spec.seed)
            weights = None
        else:
            weights = b.weights  # "imagenet" (Keras cache) or a file path
        kwargs: dict[str, Any] = {"include_top": top, "weights": weights}
        kwargs["input_shape"] = (224, 224, 3) if top else (size, size, 3)
        try:
            base = ctor(**kwargs)
        except Exception as exc:  # Keras raises plain Exceptions when a download is impossible
            raise UserError(f"could not load {b.name} weights '{b.weights}': {str(exc).splitlines()[0]}") from None
    out = base.output if layer == "output" else base.get_layer(layer).output
    if len(out.shape) == 4:
        if b.pooling == "avg":
            out = keras.layers.GlobalAveragePooling2D()(out)
        elif b.pooling == "max":
            out = keras.layers.GlobalMaxPooling2D()(out)
        else:
            out = keras.layers.Flatten()(out)
    return keras.Model(base.input, out)


class Extractor:
    """A built feature extractor: ``__call__(uint8 batch (N, S, S, 3)) -> float32 (N, dims)``."""

    def __init__(self, spec: ModelSpec) -> None:
        quiet_import()
        import keras

        if spec.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        self.spec = spec
        self.parts: list[tuple[Any, str, int | None]] = []
        for b in spec.backbones:
            model = build_backbone(b, spec)
            fixed = 224 if layer_of(b) in TOP_LAYERS else None
            self.parts.append((model, preprocess_mode(b), fixed))
        self.dims = sum(int(m.output_shape[-1]) for m, _, _ in self.parts)

    def __call__(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        outs = []
        for model, mode, fixed in self.parts:
            x = images
            if fixed is not None and x.shape[1] != fixed:
                quiet_import()
                import tensorflow as tf

                x = tf.image.resize(x.astype(np.float32), (fixed, fixed)).numpy()
            x = preprocess(x, mode)
            chunks = [np.asarray(model(x[i:i + batch_size], training=False), dtype=np.float32)
                      for i in range(0, len(x), batch_size)]
            outs.append(np.concatenate(chunks) if chunks else np.zeros((0, int(model.output_shape[-1])), np.float32))
        return np.concatenate(outs, axis=1)


T = TypeVar("T")
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def worker_cached(key: str, build: Callable[[], T]) -> T:
    """The Python worker's one instance of ``key`` (built on first use, then reused across tasks
    and batches): extractors here, saved classifiers in :mod:`hybridrec.features.classifier`."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return cast(T, _CACHE[key])


def configure_devices(gpu_addresses: list[str], threads: int) -> None:
    """Make TensorFlow use exactly the GPUs Spark assigned this task (memory growth on).

    Must run before TensorFlow initialises its devices; with no GPU assigned, TF runs on CPU
    unchanged. ``threads`` > 0 caps intra-op threads (several workers on one CPU host).
    """
    if gpu_addresses and "tensorflow" not in __import__("sys").modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_addresses)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_import()
    import tensorflow as tf

    try:
        if threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # devices already initialised in this (reused) worker: keep the earlier settings


def get_extractor(spec: ModelSpec, gpu_addresses: list[str] | None = None) -> Extractor:
    """The worker-wide cached extractor for ``spec`` (built on first use)."""
    def build() -> Extractor:
        configure_devices(gpu_addresses or [], spec.tf_threads)
        return Extractor(spec)

    return worker_cached(spec.key + ("/mp" if spec.mixed_precision else ""), build)

