"""Small builders for engine tests: documents made on the spot."""

from __future__ import annotations

from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw


def make_pdf(path: Path, pages: int, *, text: str = "Page") -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 72), f"{text} {i + 1}", fontsize=24)
        page.draw_rect(pymupdf.Rect(72, 300, 400, 500), color=(0, 0, 0))
    doc.save(path)
    doc.close()
    return path


def make_png(path: Path, size: tuple[int, int] = (600, 400)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 20), "Hello OCR", fill="black")
    img.save(path)
    return path
