"""The one module that calls PyMuPDF (MuPDF): opening, rendering and writing PDFs.

    info = open_document(source)                 -> page count and format (`MuPDFError` if not)
    size = page_size(source, number)             -> a page's width and height in points
    page = render_page(source, number, dpi, ...) -> RGB samples of one page, within a time limit
    forget(source)                               -> the document is closed: drop it everywhere
    append_image_pages(pdf_path, pages, create=) -> write pages that each show one image file
    write_text_layers(pdf_path, pages, out_path)  -> a PDF's pages with invisible text added

Opening and rendering run in a small pool of render processes (at most `RENDER_PROCESSES`), fed
with a file path (or the bytes of a pasted document) and a page number. MuPDF cannot be
interrupted from another thread, so a page that takes longer than its time limit
(`RENDER_SECONDS` by default) can only be stopped by killing the process that renders it: that
process is killed and replaced, the page fails alone with `MuPDFError` ("took longer than ..."),
and the other pages and documents go on in the other processes. A process that crashes inside
MuPDF fails its page the same way instead of taking the application with it. `forget` also
kills a process still rendering a page of the document, so closing a document (the end of a run,
Ctrl+C) never waits for a page that does not end. A page costs one pickled copy of its pixels
through a pipe (a few ms); the processes render in parallel, where in-process rendering was
serialised by the lock below (benchmarks/bench_raster.py).

In the render processes stdout and stderr are /dev/null: MuPDF prints some messages itself
(e.g. "svg: ignoring external image" goes to the C stdout when an SVG is opened, whatever
`mupdf_display_warnings` says), and those must not reach the terminal of a folder run.

In this process PyMuPDF is used only by the PDF writers (`append_image_pages`, and
`write_text_layers` for the searchable PDF of engine/searchable_pdf.py), and, should a render
process not start at all (e.g. a bundle that lacks the worker entry point), by opening and
rendering here, without a time limit, logged once. PyMuPDF is not thread-safe, not even across
documents: every call here holds `LOCK`. No other module imports PyMuPDF
(tests/engine/test_import_rule.py).

This module imports nothing from the rest of the engine, so that a render process runs it as a
plain script: `python -c <bootstrap>` (see `_worker_command`), or, frozen, `ocrdesk
--ocrdesk-render-worker` (packaging/ocrdesk_main.py calls `worker_main`).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import logging
import math
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pymupdf

log = logging.getLogger(__name__)

#: PyMuPDF is only partly typed; it is used through this untyped alias.
_fitz: Any = pymupdf
_fitz.TOOLS.mupdf_display_errors(False)
_fitz.TOOLS.mupdf_display_warnings(False)

__all__ = [
    "LOCK",
    "RENDER_PROCESSES",
    "RENDER_SECONDS",
    "WORKER_FLAG",
    "DocumentInfo",
    "MuPDFError",
    "PageText",
    "RenderedPage",
    "Source",
    "TextLayerReport",
    "TextLine",
    "append_image_pages",
    "forget",
    "open_document",
    "page_size",
    "render_page",
    "short_reason",
    "worker_main",
    "write_text_layers",
]

#: The most seconds opening a document or rendering one page may take. A normal page takes
#: 20-200 ms at 144 dpi and the heaviest real pages seen (maps, big scans) a few seconds; the
#: hostile nested-form PDF of issue 17 never ends. A minute is far past any real page.
RENDER_SECONDS = 60.0
#: Render processes at most: pages render in parallel up to this; a hung page holds one until
#: its limit, so there are at least two.
RENDER_PROCESSES = max(2, min(4, os.cpu_count() or 1))
#: The first argument that makes a frozen bundle run `worker_main` (packaging/ocrdesk_main.py).
WORKER_FLAG = "--ocrdesk-render-worker"
#: How long a new render process may take to import PyMuPDF and say it is ready.
_START_SECONDS = 60.0
#: PyMuPDF is not thread-safe, across documents too: every PyMuPDF call in this process holds it.
LOCK = threading.RLock()

_MAX_REASON = 160
_HEADER = struct.Struct("<QQ")  # a frame: pickled message length, raw bytes length
_PIPE_BYTES = 1 << 20  # Linux F_SETPIPE_SZ: a page's pixels cross in fewer reads
_F_SETPIPE_SZ = 1031
_PR_SET_PDEATHSIG = 1


class MuPDFError(Exception):
    """Opening or rendering failed; `reason` is a few plain words.

    `password` is True when the document is encrypted and the password is missing or wrong."""

    def __init__(self, reason: str, *, password: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.password = password


@dataclasses.dataclass(frozen=True)
class Source:
    """A document to open: a file (`path`) or bytes (`data`), its PyMuPDF file type, a password.

    `token` names the opened document in the render processes (unique per `Source`)."""

    kind: str
    path: str | None = None
    data: bytes | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


@dataclasses.dataclass(frozen=True)
class DocumentInfo:
    page_count: int
    format: str  # e.g. "PDF 1.7", "SVG"


@dataclasses.dataclass(frozen=True)
class RenderedPage:
    """A page as packed RGB rows (`Image.frombytes("RGB", size, samples, "raw", "RGB", stride)`)."""

    width: int
    height: int
    stride: int
    samples: bytes | bytearray


def short_reason(exc: BaseException) -> str:
    """A library exception as a few plain words (its first line, shortened), never a traceback."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    if not text:
        text = type(exc).__name__
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return text


