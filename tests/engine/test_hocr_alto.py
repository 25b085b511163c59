"""Tests for engine.hocr and engine.alto: well-formed files, the formats' structure and classes,
and every box inside its parent's box."""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ocrdesk.engine.alto import ALTO_NAMESPACE, alto_document
from ocrdesk.engine.hocr import hocr_document, hocr_page
from ocrdesk.engine.parser import parse
from ocrdesk.engine.results import Block, PageResult, PageStatus
from ocrdesk.engine.text_layer import PageLayout, layout_page

PAGES = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pages"
XHTML = "{http://www.w3.org/1999/xhtml}"
ALTO = "{" + ALTO_NAMESPACE + "}"
# OCRmyPDF's hOCR reader takes bbox as four unsigned integers.
BBOX = re.compile(r"bbox (\d+) (\d+) (\d+) (\d+)")


def _layouts() -> list[PageLayout]:
    blocks = [
        Block("title", ((100.0, 40.0, 500.0, 90.0),), "# Größe & <Maß>"),
        Block("text", ((100.0, 120.0, 900.0, 300.0),), "Ein Absatz mit\nzwei Zeilen αβ 中文"),
        Block("image", ((100.0, 320.0, 600.0, 600.0),), ""),
        Block("image_caption", ((100.0, 610.0, 600.0, 640.0),), "Abb. 1: ein Bild"),
        Block(
            "table", ((100.0, 700.0, 900.0, 900.0),), "<table><tr><td>A</td><td>B</td></tr></table>"
        ),
        Block("weird label!", ((10.0, 950.0, 300.0, 990.0),), "x"),
    ]
    return [
        layout_page(PageResult(1, 1000, 1000, PageStatus.DONE, blocks=blocks)),
        layout_page(PageResult(2, 800, 600, PageStatus.DONE, blocks=blocks[1:2])),
    ]


def _bbox(element: ET.Element) -> tuple[int, ...]:
    match = BBOX.search(element.get("title", ""))
    assert match, element.attrib
    return tuple(int(v) for v in match.groups())


def _inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def _classes(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == cls]


def test_hocr_structure_classes_and_boxes() -> None:
    root = ET.fromstring(hocr_document(_layouts(), title="t").encode("utf-8"))
    assert root.tag == f"{XHTML}html"
    pages = root.findall(f".//{XHTML}div[@class='ocr_page']")
    assert [_bbox(p) for p in pages] == [(0, 0, 1000, 1000), (0, 0, 800, 600)]
    assert "ppageno 0" in pages[0].get("title", "")
    first = pages[0]
    blocks = [e for e in first if e.tag == f"{XHTML}div"]
    assert [b.get("class") for b in blocks] == [
        "ocr_carea",
        "ocr_carea",
        "ocr_photo",
        "ocr_carea",
        "ocr_table",
        "ocr_carea",
    ]
    assert "x_label sub_title" not in blocks[0].get("title", "")
    assert "x_label title" in blocks[0].get("title", "")
    assert "x_label weird_label_" in blocks[5].get("title", "")
    line_classes = []
    for block in blocks:
        for par in block.findall(f"{XHTML}p[@class='ocr_par']"):
            assert _inside(_bbox(par), _bbox(block))
            for line in par.findall(f"{XHTML}span"):
                line_classes.append(line.get("class"))
                assert _inside(_bbox(line), _bbox(par))
                words = line.findall(f"{XHTML}span[@class='ocrx_word']")
                assert words
                for word in words:
                    assert _inside(_bbox(word), _bbox(line))
    assert line_classes[0] == "ocr_header"
    assert "ocr_caption" in line_classes and "ocr_line" in line_classes
    words = ["".join(w.itertext()) for w in _classes(first, "ocrx_word")]
    assert words[:3] == ["Größe", "&", "<Maß>"]
    assert "中文" in words and "B" in words


