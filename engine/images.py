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

`model_size` caps the size of the image sent to the model at what the model can use (see
`model_canvas`): DeepSeek-OCR resizes every image to its own working size, so pixels past it only
cost request bytes and time; `resize_to` scales an image down to such a size.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

from PIL import Image, ImageOps

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MODEL_MAX_TILES",
    "MODEL_TILE",
    "encode_jpeg",
    "encode_png",
    "model_canvas",
    "model_size",
    "normalize_image",
    "resize_to",
]

#: The most pixels a page image may have: Pillow's default limit times two (the size at which
#: Pillow itself raises `DecompressionBombError`), about 179 megapixels, e.g. 13,000 x 13,700.
MAX_IMAGE_PIXELS: int = 178_956_970

#: The side of the model's crop tiles: DeepSeek-OCR cuts an image into 640 px tiles (its "Gundam"
#: mode, the default of vLLM's processor: image_size 640, base_size 1024 for the global view),
#: DeepSeek-OCR-2 into 768 px tiles. The larger one, so that the cap loses nothing for either.
MODEL_TILE = 768
#: The most tiles of the grid the processors choose: 6 in vLLM's processors (MIN_CROPS 2,
#: MAX_CROPS 6), 9 the most DeepSeek-OCR's own config allows. The larger one, for the same reason.
MODEL_MAX_TILES = 9
_MODEL_MIN_TILES = 2

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


def model_canvas(width: int, height: int) -> tuple[int, int]:
    """The size the model resizes a width x height image to before cutting it into tiles.

    As the DeepSeek-OCR processors do (`dynamic_preprocess`): of the grids of columns x rows
    with 2..`MODEL_MAX_TILES` tiles, the one whose aspect ratio is closest to the image's (the
    largest of those equally close), times `MODEL_TILE`. The global view (1024 px) is smaller.
    """
    aspect = width / height
    best: tuple[float, int, int, int] | None = None
    for tiles in range(_MODEL_MIN_TILES, MODEL_MAX_TILES + 1):
        for columns in range(1, tiles + 1):
            if tiles % columns:
                continue
            rows = tiles // columns
            key = (abs(aspect - columns / rows), -tiles, columns, rows)
            if best is None or key < best:
                best = key
    assert best is not None
    return best[2] * MODEL_TILE, best[3] * MODEL_TILE


def model_size(width: int, height: int) -> tuple[int, int]:
    """The size to send a width x height image at: itself, or smaller when it is larger than the
    model can use in both directions.

    The smaller size keeps the aspect ratio and stays at least as large as `model_canvas` in
    width and height, so the model sees every pixel it would have seen; the boxes it answers are
    relative (0..999) and land on the smaller image as they would on the original. A 2182 x 3086
    pt page at 144 dpi (4364 x 6172 px) is sent as 1630 x 2304 px.
    """
    canvas_w, canvas_h = model_canvas(width, height)
    scale = max(canvas_w / width, canvas_h / height)
    if scale >= 1:
        return width, height
    return min(width, math.ceil(width * scale)), min(height, math.ceil(height * scale))


def resize_to(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` at `size` (itself when it has that size already), for downscaling."""
    if size == img.size:
        return img
    # reducing_gap 1.0: a box-filter reduce() by whole factors first, then Lanczos; ~2x faster
    # than Lanczos all the way on a 27-megapixel page, and area averaging suits text.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=1.0)