# --------------------------------------------------------------------------- MuPDF itself


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def open_file(path: str | os.PathLike[str], kind: str) -> Any:
    """The fitz document of the file at `path`, read as `kind` ("pdf", "png", ...).

    MuPDF takes file names as UTF-8 only; a name with other bytes (kept by Python as surrogate
    escapes) is opened by Python and handed over as bytes."""
    name = os.fspath(path)
    if _utf8(name):
        return _fitz.open(name, filetype=kind)
    with open(name, "rb") as file:
        return _fitz.open(stream=file.read(), filetype=kind)


def _open(source: Source) -> Any:
    """The opened, authenticated fitz document (the caller holds LOCK or is a render process)."""
    label = source.kind.upper()
    try:
        if source.data is not None:
            doc = _fitz.open(stream=source.data, filetype=source.kind)
        else:
            doc = open_file(source.path or "", source.kind)
    except MemoryError as exc:
        raise MuPDFError("out of memory") from exc
    except Exception as exc:
        raise MuPDFError(f"cannot be read as {label} ({short_reason(exc)})") from exc
    try:
        if doc.needs_pass:
            if source.password is None:
                raise MuPDFError(
                    "the document is encrypted; give its password (CLI: --password)", password=True
                )
            if not doc.authenticate(source.password):
                raise MuPDFError("wrong password", password=True)
        return doc
    except BaseException:
        with contextlib.suppress(Exception):
            doc.close()
        raise


def _info(doc: Any, kind: str) -> DocumentInfo:
    label = kind.upper()
    try:
        count = int(doc.page_count)
        meta = doc.metadata or {}
        fmt = str(meta.get("format") or label)
    except Exception as exc:
        raise MuPDFError(f"cannot be read as {label} ({short_reason(exc)})") from exc
    if count < 1:
        raise MuPDFError("no pages")
    return DocumentInfo(count, fmt)


def _page_size(doc: Any, number: int) -> tuple[float, float]:
    try:
        rect = doc.load_page(number - 1).rect
        return float(rect.width), float(rect.height)
    except Exception as exc:
        raise MuPDFError(short_reason(exc)) from exc
    finally:
        _fitz.TOOLS.reset_mupdf_warnings()


def _render(doc: Any, number: int, dpi: float, max_pixels: int) -> Any:
    """The page as an RGB pixmap without alpha."""
    try:
        page = doc.load_page(number - 1)
        rect = page.rect
        if not (rect.width >= 1 and rect.height >= 1):
            raise MuPDFError("the page has no area")
        zoom = fitting_zoom(rect.width, rect.height, dpi / 72.0, max_pixels)
        pix = page.get_pixmap(matrix=_fitz.Matrix(zoom, zoom), alpha=False, colorspace=_fitz.csRGB)
        if pix.n != 3 or pix.alpha:
            pix = _fitz.Pixmap(_fitz.csRGB, pix, 0)
        return pix
    except MuPDFError:
        raise
    except MemoryError as exc:
        raise MuPDFError("out of memory") from exc
    except Exception as exc:
        raise MuPDFError(short_reason(exc)) from exc
    finally:
        _fitz.TOOLS.reset_mupdf_warnings()


def fitting_zoom(width: float, height: float, zoom: float, max_pixels: int) -> float:
    """`zoom`, or the largest smaller one at which a width x height (points) page fits the limit."""
    if math.ceil(width * zoom) * math.ceil(height * zoom) <= max_pixels:
        return zoom
    zoom = math.sqrt(max_pixels / (width * height))
    while zoom > 0 and math.ceil(width * zoom) * math.ceil(height * zoom) > max_pixels:
        zoom *= 0.999
    return zoom