def test_hocr_page_is_one_page_that_ocrmypdfs_reader_finds_first() -> None:
    layout = _layouts()[1]
    root = ET.fromstring(hocr_page(layout, source='scan "1".png').encode("utf-8"))
    page = root.find(f".//{XHTML}div[@class='ocr_page']")
    assert page is not None and len(_classes(root, "ocr_page")) == 1
    assert page.get("title", "").startswith('image "scan \\"1\\".png"; bbox 0 0 800 600')
    # The reader walks page -> p.ocr_par -> line span -> span.ocrx_word.
    pars = page.findall(f".//{XHTML}p[@class='ocr_par']")
    lines = [s for p in pars for s in p.findall(f"{XHTML}span")]
    text = " ".join(
        "".join(w.itertext())
        for ln in lines
        for w in ln.findall(f"{XHTML}span[@class='ocrx_word']")
    )
    assert text == "Ein Absatz mit zwei Zeilen αβ 中文"


def _alto_box(element: ET.Element) -> tuple[float, ...]:
    x, y = float(element.get("HPOS", "nan")), float(element.get("VPOS", "nan"))
    return (x, y, x + float(element.get("WIDTH", "nan")), y + float(element.get("HEIGHT", "nan")))


def test_alto_structure_required_parts_and_boxes() -> None:
    root = ET.fromstring(alto_document(_layouts(), source="scan.pdf").encode("utf-8"))
    assert root.tag == f"{ALTO}alto"
    # The schema's order: Description, Tags, Layout; MeasurementUnit first and one of its values.
    assert [c.tag for c in root] == [f"{ALTO}Description", f"{ALTO}Tags", f"{ALTO}Layout"]
    description = root[0]
    assert description[0].tag == f"{ALTO}MeasurementUnit" and description[0].text == "pixel"
    tags = {t.get("ID"): t.get("LABEL") for t in root.iter(f"{ALTO}LayoutTag")}
    assert set(tags.values()) == {
        "title",
        "text",
        "image",
        "image_caption",
        "table",
        "weird label!",
    }
    assert all(re.fullmatch(r"[A-Za-z_][\w.-]*", ident or "") for ident in tags)
    pages = root.findall(f"{ALTO}Layout/{ALTO}Page")
    assert [(p.get("ID"), p.get("PHYSICAL_IMG_NR")) for p in pages] == [
        ("page_1", "1"),
        ("page_2", "2"),
    ]
    space = pages[0].find(f"{ALTO}PrintSpace")
    assert space is not None
    kinds = [c.tag.removeprefix(ALTO) for c in space]
    assert kinds == [
        "TextBlock",
        "TextBlock",
        "Illustration",
        "TextBlock",
        "ComposedBlock",
        "TextBlock",
    ]
    assert space[4].get("TYPE") == "table"
    assert [tags[str(c.get("TAGREFS"))] for c in space][:3] == ["title", "text", "image"]
    ids = [e.get("ID") for e in root.iter() if e.get("ID")]
    assert len(ids) == len(set(ids))  # xsd:ID values are unique in the file
    for block in root.iter(f"{ALTO}TextBlock"):
        for line in block.findall(f"{ALTO}TextLine"):
            assert _inside(_alto_box(line), _alto_box(block))
            strings = line.findall(f"{ALTO}String")
            assert strings  # a TextLine needs at least one String
            for string in strings:
                assert _inside(_alto_box(string), _alto_box(line))
    contents = [s.get("CONTENT") for s in space.iter(f"{ALTO}String")]
    assert contents[:3] == ["Größe", "&", "<Maß>"]


def test_real_page_hocr_and_alto_hold_every_line() -> None:
    with Image.open(PAGES / "lecture-006.jpg") as image:
        width, height = image.size
    raw = (PAGES / "lecture-006.raw.txt").read_text(encoding="utf-8")
    layout = layout_page(
        PageResult(1, width, height, PageStatus.DONE, blocks=parse(raw, width, height).blocks)
    )
    lines = [line for block in layout.blocks for line in block.lines]
    hocr = ET.fromstring(hocr_document([layout]).encode("utf-8"))
    hocr_lines = [e for e in hocr.iter() if e.get("class") in ("ocr_line", "ocr_header")]
    assert len(hocr_lines) == len(lines)
    alto = ET.fromstring(alto_document([layout]).encode("utf-8"))
    alto_lines = list(alto.iter(f"{ALTO}TextLine"))
    assert [
        " ".join(str(s.get("CONTENT")) for s in ln.findall(f"{ALTO}String")) for ln in alto_lines
    ] == [" ".join(line.text.split()) for line in lines]


