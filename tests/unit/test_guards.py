"""Bounded image prediction and Python-worker crashes as one line (no Spark, no TensorFlow)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hybridrec.errors import UserError
from hybridrec.runtime.guards import worker_crash_as_error


def _png(colour: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 30), (colour, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


class _Recorder:
    """A stand-in classifier: (features, probs) = (the mean red value, its share of 255)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def predict_on_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.sizes.append(len(x))
        red = x[..., 0].reshape(len(x), -1).mean(axis=1, keepdims=True)
        return red, red / 255.0


def test_images_are_predicted_a_bounded_number_at_a_time_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.features import classifier

    model = _Recorder()
    monkeypatch.setattr(classifier, "_predictor", lambda path: model)
    colours = list(range(0, 250, 10))  # 25 posters in Arrow batches of 11 and 14
    batches = [pd.Series([_png(c) for c in colours[:11]]), pd.Series([_png(c) for c in colours[11:]])]
    out = list(classifier.predict_batches("m.keras", "image", 8, "crop", "none", iter(batches), images=4))
    assert [len(o) for o in out] == [11, 14]  # one frame per Arrow batch, its rows in order
    assert max(model.sizes) <= 4 and sum(model.sizes) == 25  # never more than 4 images decoded at once
    got = [f[0] for o in out for f in o[classifier.FEATS]]
    np.testing.assert_allclose(got, colours, atol=1.0)  # row i is poster i's prediction


def test_a_killed_python_worker_ends_in_one_line_and_other_errors_pass() -> None:
    crash = RuntimeError("An error occurred while calling o212.collect.\n: org.apache.spark.SparkException: Job "
                         "aborted ... Python worker exited unexpectedly (crashed)\n\tat org.apache.spark...")
    with pytest.raises(UserError) as err:
        with worker_crash_as_error("train.fine_tune"):
            raise crash
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("train.fine_tune: a Python worker died") and "memory" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(ValueError, match="something else"):
        with worker_crash_as_error("train.fine_tune"):
            raise ValueError("something else")
