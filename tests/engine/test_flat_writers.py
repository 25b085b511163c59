"""The writers that lay out every page (searchable PDF, hOCR, ALTO) take the pages one at a time
from the journal (engine/formats.py), so a long document's finish holds no more than a page or
two of layouts (benchmarks/results/engine-cpu.md, "Flat memory"), and still write the files that
the whole-document functions make."""

from __future__ import annotations

import weakref
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine import formats
from ocrdesk.engine.alto import alto_document
from ocrdesk.engine.export import DocumentExport
from ocrdesk.engine.hocr import hocr_document
from ocrdesk.engine.results import Block, PageResult, PageStatus
from ocrdesk.engine.text_layer import PageLayout, layout_page

PAGES = 12
SIZE = (400, 300)


def _page(number: int) -> PageResult:
    label = ("text", "title", "table", f"label{number % 4}")[number % 4]
    words = f"Words of page {number} \ud800 <b>&"  # a lone surrogate becomes U+FFFD
    blocks = [
        Block(label, ((20.0, 20.0, 380.0, 80.0),), words),
        Block("text", ((20.0, 100.0, 380.0, 160.0),), f"Second block {number}"),
    ]
    return PageResult(number, *SIZE, PageStatus.DONE, raw="r", markdown=words, blocks=blocks)


def _scan(path: Path) -> Path:
    """A PDF of PAGES pages with no text (as a scan has), so that every page gets a layer."""
    doc = pymupdf.open()
    for _ in range(PAGES):
        page = doc.new_page(width=SIZE[0] / 2, height=SIZE[1] / 2)
        page.draw_rect(pymupdf.Rect(10, 10, 100, 40), color=(0, 0, 0))
    doc.save(path)
    doc.close()
    return path


@pytest.fixture
def export(tmp_path: Path) -> DocumentExport:
    scan = _scan(tmp_path / "scan.pdf")
    export = DocumentExport(
        tmp_path / "out" / "scan",
        source=str(scan),
        model="m",
        task="t",
        origin=scan,
        formats=("searchable", "hocr", "alto"),
    )
    image = Image.new("RGB", SIZE, "white")
    for number in range(1, PAGES + 1):
        export.add_page(_page(number), image)
    export.add_page(PageResult(PAGES + 1, 0, 0, PageStatus.FAILED, error="boom"), None)
    return export


def test_each_writer_holds_a_page_or_two_of_layouts(
    export: DocumentExport, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive: list[weakref.ref[PageLayout]] = []
    most: dict[str, int] = {}
    writing = ""

    def counted(result: PageResult) -> PageLayout:
        layout = layout_page(result)
        alive.append(weakref.ref(layout))
        most[writing] = max(most.get(writing, 0), sum(r() is not None for r in alive))
        return layout

    monkeypatch.setattr(formats, "layout_page", counted)
    for writing in export.formats:
        alive.clear()
        assert formats.write_formats(export, [writing]) == []
    # Held at once: the page being written, the one before it still bound to a loop variable,
    # and (searchable) the first page, kept to know there is text at all. All PAGES before.
    assert most == {"searchable": pytest.approx(2, abs=1), "hocr": 2, "alto": 2}


def test_the_files_are_the_whole_document_functions_files(export: DocumentExport) -> None:
    export.finish()
    layouts = [layout_page(_page(n)) for n in range(1, PAGES + 1)]
    hocr = (export.folder / "scan.hocr").read_text(encoding="utf-8")
    assert hocr == hocr_document(layouts, title="scan.pdf", source="scan.pdf").replace(
        "\ud800", "\ufffd"
    )
    alto = (export.folder / "scan.alto.xml").read_text(encoding="utf-8")
    assert alto == alto_document(layouts, source="scan.pdf").replace("\ud800", "\ufffd")
    assert 'LABEL="label3"' in alto and "\ufffd" in alto
    assert not [p for p in export.folder.iterdir() if p.name.startswith(".")]  # nothing aside
    with pymupdf.open(export.folder / "scan.searchable.pdf") as doc:
        assert doc.page_count == PAGES
        for number, page in enumerate(doc, 1):
            assert page.search_for(f"Second block {number}"), number
