"""Poster image checks and decoding (Pillow). Pure functions, used inside pandas UDFs."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True)
class ImageProbe:
    """What decoding an image file found: its size and format, or why it is unusable."""

    width: int | None
    height: int | None
    format: str | None
    reason: str | None


def probe_image(data: bytes | None, max_pixels: int) -> ImageProbe:
    """Fully decode ``data`` (so truncation is caught) and report size and format.

    Never raises on bad data: zero bytes, non-images, truncated files, unsupported formats and
    images above ``max_pixels`` (decompression bombs) come back with a ``reason``.
    """
    if not data:
        return ImageProbe(None, None, None, "poster file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format
                width, height = img.size
                if width * height > max_pixels:
                    return ImageProbe(width, height, fmt, f"poster is {width}x{height} px, above the {max_pixels} pixel limit")
                if fmt not in SUPPORTED_FORMATS:
                    return ImageProbe(width, height, fmt, f"unsupported image format {fmt}")
                img.load()  # decodes every pixel: truncated files fail here
    except UnidentifiedImageError:
        return ImageProbe(None, None, None, "not an image file (no known image format)")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageProbe(None, None, None, f"poster is above the pixel limit: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return ImageProbe(None, None, None, f"image could not be decoded: {exc}")
    return ImageProbe(width, height, fmt, None)


# ImageNet mean in RGB: the border colour of padded posters, so it becomes ~0 after the
# backbone's mean subtraction instead of a black frame the CNN would see as content.
IMAGENET_MEAN_RGB = (124, 116, 104)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to RGB: grayscale, CMYK, palette (incl. transparency) and alpha images are
    converted, transparent areas composited on white (as a poster would be shown)."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


class UnfitPoster(ValueError):
    """A decodable image that is no input for the CNN; the message is the quarantine reason."""


ASPECT_RULE = "embed.max_aspect_ratio"


def aspect_rule(max_aspect_ratio: float) -> str:
    """The part of an aspect-ratio reason that names the limit it was judged by."""
    return f"beyond {ASPECT_RULE} {max_aspect_ratio:g} "


def aspect_reason(width: int, height: int, max_aspect_ratio: float) -> str | None:
    """Why a ``width`` x ``height`` poster is too elongated for the CNN, or None (0 = no limit)."""
    ratio = max(width, height) / max(1, min(width, height))
    if max_aspect_ratio and ratio > max_aspect_ratio:
        return (f"poster is {width}x{height} px: aspect ratio {ratio:.1f} is {aspect_rule(max_aspect_ratio)}"
                "(a poster is about 1.5); the CNN would see a strip, not a poster")
    return None


def decode_for_cnn(data: bytes, size: int, resize: str, max_aspect_ratio: float = 0.0) -> np.ndarray:
    """Decode image bytes into a ``(size, size, 3)`` uint8 RGB array.

    ``resize='pad'`` keeps the aspect ratio and pads with the ImageNet mean colour;
    ``'crop'`` scales the shorter side to ``size`` and takes the centre. Raises on bad data, and
    :class:`UnfitPoster` beyond ``max_aspect_ratio`` (before any resize: a 1,000,000x1 image
    cropped would need a 224,000,000-pixel-wide intermediate). Callers turn either into a
    quarantine reason.
    """
    with Image.open(io.BytesIO(data)) as raw:
        width, height = raw.size
        reason = aspect_reason(width, height, max_aspect_ratio)
        if reason:
            raise UnfitPoster(reason)
        raw.load()
        img = to_rgb(raw)
    w, h = img.size
    if resize == "crop":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size), IMAGENET_MEAN_RGB)
        canvas.paste(img.resize((nw, nh), Image.Resampling.BILINEAR), ((size - nw) // 2, (size - nh) // 2))
        img = canvas
    return np.asarray(img, dtype=np.uint8)
