"""Poster image checks and decoding (Pillow). Pure functions, used inside pandas UDFs."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

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