def append_image_pages(
    pdf_path: Path, pages: Sequence[tuple[Path, float, float]], *, create: bool
) -> None:
    """Add one page per (image file, width pt, height pt), the image filling the page.

    With `create` a new PDF is written to `pdf_path` (compressed); otherwise the pages are
    appended to the PDF there by an incremental save, so that a long document can be written in
    chunks and MuPDF never holds more than one chunk's images in memory."""
    with LOCK:
        pdf = _fitz.open() if create else _fitz.open(str(pdf_path))
        try:
            for image, width, height in pages:
                page = pdf.new_page(width=width, height=height)
                page.insert_image(page.rect, filename=str(image))
            if create:
                pdf.save(str(pdf_path), garbage=1, deflate=True)
            else:
                pdf.save(str(pdf_path), incremental=True, encryption=0)  # 0: PDF_ENCRYPT_KEEP
        finally:
            pdf.close()
            _fitz.TOOLS.reset_mupdf_warnings()


# --------------------------------------------------------------------------- text layers

#: PDF text render mode 3 (neither fill nor stroke): invisible text; texttrace's "type" too.
_INVISIBLE = 3
_FONT_NAMES = ("OcrDeskText0", "OcrDeskText1")


@dataclasses.dataclass(frozen=True)
class TextLine:
    """One row of text and its box (x1, y1, x2, y2) in pixels of the page image that was sent."""

    text: str
    box: tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class PageText:
    """A page's invisible text: its lines in reading order, boxes in pixels of the
    `width` x `height` image of the page (its visible area, as rotated by /Rotate).

    `turn`: degrees clockwise (a multiple of 90) the page was turned by, beyond its own
    /Rotate, before it was OCRed (engine/rotation.py); the page's /Rotate is turned as much,
    so that it shows upright as it was read and its visible area is the image the boxes are in."""

    width: int
    height: int
    lines: tuple[TextLine, ...]
    turn: int = 0


@dataclasses.dataclass
class TextLayerReport:
    """Which pages got a text layer, and which were left alone because they had text."""

    layered: list[int] = dataclasses.field(default_factory=list)
    skipped: list[int] = dataclasses.field(default_factory=list)


def write_text_layers(
    pdf_path: Path,
    pages: Mapping[int, PageText] | Iterable[tuple[int, PageText]],
    out_path: Path,
    *,
    replace: bool,
    password: str | None = None,
) -> TextLayerReport:
    """Save to `out_path` the PDF at `pdf_path` with `pages[n]`'s lines (or those of each
    (n, text) that `pages` yields) written on page n (1-based) as invisible text; the pages' own
    content is not touched. An iterable is taken one page at a time (a generator keeps no page's
    text after its page is written); a number beyond the PDF's pages, or given again, is left out.

    A page that has text already is skipped, or with `replace` its invisible text is removed
    first (its visible text stays). A page whose text has a `turn` has its /Rotate turned as
    much (it shows as it was read). Each line's font size fits its box's height and its
    horizontal scale the box's width. The fonts are subset when the PDF has none of its own.
    Raises `MuPDFError` when the PDF cannot be read or its password is missing or wrong."""
    report = TextLayerReport()
    with LOCK:
        doc = _open_pdf(pdf_path, password)
        try:
            own_fonts = any(doc.get_page_fonts(i) for i in range(doc.page_count))
            fonts = _TextFonts()
            items = sorted(pages.items()) if isinstance(pages, Mapping) else pages
            seen: set[int] = set()
            for number, text in items:
                if not 1 <= number <= doc.page_count or number in seen:
                    continue
                seen.add(number)
                if not text.lines or text.width <= 0 or text.height <= 0:
                    continue
                page = doc.load_page(number - 1)
                if page.get_text("text").strip():
                    if not replace:
                        report.skipped.append(number)
                        continue
                    _remove_invisible_text(page)
                if text.turn % 360:
                    page.set_rotation((int(page.rotation) + text.turn) % 360)
                if _add_text_layer(page, text, fonts):
                    report.layered.append(number)
            if not own_fonts:
                doc.subset_fonts()
            doc.save(str(out_path), garbage=1, deflate=True)
        finally:
            doc.close()
            _fitz.TOOLS.reset_mupdf_warnings()
    return report