# The ALTO 4.4 schema (altoxml/schema, v4/alto-4-4.xsd) and the XLink schema it imports from
# http://www.loc.gov/standards/xlink/xlink.xsd (the METS XLink Schema v. 2), both kept beside
# the tests: nothing is fetched, the import is pointed at the local copy.
ALTO_XSD = Path(__file__).resolve().parents[1] / "data" / "alto-4-4.xsd"
XLINK_XSD = ALTO_XSD.with_name("alto-4-4-xlink.xsd")


def _alto_schema() -> Any:
    etree = pytest.importorskip("lxml.etree")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    schema = etree.parse(str(ALTO_XSD), parser)
    (imported,) = schema.getroot().findall("{http://www.w3.org/2001/XMLSchema}import")
    imported.set("schemaLocation", XLINK_XSD.as_uri())
    return etree.XMLSchema(schema)


def test_alto_validates_against_the_alto_4_schema() -> None:
    etree = pytest.importorskip("lxml.etree")
    schema = _alto_schema()
    with Image.open(PAGES / "lecture-006.jpg") as image:
        width, height = image.size
    raw = (PAGES / "lecture-006.raw.txt").read_text(encoding="utf-8")
    real = layout_page(
        PageResult(1, width, height, PageStatus.DONE, blocks=parse(raw, width, height).blocks)
    )
    for layouts in (_layouts(), [real], [PageLayout(1, 10, 10, ())]):
        document = etree.fromstring(alto_document(layouts, source="scan.pdf").encode("utf-8"))
        assert schema.validate(document), schema.error_log
    # The check can fail: a TextLine without its String is not ALTO.
    broken = etree.fromstring(alto_document(_layouts()).encode("utf-8"))
    line = next(broken.iter(f"{ALTO}TextLine"))
    for child in list(line):
        line.remove(child)
    assert not schema.validate(broken)


def test_ocrmypdfs_hocr_reader_reads_every_word_of_a_real_page(tmp_path: Path) -> None:
    """OCRmyPDF's own hOCR parser (what its renderer lays the text from) reads the page whole:
    every line with its words, in order, each box inside its parent's."""
    hocrtransform = pytest.importorskip("ocrmypdf.hocrtransform")
    with Image.open(PAGES / "lecture-006.jpg") as image:
        width, height = image.size
    raw = (PAGES / "lecture-006.raw.txt").read_text(encoding="utf-8")
    layout = layout_page(
        PageResult(1, width, height, PageStatus.DONE, blocks=parse(raw, width, height).blocks)
    )
    path = tmp_path / "page.hocr"
    path.write_text(hocr_page(layout, source="lecture-006.jpg"), encoding="utf-8")
    page = hocrtransform.HocrParser(path).parse()

    def box(element: Any) -> tuple[float, ...]:
        b = element.bbox
        return (b.left, b.top, b.right, b.bottom)

    assert box(page) == (0, 0, width, height)
    lines = [line for par in page.children for line in par.children]
    # The parser reads words NFKC-normalised (a superscript 1 becomes "1").
    expected = [line for block in layout.blocks for line in block.lines]
    assert [[w.text for w in line.children] for line in lines] == [
        [unicodedata.normalize("NFKC", w.text) for w in line.words] for line in expected
    ]
    assert {line.ocr_class for line in lines} >= {"ocr_header", "ocr_line"}
    for par in page.children:
        assert _inside(box(par), box(page))
        for line in par.children:
            assert _inside(box(line), box(par))
            assert all(_inside(box(word), box(line)) for word in line.children)
