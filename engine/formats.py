"""The export formats: the one registry of what `DocumentExport.finish` can write.

    FORMATS["docx"]            -> ExportFormat(name, suffix, default, write, title)
    parse_formats("+docx,hocr") -> the names chosen (the defaults plus docx and hocr)
    write_formats(export)      -> one "could not write ..." reason per format that failed

Each format is one entry: its name (as `--formats` and the export dialog spell it), the file it
writes (`OUT/<stem>/<stem><suffix>`), whether it is written by default, and its writer, which
reads the document's pages from its journal (`DocumentExport.pages`). A new export format is one
entry here. The figure crops (`images/`) and the journal (`pages/`) are not formats: they are
written page by page as the pages arrive, whatever is chosen.

A writer that fails (pandoc missing, a source PDF that cannot be read, a full disk) fails alone:
`write_formats` writes the others and returns its reason.

The searchable PDF is laid over the document's own pages (`searchable_source`): a PDF file is
used as it is, a single-frame PNG or JPEG file is the page; anything else (pasted bytes, a
multi-frame TIFF, an EPUB) has its page images kept in the journal (`keeps_page_images`).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import alto, hocr, mupdf, pandoc_formats, searchable_pdf
from .export import DocumentExport, atomic_writer, mark_headings, source_id, valid_text
from .results import PageStatus
from .rotation import RotationStore
from .sanitize import sanitize_html
from .sink import describe_write_error
from .text_layer import PageLayout, layout_page

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "ExportFormat",
    "SourceMissingError",
    "describe_formats",
    "keeps_page_images",
    "parse_formats",
    "searchable_source",
    "write_formats",
]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: `write(export, path)` writes the document to `path`."""

    name: str
    suffix: str  # after the stem: ".md", ".searchable.pdf"
    default: bool
    write: Callable[[DocumentExport, Path], None]
    title: str  # a few words for --help and the export dialog


class SourceMissingError(Exception):
    """The searchable PDF's source document is not there (moved, deleted or changed)."""


def _layouts(export: DocumentExport) -> Iterator[PageLayout]:
    """The pages' layouts in page order, each made as it is read from the journal: a writer
    takes one at a time (2,000 pages of layouts held at once were ~220 MiB)."""
    return (layout_page(r) for r in export.pages() if r.status is not PageStatus.FAILED)


def _page_texts(export: DocumentExport) -> list[tuple[int, str]]:
    # Headings marked as in the .md (`page_markdown`): a sub_title without `#` is a heading.
    return [
        (r.number, sanitize_html(valid_text(mark_headings(r.markdown, r.blocks))))
        for r in export.pages()
        if r.status is not PageStatus.FAILED
    ]


def _pandoc_writer(fmt: str) -> Callable[[DocumentExport, Path], None]:
    def write(export: DocumentExport, path: Path) -> None:
        pandoc_formats.write_document(
            fmt, _page_texts(export), path, resource_dir=export.folder, title=export.stem
        )

    return write


def _write_hocr(export: DocumentExport, path: Path) -> None:
    name = Path(export.source).name
    with atomic_writer(path) as out:
        for part in hocr.hocr_parts(_layouts(export), title=name, source=name):
            out.write(valid_text(part))


def _write_alto(export: DocumentExport, path: Path) -> None:
    # The Tags (every label) come before the pages: the pages go to a file aside, then after
    # the head into the export, so that no more than one page is held.
    tags: dict[str, str] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=path.parent) as body:
        for part in alto.alto_pages(_layouts(export), tags):
            body.write(valid_text(part))
        body.seek(0)
        with atomic_writer(path) as out:
            out.write(valid_text(alto.alto_head(tags, source=Path(export.source).name)))
            shutil.copyfileobj(body, out)
            out.write(alto.ALTO_TAIL)


def _direct_kind(path: Path) -> str | None:
    """ "pdf" or "image" when the file can be the searchable PDF's pages as it is."""
    try:
        with open(path, "rb") as handle:
            if b"%PDF-" in handle.read(1024):
                return "pdf"
        with Image.open(path) as img:
            upright = _orientation(img) == 1  # EXIF Orientation: MuPDF ignores it
            if img.format in ("PNG", "JPEG") and getattr(img, "n_frames", 1) == 1 and upright:
                return "image"
    except (OSError, ValueError, Image.DecompressionBombError):
        pass
    return None


def _orientation(img: Image.Image) -> int:
    """The EXIF Orientation of an opened image (1: as stored), its pixels not decoded.

    Pillow's `getexif()` decodes a whole PNG without an eXIf chunk before its pixels, to look
    for one after them: one full decode per page image, the hottest frame of a GPU run's client
    (issue 18). An eXIf chunk after the pixels is not looked for."""
    if img.format == "PNG":
        data = img.info.get("exif")
        if not isinstance(data, bytes):
            return 1
        exif = Image.Exif()
        exif.load(data)
        return int(exif.get(0x0112, 1))
    return int(img.getexif().get(0x0112, 1))


def _source_file(export: DocumentExport) -> Path | None:
    if isinstance(export.origin, bytes):
        return None
    if export.origin is not None:
        return Path(export.origin)
    if export.source_id is not None:
        return Path(export.source_id.path)
    return Path(export.source)


def keeps_page_images(export: DocumentExport) -> bool:
    """Whether the searchable PDF needs the page images kept in the journal (see the module)."""
    path = _source_file(export)
    return path is None or not path.is_file() or _direct_kind(path) is None


