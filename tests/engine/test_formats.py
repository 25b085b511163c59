"""The registry of export formats (engine/formats.py): choosing formats, and where the
searchable PDF's pages come from (the source file, or the page images kept in the journal)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine import formats
from ocrdesk.engine.export import DocumentExport
from ocrdesk.engine.pipeline import DocumentJob, PageFinished
from ocrdesk.engine.results import Block, PageResult, PageStatus
from ocrdesk.engine.sink import ExportSink


def test_defaults_are_todays_files_plus_the_searchable_pdf() -> None:
    assert formats.DEFAULT_FORMATS == ("md", "raw", "json", "layout", "searchable")
    assert {f.suffix for f in formats.FORMATS.values()} >= {
        ".searchable.pdf",
        ".hocr",
        ".alto.xml",
        ".docx",
        ".html",
        ".epub",
    }


@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        ("md,json", ("md", "json")),
        ("json, md", ("md", "json")),
        ("+docx,hocr", (*formats.DEFAULT_FORMATS, "docx", "hocr")),
        ("-layout,searchable", ("md", "raw", "json")),
        ("+docx,-layout", ("md", "raw", "json", "searchable", "docx")),
        ("all", tuple(formats.FORMATS)),
    ],
)
def test_parse_formats(text: str, chosen: tuple[str, ...]) -> None:
    assert formats.parse_formats(text) == chosen


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "no format"), ("md,pdf", "unknown format 'pdf'"), ("md,-json", r"starts with \+ or -")],
)
def test_parse_formats_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        formats.parse_formats(text)


def page(number: int, size: tuple[int, int]) -> PageResult:
    block = Block("text", ((20.0, 20.0, size[0] - 20.0, 80.0),), "Pasted words here")
    return PageResult(
        number, *size, PageStatus.DONE, raw="r", markdown="Pasted words here", blocks=[block]
    )


def test_pasted_bytes_keep_their_page_images_for_the_searchable_pdf(tmp_path: Path) -> None:
    job = DocumentJob(b"\x89PNG not read here", name="clip.png")
    sink = ExportSink(model="m", task="markdown")
    assert sink.open(job, tmp_path, set(), resume=False) == []
    image = Image.new("RGB", (400, 300), "white")
    assert sink.handle(PageFinished(job, page(1, image.size), image)) is None
    assert sink.close() == []
    folder = tmp_path / "clip"
    assert (folder / "pages" / "0001.page.png").exists()
    with pymupdf.open(folder / "clip.searchable.pdf") as doc:
        assert (doc[0].rect.width, doc[0].rect.height) == (200, 150)
        assert doc[0].search_for("Pasted")


def test_a_multi_frame_tiff_is_laid_over_its_page_images(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (300, 200), "white"), Image.new("RGB", (200, 300), "white")]
    tiff = tmp_path / "two.tiff"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    export = DocumentExport(
        tmp_path / "out" / "two", source=str(tiff), model="m", task="t", origin=tiff
    )
    assert formats.keeps_page_images(export)
    for number, frame in enumerate(frames, 1):
        export.add_page(page(number, frame.size), frame)
    export.finish()
    with pymupdf.open(export.folder / "two.searchable.pdf") as doc:
        assert [(p.rect.width, p.rect.height) for p in doc] == [(150, 100), (100, 150)]
        assert all(p.search_for("Pasted") for p in doc)


def test_a_png_file_is_its_own_page(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.new("RGB", (400, 300), "white").save(png)
    export = DocumentExport(tmp_path / "out" / "a", source=str(png), model="m", task="t")
    assert not formats.keeps_page_images(export)
    assert formats.searchable_source(export)[0] == [png]


def test_layout_pdf_pages_are_the_searchable_pdfs_image_size(tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    Image.new("RGB", (400, 300), "white").save(png)
    export = DocumentExport(tmp_path / "out" / "a", source=str(png), model="m", task="t")
    export.add_page(page(1, (400, 300)), Image.open(png))
    export.finish()
    with (
        pymupdf.open(export.folder / "a.layout.pdf") as layout,
        pymupdf.open(export.folder / "a.searchable.pdf") as searchable,
    ):
        assert layout[0].rect == searchable[0].rect == pymupdf.Rect(0, 0, 200, 150)