def _open_pdf(path: Path, password: str | None) -> Any:
    """The authenticated fitz document of the PDF at `path` (the caller holds LOCK)."""
    try:
        doc = open_file(path, "pdf")
    except Exception as exc:
        raise MuPDFError(f"cannot be read as PDF ({short_reason(exc)})") from exc
    if doc.needs_pass and not doc.authenticate(password or ""):
        doc.close()
        raise MuPDFError("the document is encrypted; give its password", password=True)
    return doc


class _TextFonts:
    """MuPDF's own fonts, in the order a character is looked up: Noto Serif (Latin with
    diacritics, Greek, Cyrillic), then Droid Sans Fallback (CJK, arrows, maths). Which font
    sets a character, and its advance, are looked up once a character: PyMuPDF measures text
    one character at a time in Python, which was most of a page's time."""

    def __init__(self) -> None:
        fonts = []
        for kwargs in ({"language": "en"}, {"fontname": "cjk"}):
            with contextlib.suppress(Exception):  # a PyMuPDF build without that font
                fonts.append(_fitz.Font(**kwargs))
        self.fonts: list[Any] = fonts or [_fitz.Font("helv")]
        self.names = _FONT_NAMES[: len(self.fonts)]
        self.buffers = [f.buffer for f in self.fonts]  # a copy each time it is read (3.5 MB CJK)
        self.xrefs: dict[int, int] = {}  # font index -> its object, once a page has used it
        self.ascender = [float(f.ascender) for f in self.fonts]
        self.descender = [float(f.descender) for f in self.fonts]
        self._chars: dict[str, tuple[int, float]] = {}
        self.glyphs: dict[str, str] = {}  # a character's glyph in its font, as 4 hex digits

    def _char(self, char: str) -> tuple[int, float]:
        found = self._chars.get(char)
        if found is None:
            code = ord(char)
            index = next((i for i, f in enumerate(self.fonts) if f.has_glyph(code)), 0)
            found = (index, float(self.fonts[index].glyph_advance(code)))
            self._chars[char] = found
            # The fonts are embedded as Type0 fonts with Identity-H: a string's codes are glyph
            # ids, two bytes each (what Shape.insert_text writes for them).
            self.glyphs[char] = f"{self.fonts[index].has_glyph(code) & 0xFFFF:04x}"
        return found

    def runs(self, text: str) -> list[tuple[int, str, float]]:
        """`text` cut into runs of characters set in the same font (the first that has
        them): (font index, the run, its advance in em)."""
        runs: list[tuple[int, str, float]] = []
        known = self._chars
        start, current, width = 0, -1, 0.0
        for k, char in enumerate(text):
            index, advance = known.get(char) or self._char(char)
            if index != current:
                if k:
                    runs.append((current, text[start:k], width))
                start, current, width = k, index, advance
            else:
                width += advance
        if text:
            runs.append((current, text[start:], width))
        return runs


def _link_fonts(page: Any, fonts: Iterable[tuple[str, int]]) -> bool:
    """Name the fonts already in the document (name, xref) in `page`'s resources; False where
    they are not the page's own object or dictionary (`_own_resources` made them so first).

    Why not `insert_font` on every page: it hashes the whole font file each time to find the
    copy already there, ~8 ms a page for the CJK font, a third of the searchable PDF's time."""
    doc = page.parent
    kind, value = doc.xref_get_key(page.xref, "Resources")
    if kind == "xref":
        holder, path = int(value.split()[0]), ""
    elif kind == "dict":
        holder, path = page.xref, "Resources/"
    else:
        return False
    kind, value = doc.xref_get_key(holder, path + "Font")
    if kind == "xref":
        holder, path = int(value.split()[0]), ""
    elif kind in ("dict", "null"):
        path += "Font/"
    else:
        return False
    for name, xref in fonts:
        doc.xref_set_key(holder, path + name, f"{xref} 0 R")
    return True


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


_Matrix = tuple[float, float, float, float, float, float]


def _concat(m: _Matrix, n: _Matrix) -> _Matrix:
    """`m` then `n` (PDF's row-vector convention, as fitz.Matrix's `m * n`), in plain floats:
    fitz.Matrix arithmetic is Python calling MuPDF for each product, most of a line's time."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (
        a * p + b * r,
        a * q + b * s,
        c * p + d * r,
        c * q + d * s,
        e * p + f * r + t,
        e * q + f * s + u,
    )


def _number(value: float) -> str:
    """A content stream number: four decimals at most (1/10,000 pt), never an exponent."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclasses.dataclass(frozen=True)
