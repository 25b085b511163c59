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

This module is the geometry's and the file's owner; the PyMuPDF calls (opening the source,
fitting and writing each line, saving) are engine/mupdf.py's `write_text_layers`, under its lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from PIL import Image

from . import mupdf
from .text_layer import PageLayout

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

#: Which pages got a text layer, and which were left alone because they had text.
SearchablePdfReport = mupdf.TextLayerReport


def write_searchable_pdf(
    source: Path | Sequence[Path],
    layouts: Iterable[PageLayout],
    out_path: Path,
    *,
    text_layer: str = "skip",
    password: str | None = None,
    turns: Mapping[int, int] | None = None,
) -> SearchablePdfReport:
    """Write `out_path`: the pages of `source` with the text of `layouts` as an invisible layer.

    `source` is a PDF path, or a sequence of image paths (page n is the n-th image). `turns`:
    the degrees clockwise a page of `source` was turned before it was OCRed (engine/rotation.py;
    its layout's boxes are of the turned page). The file
    appears complete or not at all (written beside it, then renamed). Raises ValueError for an
    unknown `text_layer`, `mupdf.MuPDFError` when the source cannot be read."""
    if text_layer not in TEXT_LAYER_MODES:
        raise ValueError(f"text_layer must be one of {', '.join(TEXT_LAYER_MODES)}")
    turns = turns or {}
    # One page at a time, as MuPDF writes it: a long document's layouts are never all held.
    by_number = ((lay.number, _page_text(lay, turns.get(lay.number, 0))) for lay in layouts)
    out_path = Path(out_path)
    from . import export  # export imports this module

    fd, tmp_name = export.create_temp(out_path)
    # MuPDF saves by removing the file and making a new one: the mode the export's rule gave
    # (the umask's) is put back on the new file, whatever mode MuPDF's own creation had.
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
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
        report = mupdf.write_text_layers(
            pdf_path, by_number, tmp, replace=text_layer == "replace", password=password
        )
        os.chmod(tmp, mode)
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


def _page_text(layout: PageLayout, turn: int = 0) -> mupdf.PageText:
    """A page's lines, block by block in the model's (reading) order."""
    lines = tuple(
        mupdf.TextLine(line.text, line.box) for block in layout.blocks for line in block.lines
    )
    return mupdf.PageText(layout.width, layout.height, lines, turn=turn)
