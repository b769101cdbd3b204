from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hybridrec.features.images import probe_image


def encode(mode: str, size: tuple[int, int] = (30, 45), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode, fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"),
                                       ("RGBA", "PNG"), ("RGB", "WEBP")])
def test_decodable_images(mode: str, fmt: str) -> None:
    probe = probe_image(encode(mode, fmt=fmt), max_pixels=10_000)
    assert probe.reason is None
    assert (probe.width, probe.height, probe.format) == (30, 45, fmt)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "poster file is empty (0 bytes)"),
        (None, "poster file is empty (0 bytes)"),
        (b"<html>404</html>", "not an image file"),
        (encode("RGB")[:200], "image could not be decoded"),
    ],
)
def test_bad_images(data: bytes | None, reason: str) -> None:
    probe = probe_image(data, max_pixels=10_000)
    assert probe.reason is not None and reason in probe.reason


def test_pixel_limit() -> None:
    probe = probe_image(encode("RGB", size=(200, 300)), max_pixels=10_000)
    assert probe.reason == "poster is 200x300 px, above the 10000 pixel limit"
