"""Turn any Pillow image into the plain 8-bit RGB picture that the model is sent.

`normalize_image` is the one place where camera rotation, transparency and odd pixel modes are
dealt with: EXIF orientation is applied, transparent pixels are put on white (a transparent PNG
of black text must not become black on black), and palette, CMYK, grey, 1-bit, 16-bit and float
images become RGB, with 16-bit and float values scaled into 0..255 rather than clipped.

`MAX_IMAGE_PIXELS` is the decompression-bomb limit used by `engine.documents`: an image file whose
page has more pixels is refused with a `DocumentError`, and a PDF page that would exceed it at the
requested resolution is rendered at a lower one. Pillow's own global `PIL.Image.MAX_IMAGE_PIXELS` is
left as it is; Pillow's `DecompressionBombWarning` is ignored (a process-wide warnings filter set
when this module is imported) because the engine checks the limit itself, so that a large but
acceptable scan does not print a warning to the terminal.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageOps

__all__ = ["MAX_IMAGE_PIXELS", "encode_jpeg", "encode_png", "normalize_image"]

#: The most pixels a page image may have: Pillow's default limit times two (the size at which
#: Pillow itself raises `DecompressionBombError`), about 179 megapixels, e.g. 13,000 x 13,700.
MAX_IMAGE_PIXELS: int = 178_956_970

warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_PNG_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I"})


def normalize_image(img: Image.Image) -> Image.Image:
    """Return `img` upright, opaque and in mode "RGB" (a new image unless it already was one).

    - EXIF orientation is applied (`ImageOps.exif_transpose`); a broken EXIF block is ignored.
    - RGBA, LA, PA and palette images with a transparent colour are composited on white.
    - CMYK, YCbCr, P, L, 1 and the like are converted to RGB.
    - 16-bit ("I;16*") and 32-bit ("I") grey are scaled down to 8 bits (65535 -> 255); float ("F")
      images in 0..1 are scaled by 255; other ranges are stretched from their minimum to maximum.
    """
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block must not stop the page
        upright = img
    if upright is None:  # only when in_place=True; keeps mypy and old Pillows happy
        upright = img

    mode = upright.mode
    if mode == "RGB":
        return upright
    if mode == "P" and "transparency" in upright.info:
        return _on_white(upright.convert("RGBA"))
    if mode in _ALPHA_MODES:
        return _on_white(upright.convert("RGBA"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scale_to_8bit(upright).convert("RGB")
    return upright.convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """Map a 16-bit, 32-bit integer or float grey image onto mode "L" without clipping."""
    wide = img.convert("F") if img.mode == "F" else img.convert("I")
    extrema: Any = wide.getextrema()
    low, high = float(extrema[0]), float(extrema[1])
    if img.mode == "F" and low >= 0.0 and high <= 1.0:
        scale, offset = 255.0, 0.0
    elif low >= 0.0 and high <= 255.0 and not img.mode.startswith("I;16"):
        scale, offset = 1.0, 0.0
    elif low >= 0.0 and high <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    elif high > low:
        scale, offset = 255.0 / (high - low), -low * 255.0 / (high - low)
    else:
        scale, offset = 0.0, 128.0
    as_float = wide.convert("F")
    scaled = as_float.point(lambda v: v * scale + offset)
    return scaled.convert("L")


def encode_png(img: Image.Image, *, compress_level: int = 6) -> bytes:
    """Encode `img` as PNG bytes (images in modes PNG cannot hold are normalised to RGB first)."""
    if img.mode not in _PNG_MODES:
        img = normalize_image(img)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    """Encode `img` as JPEG bytes at `quality` (anything but RGB or L is normalised to RGB)."""
    if img.mode not in ("RGB", "L"):
        img = normalize_image(img)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