class _Placement:
    """How a page's pixel boxes become its text: scale to the visible page, undo /Rotate,
    then PDF space (y up, from the media box's corner)."""

    scale: tuple[float, float]
    derotation: _Matrix  # visible page -> unrotated page space (y down)
    to_visible: _Matrix  # rotation only (no translation), for the along-the-line stretch
    to_page: _Matrix
    to_pdf: _Matrix  # unrotated page space -> PDF space
    upright: _Matrix  # the glyphs turned with the page's /Rotate, so they read as shown


def _add_text_layer(page: Any, text: PageText, fonts: _TextFonts) -> bool:
    visible = page.rect  # the crop box, rotated: what a viewer shows
    # Along the line in the visible page, whatever /Rotate: unrotate, scale x, rotate back.
    a, b, c, d, _, _ = page.rotation_matrix
    to_visible = (a, b, c, d, 0.0, 0.0)
    a, b, c, d, _, _ = page.derotation_matrix
    to_page = (a, b, c, d, 0.0, 0.0)
    corner = page.cropbox_position
    # y down from the crop box's corner -> y up from the media box's (page.transformation_matrix
    # would do it for the media box alone).
    to_pdf = (1.0, 0.0, 0.0, -1.0, float(corner.x), float(page.mediabox_size.y - corner.y))
    placement = _Placement(
        (visible.width / text.width, visible.height / text.height),
        tuple(page.derotation_matrix),
        to_visible,
        to_page,
        to_pdf,
        _UPRIGHT[int(page.rotation) % 360],
    )
    # Written as PDF operators here rather than through Shape.insert_text, which measured the
    # run again, fetched the font's widths up to its highest character (a list of thousands for
    # a dash or a quote) and did its matrix arithmetic through MuPDF: 60 % of the layer's time.
    # tests/engine/test_searchable_pdf.py checks the text lands where insert_text put it.
    operators: list[str] = []
    used: set[int] = set()
    for line in text.lines:
        _add_text_line(operators, used, line, fonts, placement)
    if not operators:
        return False
    _give_fonts(page, fonts, sorted(used))
    shape = page.new_shape()
    shape.text_cont = f"\nq\n{_INVISIBLE} Tr\n{''.join(operators)}Q\n"
    shape.commit()  # the page's own content wrapped in q/Q, this stream after it
    return True


