"""Tests for engine.pandoc_formats: DOCX, HTML and EPUB read back as what they hold."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from ocrdesk.engine import pandoc_formats
from ocrdesk.engine.pandoc_formats import FORMATS, PandocError, pages_html, write_document

PAGES_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pages"
W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
M = "{http://schemas.openxmlformats.org/officeDocument/2006/math}"

TABLE = (
    '<table><tr><td rowspan="2">Kopf</td><td colspan="2">breit \\(\\alpha\\)</td></tr>'
    "<tr><td>links</td><td>rechts</td></tr></table>"
)
PAGES = [
    (
        1,
        "# Erste Seite\n\nText mit \\(x^2\\) darin.\n\n\\[ \\frac{a}{b} \\]\n\n"
        "![](images/p0001_0.png)\n",
    ),
    (2, f"{TABLE}\n\nZweite Seite Ende."),
    (
        3,
        "Dritte Seite ![fern](https://example.invalid/x.png) und ![](/etc/x.png) und ![](../x.png)",
    ),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (60, 40), "red").save(tmp_path / "images" / "p0001_0.png")
    return tmp_path


def _docx(path: Path) -> tuple[ET.Element, list[str]]:
    with zipfile.ZipFile(path) as z:
        return ET.fromstring(z.read("word/document.xml")), z.namelist()


def test_docx_has_merged_cells_word_equations_figures_and_page_breaks(folder: Path) -> None:
    out = folder / "doc.docx"
    write_document("docx", PAGES, out, resource_dir=folder, title="doc")
    root, names = _docx(out)
    (table,) = root.iter(f"{W}tbl")
    spans = [e.get(f"{W}val") for e in table.iter(f"{W}gridSpan")]
    assert "2" in spans  # colspan="2"
    assert len(list(table.iter(f"{W}vMerge"))) == 2  # rowspan="2": the cell and its follower
    texts = "".join(t.text or "" for t in table.iter(f"{W}t"))
    assert "Kopf" in texts and "links" in texts and "rechts" in texts
    assert list(table.iter(f"{M}oMath"))  # the formula inside the cell is a Word equation
    assert len(list(root.iter(f"{M}oMath"))) >= 3
    assert len(list(root.iter(f"{M}oMathPara"))) >= 1  # the display formula
    assert any(n.startswith("word/media/") for n in names)  # the figure is embedded, once
    assert sum(n.startswith("word/media/") for n in names) == 1
    breaks = [b for b in root.iter(f"{W}br") if b.get(f"{W}type") == "page"]
    assert len(breaks) == 2  # before page 2 and page 3
    body = "".join(t.text or "" for t in root.iter(f"{W}t"))
    assert body.index("Erste Seite") < body.index("Zweite Seite") < body.index("Dritte Seite")


def test_html_is_one_offline_file(folder: Path) -> None:
    out = folder / "doc.html"
    write_document("html", PAGES, out, resource_dir=folder, title="doc")
    text = out.read_text(encoding="utf-8")
    assert '<img role="img" src="data:image/png;base64,' in text  # the figure, inline
    assert text.count("<math") == 3 and "<table" in text
    assert 'rowspan="2"' in text and 'colspan="2"' in text
    # Nothing that a browser would fetch: no URL in src/href, no external script or style.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), refs
    assert "example.invalid" not in text and "/etc/x.png" not in text
    assert "<link" not in text and "<script" not in text
    assert [int(n) for n in re.findall(r'id="page-(\d+)"', text)] == [1, 2, 3]
    assert "break-before: page" in text


def test_epub_holds_every_page_and_the_figure(folder: Path) -> None:
    out = folder / "doc.epub"
    write_document("epub", PAGES, out, resource_dir=folder, title="doc")
    with zipfile.ZipFile(out) as z:
        assert z.read("mimetype") == b"application/epub+zip"
        container = ET.fromstring(z.read("META-INF/container.xml"))
        opf_path = next(e.get("full-path") for e in container.iter() if e.get("full-path"))
        assert opf_path
        opf = ET.fromstring(z.read(opf_path))
        base = opf_path.rsplit("/", 1)[0]
        items = {e.get("id"): e.get("href") for e in opf.iter() if e.tag.endswith("item")}
        spine = [items[e.get("idref")] for e in opf.iter() if e.tag.endswith("itemref")]
        text = "".join(z.read(f"{base}/{href}").decode("utf-8") for href in spine)
        assert any(n.endswith(".png") for n in z.namelist())
    for words in ("Erste Seite", "Kopf", "Zweite Seite Ende", "Dritte Seite"):
        assert words in text
    assert "<math" in text and "example.invalid" not in text


def test_fragment_keeps_each_page_apart() -> None:
    html = pages_html([(4, "Seite vier"), (7, "::: {.note}\nSeite sieben\n:::")])
    assert re.findall(r'<div id="page-(\d+)" class="ocrdesk-page">', html) == ["4", "7"]
    assert html.index("Seite vier") < html.index('id="page-7"') < html.index("Seite sieben")


def test_real_lecture_page_with_table_and_formulas(folder: Path) -> None:
    from ocrdesk.engine.parser import parse

    raw = (PAGES_DIR / "lecture-006.raw.txt").read_text(encoding="utf-8")
    markdown = parse(raw, 3520, 1980).markdown
    out = folder / "lecture.docx"
    write_document("docx", [(1, markdown)], out, resource_dir=folder)
    root, _ = _docx(out)
    (table,) = root.iter(f"{W}tbl")
    assert len(list(table.iter(f"{W}tr"))) == 5
    assert len(list(root.iter(f"{M}oMathPara"))) >= 4  # the display formulas


def test_unknown_format_and_missing_pandoc(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(FORMATS) == {"docx", "html", "epub"}
    with pytest.raises(ValueError, match="format"):
        write_document("odt", PAGES, folder / "x.odt", resource_dir=folder)
    assert pandoc_formats.available()

    def missing() -> None:
        raise PandocError("pandoc is not installed")

    monkeypatch.setattr(pandoc_formats, "_pypandoc", missing)
    assert not pandoc_formats.available()
    with pytest.raises(PandocError):
        write_document("docx", PAGES, folder / "x.docx", resource_dir=folder)
    assert not (folder / "x.docx").exists()


def test_a_blocks_lines_stay_lines_and_display_formulas_get_no_break() -> None:
    """As the window shows them (gui/html.py): lecture-024's definition is five lines, and
    lecture-006's display formulas, each on its own lines, get no break beside them."""
    from ocrdesk.engine.parser import parse

    def html(name: str) -> str:
        raw = (PAGES_DIR / f"{name}.raw.txt").read_text(encoding="utf-8")
        return pages_html([(1, parse(raw, 3520, 1980).markdown)])

    definition = [p for p in re.findall(r"<p>(.*?)</p>", html("lecture-024"), re.S) if "<br" in p]
    assert len(definition) == 1 and definition[0].count("<br />") == 4
    formulas = html("lecture-006")
    assert formulas.count('<math display="block"') >= 4
    # Its only single newlines sit beside display formulas ("Bsp:" and a formula; two formulas).
    assert "<br />" not in formulas