def searchable_source(export: DocumentExport) -> tuple[Path | list[Path], dict[int, int]]:
    """The searchable PDF's pages: the source PDF or the image files, and for each page number
    of the document the page of that source it is. Raises `SourceMissingError`."""
    path = _source_file(export)
    if path is not None and path.is_file():
        # `ocrdesk export` rebuilds from the journal: the file must be the one converted.
        ident = export.source_id
        if export.origin is None and ident is not None and not source_id(path).same_document(ident):
            raise SourceMissingError(
                f"the source document {path} has changed since it was converted"
            )
        kind = _direct_kind(path)
        if kind == "pdf":
            return path, {n: n for n in export.results}
        if kind == "image":
            return [path], {1: 1}
    images = [(n, export.page_image_path(n)) for n in export.results]
    images = [(n, p) for n, p in images if p.exists()]
    if not images:
        where = f" {path}" if path is not None else ""
        raise SourceMissingError(
            f"the source document{where} is not there any more (moved or deleted?)"
        )
    return [p for _, p in images], {n: i for i, (n, _) in enumerate(images, 1)}


def _write_searchable(export: DocumentExport, path: Path) -> None:
    layouts = (layout for layout in _layouts(export) if any(b.lines for b in layout.blocks))
    first = next(layouts, None)
    if first is None:  # no text to lay over the pages: the source is all there is
        if path.exists():
            path.unlink()
        return
    source, numbering = searchable_source(export)
    placed = (
        PageLayout(numbering[layout.number], layout.width, layout.height, layout.blocks)
        for layout in itertools.chain([first], layouts)
        if layout.number in numbering
    )
    # The source's own pages turned as each was read; a kept page image is the turned page.
    read_at = (
        {}
        if keeps_page_images(export)
        else RotationStore(export.folder, export.source).read_turns()
    )
    turns = {numbering[n]: int(t) for n, t in read_at.items() if n in numbering}
    path.parent.mkdir(parents=True, exist_ok=True)
    searchable_pdf.write_searchable_pdf(
        source, placed, path, text_layer=export.text_layer, password=export.password, turns=turns
    )


def _formats(*entries: ExportFormat) -> dict[str, ExportFormat]:
    return {entry.name: entry for entry in entries}


FORMATS: dict[str, ExportFormat] = _formats(
    ExportFormat("md", ".md", True, DocumentExport.write_markdown, "markdown"),
    ExportFormat("raw", ".raw.mmd", True, DocumentExport.write_raw, "raw model output"),
    ExportFormat("json", ".json", True, DocumentExport.write_json, "pages, blocks and boxes"),
    ExportFormat("layout", ".layout.pdf", True, DocumentExport.write_layout_pdf, "boxes drawn"),
    ExportFormat("searchable", ".searchable.pdf", True, _write_searchable, "PDF with a text layer"),
    ExportFormat("docx", ".docx", False, _pandoc_writer("docx"), "Word"),
    ExportFormat("html", ".html", False, _pandoc_writer("html"), "one offline HTML file"),
    ExportFormat("epub", ".epub", False, _pandoc_writer("epub"), "e-book"),
    ExportFormat("hocr", ".hocr", False, _write_hocr, "hOCR"),
    ExportFormat("alto", ".alto.xml", False, _write_alto, "ALTO v4 XML"),
)

#: What is written when nothing is chosen.
DEFAULT_FORMATS: tuple[str, ...] = tuple(f.name for f in FORMATS.values() if f.default)


def parse_formats(text: str) -> tuple[str, ...]:
    """The formats a `--formats` value chooses, in registry order. A list (`md,docx`) is the
    formats; a list that starts with `+` or `-` changes the defaults (`+docx,hocr` adds two,
    `-layout` leaves one out, `+docx,-layout` does both); `all` is every format. Raises
    ValueError naming what is wrong."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("no format given")
    relative = items[0][0] in "+-"
    chosen = set(DEFAULT_FORMATS) if relative else set()
    sign = "+"
    for item in items:
        if item[0] in "+-":
            sign, item = item[0], item[1:].strip()
        elif not relative and item == "all":
            chosen |= set(FORMATS)
            continue
        if item not in FORMATS:
            raise ValueError(f"unknown format {item!r} (known: {', '.join(FORMATS)})")
        if sign == "-" and not relative:
            raise ValueError(f"'-{item}': a list that leaves formats out starts with + or -")
        (chosen.add if sign == "+" else chosen.discard)(item)
    return tuple(name for name in FORMATS if name in chosen)


def describe_formats() -> str:
    """One line per format, for --help."""
    return ", ".join(
        f"{f.name} ({f.title}{', default' if f.default else ''})" for f in FORMATS.values()
    )


def _reason(exc: Exception, path: Path) -> str:
    if isinstance(exc, pandoc_formats.PandocError):
        return f"could not write {path}: {exc.reason}"
    if isinstance(exc, (SourceMissingError, mupdf.MuPDFError)):
        return f"could not write {path}: {exc}"
    return describe_write_error(exc, path)


def write_formats(export: DocumentExport, names: Iterable[str]) -> list[str]:
    """Write each of `names` (registry names); returns the reasons of those that failed."""
    failures = []
    for name in names:
        fmt = FORMATS[name]
        path = export.folder / f"{export.stem}{fmt.suffix}"
        try:
            fmt.write(export, path)
        except Exception as exc:  # each writer fails alone; the others are still written
            failures.append(_reason(exc, path))
    return failures