#: The text matrix's turn for each /Rotate, so that the text runs along the visible line.
_UPRIGHT: dict[int, _Matrix] = {
    0: (1.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    90: (0.0, 1.0, -1.0, 0.0, 0.0, 0.0),
    180: (-1.0, 0.0, 0.0, -1.0, 0.0, 0.0),
    270: (0.0, -1.0, 1.0, 0.0, 0.0, 0.0),
}


def _give_fonts(page: Any, fonts: _TextFonts, used: list[int]) -> None:
    """Put the fonts of `used` (indices) in `page`'s resources: only those, as a font that no
    page uses is not subset and would be embedded whole (3.5 MB for the CJK one)."""
    _own_resources(page)
    # A page with fonts of these names already (an OCRDesk PDF read again) keeps them, as
    # insert_font does; their objects are not the ones the next pages are given.
    taken = any(font[4] in fonts.names for font in page.get_fonts())
    known = [(fonts.names[i], fonts.xrefs[i]) for i in used if i in fonts.xrefs]
    linked = not taken and _link_fonts(page, known)
    for i in used:
        if linked and i in fonts.xrefs:
            continue
        xref = page.insert_font(fontname=fonts.names[i], fontbuffer=fonts.buffers[i])
        if not taken:
            fonts.xrefs[i] = xref


def _own_resources(page: Any) -> None:
    """Give `page` the /Resources it inherits from its /Pages parents as its own, before fonts
    are added: PyMuPDF's insert_font on a page without its own gives it /Resources holding only
    /Font, which hides the inherited /XObject: the scan went blank, only the invisible text
    left. The parents' object (or a copy of their inline dictionary) becomes the page's."""
    doc = page.parent
    kind, _ = doc.xref_get_key(page.xref, "Resources")
    if kind != "null":
        return
    holder = page.xref
    for _ in range(64):  # a /Parent chain that loops is not followed for ever
        kind, value = doc.xref_get_key(holder, "Parent")
        if kind != "xref":
            return
        holder = int(value.split()[0])
        kind, value = doc.xref_get_key(holder, "Resources")
        if kind in ("xref", "dict"):
            doc.xref_set_key(page.xref, "Resources", value)
            return


def _add_text_line(
    out: list[str], used: set[int], line: TextLine, fonts: _TextFonts, where: _Placement
) -> None:
    """Append the operators that write `line` (one text object a run of one font), and the
    fonts they use to `used`."""
    x1, y1, x2, y2 = line.box
    sx, sy = where.scale
    left, top, right, bottom = x1 * sx, y1 * sy, x2 * sx, y2 * sy
    if right - left <= 0 or bottom - top <= 0:
        return
    runs = fonts.runs(line.text)
    if not runs:
        return
    ascender = max(fonts.ascender[i] for i, _, _ in runs)
    descender = min(fonts.descender[i] for i, _, _ in runs)
    size = (bottom - top) / max(0.5, ascender - descender)
    natural = sum(advance for _, _, advance in runs) * size
    if natural <= 0:
        return
    stretch = (right - left) / natural
    # Text space -> PDF space: the glyphs turned upright, stretched along the visible line
    # (a diagonal matrix whatever the turn, so the same with y up or down), then moved to each
    # run's origin on the baseline.
    stretched = (stretch, 0.0, 0.0, 1.0, 0.0, 0.0)
    along = _concat(_concat(_concat(where.upright, where.to_visible), stretched), where.to_page)
    a, b, c, d, _, _ = along
    ra, rb, rc, rd, re, rf = where.derotation
    pa, pb, pc, pd, pe, pf = where.to_pdf
    glyphs = fonts.glyphs
    baseline = bottom + descender * size
    x = left
    for index, run, advance in runs:
        px, py = x * ra + baseline * rc + re, x * rb + baseline * rd + rf  # unrotated page
        ex, ey = px * pa + py * pc + pe, px * pb + py * pd + pf
        matrix = " ".join(_number(v) for v in (a, b, c, d, ex, ey))
        code = "".join(glyphs[char] for char in run)
        out.append(f"BT /{fonts.names[index]} {_number(size)} Tf {matrix} Tm <{code}> Tj ET\n")
        used.add(index)
        x += advance * size * stretch


# --------------------------------------------------------------------------- the render process


def _write_frame(out: BinaryIO, message: object, raw: Any = b"") -> None:
    """Send a pickled message, then `raw` bytes as they are (a page's pixels: no copy)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(data), len(raw)))
    out.write(data)
    if len(raw):
        out.write(raw)
    out.flush()


def _read_frame(stream: BinaryIO) -> Any:
    """The next message (a request: no raw part), or None at end of file."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size, _ = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def worker_main() -> int:
    """Serve open and render requests on stdin/stdout until stdin ends (a render process)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # die with the parent, even when stuck in MuPDF
            # (the parent starts render processes from one thread that lives as long as it)
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - open while the process lives
    inp = sys.stdin.buffer
    docs: dict[str, Any] = {}
    _write_frame(out, ("ready", os.getpid()))
    while True:
        request = _read_frame(inp)
        if request is None:
            return 0
        op, fields, args, drops = request
        source = Source(*fields)
        for token in drops:
            doc = docs.pop(token, None)
            if doc is not None:
                with contextlib.suppress(Exception):
                    doc.close()
        reply: tuple[Any, ...]
        raw: Any = b""
        try:
            doc = docs.get(source.token)
            if doc is None:
                doc = _open(source)
                docs[source.token] = doc
            # Plain tuples: the parent cannot unpickle classes of this __main__ module.
            if op == "open":
                reply = ("ok", dataclasses.astuple(_info(doc, source.kind)))
            elif op == "size":
                reply = ("ok", _page_size(doc, *args))
            else:
                pix = _render(doc, *args)
                reply, raw = ("ok", (pix.width, pix.height, pix.stride)), pix.samples_mv
        except MuPDFError as exc:
            reply = ("error", exc.reason, exc.password)
        except MemoryError:
            reply = ("error", "out of memory", False)
        except Exception as exc:
            reply = ("error", short_reason(exc), False)
        finally:
            _fitz.TOOLS.reset_mupdf_warnings()
        _write_frame(out, reply, raw)
        raw = pix = None


def _worker_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG]
    # Run this file as a script, not as ocrdesk.engine.mupdf: importing the package would load
    # the whole engine (the openai client among others). PyMuPDF 2 imports the optional
    # pymupdf.layout (onnxruntime, ~1.3 s) and pymupdf4llm when installed; rendering needs
    # neither, so they are hidden and a process starts in ~0.3 s.
    boot = (
        "import sys, runpy; sys.path.pop(0); "
        "[sys.modules.setdefault(m, None) for m in ('pymupdf.layout', 'pymupdf4llm')]; "
        f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    )
    return [sys.executable, "-c", boot]


class _Process:
    """One render process and what the parent knows of it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            _worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            # A copy, not the process's live environment: render processes start from worker
            # threads, and CPython lets other threads run while a vfork()ed child execs
            # (gh-104372); one that sets a variable then (libc may move `environ`) makes exec
            # fail with EFAULT, "Bad address": seen in a loaded CI run (the corpus probes);
            # 4 threads spawning while another sets variables, 15 s: 421 failures, 0 with a copy.
            env=dict(os.environ),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.fd = self.proc.stdout.fileno()
        if sys.platform.startswith("linux"):
            with contextlib.suppress(Exception):
                import fcntl

                fcntl.fcntl(self.fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        self.known: set[str] = set()  # tokens of the documents it has open
        self.drops: list[str] = []  # tokens to close with its next request
        self.token: str | None = None  # the document it is working on now
        self.aborted = False

    def ready(self) -> bool:
        try:
            reply, _ = self.read(_START_SECONDS)
        except (TimeoutError, EOFError, OSError, pickle.UnpicklingError):
            return False
        return isinstance(reply, tuple) and reply[:1] == ("ready",)

    def send(self, message: object) -> None:
        _write_frame(self.stdin, message)  # type: ignore[arg-type]

    def read(self, seconds: float) -> tuple[Any, bytearray]:
        """The next reply and its raw bytes; TimeoutError past `seconds`, EOFError if the
        process went away."""
        deadline = time.monotonic() + seconds
        size, raw_size = _HEADER.unpack(self._read_into(bytearray(_HEADER.size), deadline))
        message = pickle.loads(self._read_into(bytearray(size), deadline))
        return message, self._read_into(bytearray(raw_size), deadline)

    def _read_into(self, buffer: bytearray, deadline: float) -> bytearray:
        view = memoryview(buffer)
        done = 0
        while done < len(buffer):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            readable, _, _ = select.select([self.fd], [], [], left)
            if not readable:
                raise TimeoutError
            count = os.readv(self.fd, [view[done:]])
            if not count:
                raise EOFError
            done += count
        return buffer

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def stop(self) -> None:
        """Close its stdin (it then exits); kill it if it does not."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            self.kill()  # closes stdout; the process is gone already


class _Pool:
    """The render processes; any thread may call `call` and `forget`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._cond = threading.Condition()
        self._idle: list[_Process] = []
        self._busy: list[_Process] = []
        self._starting = 0
        self.in_process = False  # no render process could start: MuPDF runs here
        self._local: dict[str, Any] = {}
        self._forgotten: set[str] = set()  # tokens of documents closed

    def busy(self) -> int:
        """Render processes at work now."""
        with self._cond:
            return len(self._busy)

    def call(self, op: str, source: Source, args: tuple[Any, ...], seconds: float) -> Any:
        if self.in_process:
            self._refuse_closed(source.token)
            return self._call_here(op, source, args)
        worker = self._acquire(source.token)
        if worker is None:
            self._refuse_closed(source.token)
            return self._call_here(op, source, args)
        try:
            # Closed before this call had a render process: `forget` found none to stop. Once
            # the process is ours (its token set), a `forget` kills it instead.
            self._refuse_closed(source.token)
        except MuPDFError:
            self._release(worker)
            raise
        known = source.token in worker.known
        sent = dataclasses.astuple(dataclasses.replace(source, data=None) if known else source)
        with self._cond:
            drops, worker.drops = worker.drops, []
        try:
            worker.send((op, sent, args, drops))
            reply, raw = worker.read(seconds)
        except TimeoutError:
            self._discard(worker)
            raise MuPDFError(f"took longer than {seconds:g} s (stopped)") from None
        except (EOFError, OSError, pickle.UnpicklingError):
            aborted = worker.aborted
            self._discard(worker)
            if aborted:
                raise MuPDFError("the document was closed") from None
            raise MuPDFError("the renderer crashed on it (MuPDF)") from None
        if reply[0] == "ok":
            worker.known.add(source.token)
        self._release(worker)
        if reply[0] != "ok":
            raise MuPDFError(reply[1], password=reply[2])
        if op == "open":
            return DocumentInfo(*reply[1])
        if op == "size":
            return reply[1]
        width, height, stride = reply[1]
        return RenderedPage(width, height, stride, raw)

    def _refuse_closed(self, token: str) -> None:
        with self._cond:
            if token in self._forgotten:
                raise MuPDFError("the document was closed")

    def _acquire(self, token: str) -> _Process | None:
        with self._cond:
            while not self._idle and len(self._busy) + self._starting >= self.size:
                self._cond.wait()
            if self._idle:
                reused = self._idle.pop()
                reused.token = token
                self._busy.append(reused)
                return reused
            self._starting += 1
        worker: _Process | None = None
        try:
            worker = _spawner.submit(_Process).result()
            if not worker.ready():
                worker.kill()
                worker = None
        except OSError:
            worker = None
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()
            if worker is None:
                if not self.in_process:
                    log.warning("no render process could start; rendering in this process")
                self.in_process = True
                return None
            worker.token = token
            self._busy.append(worker)
            return worker

    def _release(self, worker: _Process) -> None:
        with self._cond:
            worker.token = None
            if worker in self._busy:
                self._busy.remove(worker)
            # `forget` may have killed it after its reply had come: never hand a dead process
            # to the next document (its first request would fail as "closed").
            if not worker.aborted:
                self._idle.append(worker)
            self._cond.notify_all()
        if worker.aborted:
            worker.kill()

    def _discard(self, worker: _Process) -> None:
        with self._cond:
            if worker in self._busy:
                self._busy.remove(worker)
            self._cond.notify_all()
        worker.kill()

    def forget(self, token: str) -> None:
        with self._cond:
            self._forgotten.add(token)  # a token is one opening of a document: never reused
            for worker in self._idle + self._busy:
                if token in worker.known:
                    worker.drops.append(token)
                    worker.known.discard(token)
            # Killed under the lock, so that the process cannot meanwhile be released and taken
            # by another document's request (which the kill would then fail as "closed").
            for worker in self._busy:
                if worker.token == token:
                    worker.aborted = True  # its reader gets EOF and fails the page at once
                    with contextlib.suppress(OSError):
                        worker.proc.kill()
        with LOCK:
            doc = self._local.pop(token, None)
            if doc is not None:
                with contextlib.suppress(Exception):
                    doc.close()

    def _call_here(self, op: str, source: Source, args: tuple[Any, ...]) -> Any:
        with LOCK:
            try:
                doc = self._local.get(source.token)
                if doc is None:
                    doc = _open(source)
                    self._local[source.token] = doc
                if op == "open":
                    return _info(doc, source.kind)
                if op == "size":
                    return _page_size(doc, *args)
                pix = _render(doc, *args)
                return RenderedPage(pix.width, pix.height, pix.stride, pix.samples)
            finally:
                _fitz.TOOLS.reset_mupdf_warnings()

    def shutdown(self) -> None:
        with self._cond:
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
        for worker in busy:
            worker.aborted = True
            with contextlib.suppress(OSError):
                worker.proc.kill()
        for worker in idle:
            worker.stop()


_pool = _Pool(RENDER_PROCESSES)
# Render processes ask to be killed when the thread that started them ends (PR_SET_PDEATHSIG
# follows the thread, not the process), so they are all started by this one long-lived thread.
_spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ocrdesk-render-spawner")
atexit.register(_pool.shutdown)


def open_document(source: Source, *, seconds: float = RENDER_SECONDS) -> DocumentInfo:
    """Open `source` (in a render process) and read its page count and format.

    Raises `MuPDFError` (with `password` set for an encrypted document without the right one)."""
    info: DocumentInfo = _pool.call("open", source, (), seconds)
    return info


def page_size(
    source: Source, number: int, *, seconds: float = RENDER_SECONDS
) -> tuple[float, float]:
    """Page `number`'s width and height in points."""
    size: tuple[float, float] = _pool.call("size", source, (number,), seconds)
    return size


def render_page(
    source: Source, number: int, dpi: float, *, max_pixels: int, seconds: float = RENDER_SECONDS
) -> RenderedPage:
    """Render page `number` (1-based) at `dpi`, lowered so that it has at most `max_pixels`.

    Raises `MuPDFError` when the page fails, takes longer than `seconds`, or `forget(source)`
    is called meanwhile."""
    page: RenderedPage = _pool.call("render", source, (number, dpi, max_pixels), seconds)
    return page


def forget(source: Source) -> None:
    """The document is closed: close it in the render processes, stop a page still rendering."""
    _pool.forget(source.token)


def busy_renders() -> int:
    """How many render processes are working on a page now (for tests and diagnostics)."""
    return _pool.busy()


if __name__ == "__main__":
    sys.exit(worker_main())
