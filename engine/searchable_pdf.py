"""The searchable PDF: the document's own pages with an invisible text layer from the OCR.

    report = write_searchable_pdf(source, layouts, out_path, text_layer="skip")

`source` is a PDF file or a sequence of image files. For a PDF the pages are the ORIGINAL ones
(inserted into a copy of the file, their content not re-rendered: a scan's image and any vector
content stay as they were); for images there is one page per image, 1 pixel = 1/2 pt
(`IMAGE_POINTS_PER_PIXEL`, a 144 dpi page at its paper size), the image filling it. `layouts`
holds a `text_layer.PageLayout` for each page that has text (pages without one are kept as they
are); its boxes are in pixels of the page image that was sent, and are mapped onto the page's
visible area (its crop box, as rotated by /Rotate), so the text lands on the ink whatever the
page's rotation and crop box.

Each line is written in render mode 3 (invisible), its font size fitting the line's height and
its horizontal scale its width, so that selecting text highlights the ink it came from; lines are
written block by block in the model's order, so copying gives them in reading order. The fonts
are MuPDF's own: Noto Serif (Latin with diacritics, Greek, Cyrillic, letterlike and sub/superscript
signs) and Droid Sans Fallback (CJK, arrows and most maths symbols), each character set in the
first that has it; they are subset when the source has no fonts of its own (a scan, images), so
that the layer costs kilobytes and the source's fonts are never touched.

A page that already has text is skipped (`text_layer="skip"`, OCRmyPDF's --skip-text) or gets
its invisible text removed first (`"replace"`, like OCRmyPDF's --redo-ocr: visible text stays).

Every PyMuPDF call holds `mupdf.LOCK` (PyMuPDF is not thread-safe).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymupdf
from PIL import Image

from . import mupdf
from .text_layer import Line, PageLayout

__all__ = [
    "IMAGE_POINTS_PER_PIXEL",
    "TEXT_LAYER_MODES",
    "SearchablePdfReport",
    "write_searchable_pdf",
]

#: Page size of an image input: a pixel is 1/2 pt, as in the layout PDF of engine/export.py.
IMAGE_POINTS_PER_PIXEL = 0.5
#: What to do with a page that already has text: leave it, or replace its invisible text.
TEXT_LAYER_MODES = ("skip", "replace")
#: Image pages are written in chunks of this many (MuPDF holds a chunk's images until saved).
_IMAGE_CHUNK = 50
_INVISIBLE = 3  # PDF text render mode 3 (neither fill nor stroke), texttrace's "type" too
_FONT_NAMES = ("OcrDeskText0", "OcrDeskText1")

_fitz: Any = pymupdf  # PyMuPDF is only partly typed


@dataclass
class SearchablePdfReport:
    """Which pages got a text layer, and which were left alone because they had text."""

    layered: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def write_searchable_pdf(
    source: Path | Sequence[Path],
    layouts: Iterable[PageLayout],
    out_path: Path,
    *,
    text_layer: str = "skip",
    password: str | None = None,
) -> SearchablePdfReport:
    """Write `out_path`: the pages of `source` with the text of `layouts` as an invisible layer.

    `source` is a PDF path, or a sequence of image paths (page n is the n-th image). The file
    appears complete or not at all (written beside it, then renamed). Raises ValueError for an
    unknown `text_layer`, `mupdf.MuPDFError` when the source cannot be read."""
    if text_layer not in TEXT_LAYER_MODES:
        raise ValueError(f"text_layer must be one of {', '.join(TEXT_LAYER_MODES)}")
    by_number = {layout.number: layout for layout in layouts}
    out_path = Path(out_path)
    fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".tmp.pdf", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    images_pdf: Path | None = None
    try:
        if isinstance(source, (str, os.PathLike)):
            pdf_path = Path(source)
        else:
            images_pdf = tmp.with_suffix(".images.pdf")
            _images_pdf(list(source), images_pdf)
            pdf_path = images_pdf
        with mupdf.LOCK:
            report = _write(pdf_path, by_number, tmp, text_layer, password)
        os.replace(tmp, out_path)
        return report
    finally:
        for path in (tmp, images_pdf):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()


def _images_pdf(images: list[Path], path: Path) -> None:
    pages = []
    for image in images:
        with Image.open(image) as img:
            width, height = img.size
        pages.append((image, width * IMAGE_POINTS_PER_PIXEL, height * IMAGE_POINTS_PER_PIXEL))
    if not pages:
        raise ValueError("no images")
    for start in range(0, len(pages), _IMAGE_CHUNK):
        mupdf.append_image_pages(path, pages[start : start + _IMAGE_CHUNK], create=not start)


def _open(path: Path, password: str | None) -> Any:
    try:
        doc = mupdf.open_file(path, "pdf")
    except Exception as exc:
        raise mupdf.MuPDFError(f"cannot be read as PDF ({mupdf.short_reason(exc)})") from exc
    if doc.needs_pass and not doc.authenticate(password or ""):
        doc.close()
        raise mupdf.MuPDFError("the document is encrypted; give its password", password=True)
    return doc


def _write(
    pdf_path: Path, layouts: dict[int, PageLayout], out: Path, mode: str, password: str | None
) -> SearchablePdfReport:
    report = SearchablePdfReport()
    doc = _open(pdf_path, password)
    try:
        own_fonts = any(doc.get_page_fonts(i) for i in range(doc.page_count))
        fonts = _fonts()
        for number in range(1, doc.page_count + 1):
            layout = layouts.get(number)
            if layout is None or not layout.blocks or layout.width <= 0 or layout.height <= 0:
                continue
            page = doc.load_page(number - 1)
            if page.get_text("text").strip():
                if mode == "skip":
                    report.skipped.append(number)
                    continue
                _remove_invisible_text(page)
            if _add_layer(page, layout, fonts):
                report.layered.append(number)
        if not own_fonts:
            doc.subset_fonts()
        doc.save(str(out), garbage=1, deflate=True)
    finally:
        doc.close()
        _fitz.TOOLS.reset_mupdf_warnings()
    return report


def _fonts() -> list[Any]:
    fonts = []
    for kwargs in ({"language": "en"}, {"fontname": "cjk"}):
        with contextlib.suppress(Exception):  # a PyMuPDF build without that font
            fonts.append(_fitz.Font(**kwargs))
    return fonts or [_fitz.Font("helv")]


def _remove_invisible_text(page: Any) -> None:
    rects = [_fitz.Rect(span["bbox"]) for span in page.get_texttrace() if span["type"] == 3]
    for rect in rects:
        page.add_redact_annot(rect)
    if rects:
        page.apply_redactions(
            images=_fitz.PDF_REDACT_IMAGE_NONE,
            graphics=_fitz.PDF_REDACT_LINE_ART_NONE,
            text=_fitz.PDF_REDACT_TEXT_REMOVE,
        )


def _runs(text: str, fonts: list[Any]) -> list[tuple[int, str]]:
    """`text` cut into runs of characters set in the same font (the first that has them)."""
    runs: list[tuple[int, str]] = []
    for char in text:
        index = next((i for i, f in enumerate(fonts) if f.has_glyph(ord(char))), 0)
        if runs and runs[-1][0] == index:
            runs[-1] = (index, runs[-1][1] + char)
        else:
            runs.append((index, char))
    return runs


def _add_layer(page: Any, layout: PageLayout, fonts: list[Any]) -> bool:
    names = _FONT_NAMES[: len(fonts)]
    for name, font in zip(names, fonts, strict=True):
        page.insert_font(fontname=name, fontbuffer=font.buffer)
    visible = page.rect  # the crop box, rotated: what a viewer shows
    sx, sy = visible.width / layout.width, visible.height / layout.height
    rotate = int(page.rotation)
    # Along the line in the visible page, whatever /Rotate: unrotate, scale x, rotate back.
    to_visible = _fitz.Matrix(page.rotation_matrix)
    to_visible.e = to_visible.f = 0
    to_page = _fitz.Matrix(page.derotation_matrix)
    to_page.e = to_page.f = 0
    shape = page.new_shape()
    wrote = False
    for block in layout.blocks:
        for line in block.lines:
            wrote |= _add_line(
                shape,
                line,
                fonts,
                names,
                (sx, sy),
                page.derotation_matrix,
                rotate,
                to_visible,
                to_page,
            )
    if wrote:
        shape.commit()
    return wrote


def _add_line(
    shape: Any,
    line: Line,
    fonts: list[Any],
    names: Sequence[str],
    scale: tuple[float, float],
    derotation: Any,
    rotate: int,
    to_visible: Any,
    to_page: Any,
) -> bool:
    x1, y1, x2, y2 = line.box
    left, top, right, bottom = x1 * scale[0], y1 * scale[1], x2 * scale[0], y2 * scale[1]
    if right - left <= 0 or bottom - top <= 0:
        return False
    runs = _runs(line.text, fonts)
    ascender = max(fonts[i].ascender for i, _ in runs)
    descender = min(fonts[i].descender for i, _ in runs)
    size = (bottom - top) / max(0.5, ascender - descender)
    natural = sum(fonts[i].text_length(text, fontsize=size) for i, text in runs)
    if natural <= 0:
        return False
    stretch = (right - left) / natural
    morph = to_visible * _fitz.Matrix(stretch, 1) * to_page
    x = left
    for index, text in runs:
        origin = _fitz.Point(x, bottom + descender * size) * derotation
        shape.insert_text(
            origin,
            text,
            fontname=names[index],
            fontsize=size,
            rotate=rotate,
            render_mode=_INVISIBLE,
            morph=(origin, morph),
        )
        x += fonts[index].text_length(text, fontsize=size) * stretch
    return True
