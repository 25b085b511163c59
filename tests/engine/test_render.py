"""The size a page image is sent at (engine.images.model_size) and `Document.render(fit=...)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine.documents import open_document
from ocrdesk.engine.images import MODEL_MAX_TILES, MODEL_TILE, model_canvas, model_size

fitz: Any = pymupdf


@pytest.mark.parametrize(
    ("size", "canvas"),
    [
        ((1190, 1684), (2 * MODEL_TILE, 3 * MODEL_TILE)),  # A4 portrait: 2 x 3 tiles
        ((1684, 1190), (3 * MODEL_TILE, 2 * MODEL_TILE)),
        ((4364, 6172), (2 * MODEL_TILE, 3 * MODEL_TILE)),
        ((3000, 3000), (3 * MODEL_TILE, 3 * MODEL_TILE)),  # square: the largest square grid
        ((400, 8000), (1 * MODEL_TILE, MODEL_MAX_TILES * MODEL_TILE)),  # a long receipt
    ],
)
def test_model_canvas(size: tuple[int, int], canvas: tuple[int, int]) -> None:
    assert model_canvas(*size) == canvas


@pytest.mark.parametrize(
    "size", [(1190, 1684), (600, 400), (4364, 6172), (6172, 4364), (12000, 500), (9000, 9000)]
)
def test_model_size_never_goes_below_the_canvas(size: tuple[int, int]) -> None:
    width, height = model_size(*size)
    canvas_w, canvas_h = model_canvas(*size)
    assert width <= size[0] and height <= size[1]
    assert (width >= canvas_w and height >= canvas_h) or (width, height) == size
    assert abs(width / height - size[0] / size[1]) < 0.01  # the aspect ratio is kept


def test_ordinary_pages_are_left_alone() -> None:
    assert model_size(1190, 1684) == (1190, 1684)  # A4 at 144 dpi
    assert model_size(1275, 1650) == (1275, 1650)  # US Letter at 150 dpi
    assert model_size(4364, 6172) == (1630, 2304)


def test_a_pdf_page_renders_straight_at_the_fitted_size(tmp_path: Path) -> None:
    doc = fitz.open()
    doc.new_page(width=2182, height=3086).insert_text((100, 200), "poster", fontsize=80)
    doc.save(tmp_path / "poster.pdf")
    doc.close()
    with open_document(tmp_path / "poster.pdf") as poster:
        assert poster.render(1, 144).size == (4364, 6172)
        width, height = poster.render(1, 144, fit=model_size).size
    assert abs(width - 1630) <= 1 and abs(height - 2304) <= 2


def test_an_image_page_is_resized_to_the_fitted_size(tmp_path: Path) -> None:
    Image.new("RGB", (6000, 4500), "white").save(tmp_path / "photo.png")
    with open_document(tmp_path / "photo.png") as photo:
        assert photo.render(1).size == (6000, 4500)
        assert photo.render(1, fit=model_size).size == model_size(6000, 4500)
        assert model_size(6000, 4500) == (2304, 1728)  # 3 x 2 tiles of 768 px
