"""Tests for engine.searchable_pdf: the original pages with an invisible text layer, read back."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image, ImageDraw

from ocrdesk.engine import mupdf
from ocrdesk.engine.parser import parse
from ocrdesk.engine.results import Block, PageResult, PageStatus
from ocrdesk.engine.searchable_pdf import write_searchable_pdf
from ocrdesk.engine.text_layer import PageLayout, layout_page

fitz: Any = pymupdf  # PyMuPDF is only partly typed
PAGES = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pages"
LECTURES = ["006", "015", "024", "043", "202", "354"]

# Page image of 1000 x 700 px; three blocks, in reading order.
WIDTH, HEIGHT = 1000, 700
BLOCKS = [
    Block("title", ((100.0, 50.0, 600.0, 110.0),), "# Größenordnung"),
    Block("text", ((100.0, 200.0, 900.0, 330.0),), "Alpha beta gamma delta\nepsilon zeta eta"),
    Block("text", ((100.0, 450.0, 700.0, 500.0),), "Greek αβγ and 中文 with ∀x∈A"),
]


def _result(number: int = 1) -> PageResult:
    return PageResult(number, WIDTH, HEIGHT, PageStatus.DONE, blocks=list(BLOCKS))


def _scan_jpeg(size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).rectangle((100, 200, 900, 330), fill="gray")
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def _scanned_pdf(path: Path, pages: list[dict[str, Any]]) -> Path:
    """A PDF whose pages each show one JPEG filling the (cropped, rotated) page."""
    doc = fitz.open()
    for spec in pages:
        page = doc.new_page(width=spec.get("width", 500), height=spec.get("height", 350))
        page.insert_image(page.rect, stream=_scan_jpeg())
        if "text" in spec:
            page.insert_text((20, 20), spec["text"], fontsize=10, render_mode=spec.get("mode", 0))
        if "crop" in spec:
            page.set_cropbox(fitz.Rect(spec["crop"]))
        page.set_rotation(spec.get("rotation", 0))
    doc.save(path)
    doc.close()
    return path


def _visible(page: Any, rect: Any) -> Any:
    """A rect from PyMuPDF's text extraction (unrotated page space) as a viewer shows it."""
    return fitz.Rect(rect) * page.rotation_matrix


def _block_rect(page: Any, box: tuple[float, ...], width: int, height: int) -> Any:
    """A block's pixel box in the page's visible coordinates, with a little slack."""
    sx, sy = page.rect.width / width, page.rect.height / height
    x1, y1, x2, y2 = box
    return fitz.Rect(x1 * sx - 1, y1 * sy - 1, x2 * sx + 1, y2 * sy + 1)


def _assert_words_in_blocks(page: Any, width: int, height: int) -> None:
    for word, block in [("Größenordnung", 0), ("gamma", 1), ("zeta", 1), ("中文", 2), ("αβγ", 2)]:
        hits = page.search_for(word)
        assert hits, f"{word!r} not found on the page"
        box = _block_rect(page, BLOCKS[block].boxes[0], width, height)
        for hit in hits:
            assert box.contains(_visible(page, hit)), (word, _visible(page, hit), box)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_cropped_page_gets_text_on_its_blocks(tmp_path: Path, rotation: int) -> None:
    # The page image that was sent is the visible page: cropped, then rotated.
    source = _scanned_pdf(
        tmp_path / "in.pdf",
        [{"width": 600, "height": 500, "crop": (50, 80, 550, 430), "rotation": rotation}],
    )
    with fitz.open(source) as doc:
        visible = doc[0].rect
    width, height = (WIDTH, HEIGHT) if rotation in (0, 180) else (HEIGHT, WIDTH)
    assert visible.width / visible.height == pytest.approx(width / height)
    result = PageResult(1, width, height, PageStatus.DONE, blocks=list(BLOCKS))
    report = write_searchable_pdf(source, [layout_page(result)], tmp_path / "out.pdf")
    assert report.layered == [1]
    with fitz.open(tmp_path / "out.pdf") as doc:
        page = doc[0]
        assert page.rotation == rotation
        assert page.cropbox == fitz.Rect(50, 80, 550, 430)
        _assert_words_in_blocks(page, width, height)


def _insert_text_layer(page: Any, text: mupdf.PageText) -> None:
    """The text layer as PyMuPDF's Shape.insert_text writes it (what engine/mupdf.py did up to
    4d9c10f): the oracle its own PDF operators are held to."""
    fonts = mupdf._TextFonts()
    for name, buffer in zip(fonts.names, fonts.buffers, strict=True):
        page.insert_font(fontname=name, fontbuffer=buffer)
    visible = page.rect
    to_visible = fitz.Matrix(page.rotation_matrix)
    to_visible.e = to_visible.f = 0
    to_page = fitz.Matrix(page.derotation_matrix)
    to_page.e = to_page.f = 0
    sx, sy = visible.width / text.width, visible.height / text.height
    shape = page.new_shape()
    for line in text.lines:
        x1, y1, x2, y2 = line.box
        left, bottom, height = x1 * sx, y2 * sy, (y2 - y1) * sy
        runs = fonts.runs(line.text)
        ascender = max(fonts.ascender[i] for i, _, _ in runs)
        descender = min(fonts.descender[i] for i, _, _ in runs)
        size = height / max(0.5, ascender - descender)
        stretch = (x2 - x1) * sx / (sum(advance for _, _, advance in runs) * size)
        morph = to_visible * fitz.Matrix(stretch, 1) * to_page
        x = left
        for index, run, advance in runs:
            origin = fitz.Point(x, bottom + descender * size) * page.derotation_matrix
            shape.insert_text(
                origin, run, fontname=fonts.names[index], fontsize=size,
                rotate=int(page.rotation), render_mode=3, morph=(origin, morph),
            )  # fmt: skip
            x += advance * size * stretch
    shape.commit()


def _chars(page: Any) -> list[tuple[str, tuple[float, ...]]]:
    """Every character of the page's text and its box."""
    found = []
    for block in page.get_text("rawdict")["blocks"]:
        for line in block.get("lines", ()):
            for span in line["spans"]:
                for char in span["chars"]:
                    found.append((char["c"], tuple(char["bbox"])))
    return found


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_the_text_lands_where_shape_insert_text_put_it(tmp_path: Path, rotation: int) -> None:
    # The layer's operators are written by hand (a third of the time insert_text took): every
    # character, Latin, Greek, CJK and maths in both fonts, on a cropped and turned page, must
    # have the box that PyMuPDF's own writer gives it.
    spec = {"width": 600, "height": 500, "crop": (50, 80, 550, 430), "rotation": rotation}
    source = _scanned_pdf(tmp_path / "in.pdf", [spec])
    width, height = (WIDTH, HEIGHT) if rotation in (0, 180) else (HEIGHT, WIDTH)
    blocks = [*BLOCKS, Block("text", ((50.0, 560.0, 950.0, 600.0),), "“Quotes” — dash, ½ x² ≤ y₁")]
    result = PageResult(1, width, height, PageStatus.DONE, blocks=blocks)
    write_searchable_pdf(source, [layout_page(result)], tmp_path / "out.pdf")
    lines = tuple(
        mupdf.TextLine(line.text, line.box)
        for block in layout_page(result).blocks
        for line in block.lines
    )
    with fitz.open(source) as doc:
        _insert_text_layer(doc[0], mupdf.PageText(width, height, lines))
        expected = _chars(doc[0])
    with fitz.open(tmp_path / "out.pdf") as doc:
        got = _chars(doc[0])
    assert len(expected) > 80
    assert [c for c, _ in got] == [c for c, _ in expected]
    for (char, box), (_, want) in zip(got, expected, strict=True):
        assert box == pytest.approx(want, abs=0.02), char  # numbers written to 1/10,000 pt


def test_text_is_invisible_and_in_reading_order(tmp_path: Path) -> None:
    source = _scanned_pdf(tmp_path / "in.pdf", [{}])
    write_searchable_pdf(source, [layout_page(_result())], tmp_path / "out.pdf")
    with fitz.open(tmp_path / "out.pdf") as doc:
        page = doc[0]
        text = page.get_text()
        order = [text.index(w) for w in ("Größenordnung", "Alpha", "epsilon", "Greek", "∀x∈A")]
        assert order == sorted(order)
        assert "#" not in text
        assert {span["type"] for span in page.get_texttrace()} == {3}  # render mode 3
        pixels = page.get_pixmap(dpi=36).samples
    with fitz.open(source) as doc:
        assert doc[0].get_pixmap(dpi=36).samples == pixels  # nothing visible was added


def test_a_font_no_page_uses_is_not_embedded(tmp_path: Path) -> None:
    # A font that no page uses is not subset: the CJK one (3.5 MB) was embedded whole in every
    # searchable PDF, 1.6 MB deflated, and deflating it was most of the file's save time.
    latin = [Block("text", ((100.0, 200.0, 900.0, 330.0),), "Alpha beta gamma delta")]
    cjk = [Block("text", ((100.0, 200.0, 900.0, 330.0),), "中文 and Latin")]
    pages = [PageResult(1, WIDTH, HEIGHT, PageStatus.DONE, blocks=latin)]
    pages.append(PageResult(2, WIDTH, HEIGHT, PageStatus.DONE, blocks=cjk))
    source = _scanned_pdf(tmp_path / "in.pdf", [{}, {}, {}])
    write_searchable_pdf(source, [layout_page(pages[0])], tmp_path / "latin.pdf")
    write_searchable_pdf(source, [layout_page(p) for p in pages], tmp_path / "both.pdf")
    scan = source.stat().st_size
    with fitz.open(tmp_path / "latin.pdf") as doc:
        assert [font[4] for font in doc.get_page_fonts(0)] == ["OcrDeskText0"]
        assert "Alpha beta" in doc[0].get_text()
    assert (tmp_path / "latin.pdf").stat().st_size < scan + 60_000
    with fitz.open(tmp_path / "both.pdf") as doc:
        assert [font[4] for font in doc.get_page_fonts(0)] == ["OcrDeskText0"]
        assert sorted(font[4] for font in doc.get_page_fonts(1)) == ["OcrDeskText0", "OcrDeskText1"]
        assert doc.get_page_fonts(2) == []
        assert "中文 and Latin" in doc[1].get_text()
    assert (tmp_path / "both.pdf").stat().st_size < scan + 120_000  # both fonts subset


def test_a_page_that_inherits_its_resources_keeps_its_scan(tmp_path: Path) -> None:
    # Pages without /Resources of their own take their parent /Pages node's (some scanners
    # write them so): adding the fonts gave the page /Resources with only /Font, which hid
    # the inherited image: the page rendered blank.
    doc = fitz.open()
    for _ in range(2):
        doc.new_page(width=500, height=350).insert_image(
            fitz.Rect(0, 0, 500, 350), stream=_scan_jpeg()
        )
    _, shared = doc.xref_get_key(doc[0].xref, "Resources")
    root = int(doc.xref_get_key(doc[0].xref, "Parent")[1].split()[0])
    doc.xref_set_key(root, "Resources", shared)
    for page in doc:
        doc.xref_set_key(page.xref, "Resources", "null")
    doc.save(tmp_path / "in.pdf")
    doc.close()
    with fitz.open(tmp_path / "in.pdf") as doc:
        assert doc.xref_get_key(doc[0].xref, "Resources")[0] == "null"
        assert doc[1].get_image_info()  # the inherited image is there
        scan = doc[1].get_pixmap(dpi=36).samples
    write_searchable_pdf(
        tmp_path / "in.pdf",
        [layout_page(_result(1)), layout_page(_result(2))],
        tmp_path / "out.pdf",
    )
    with fitz.open(tmp_path / "out.pdf") as doc:
        for page in doc:
            assert page.get_image_info(), f"page {page.number + 1} lost its scan"
            assert "Alpha beta" in page.get_text()
        assert doc[1].get_pixmap(dpi=36).samples == scan  # nothing visible changed


def test_original_page_content_is_kept(tmp_path: Path) -> None:
    source = _scanned_pdf(tmp_path / "in.pdf", [{}, {"rotation": 90}])
    with fitz.open(source) as doc:
        before = [(doc[i].get_images(full=True), doc[i].rect) for i in range(2)]
        streams = [doc.xref_stream_raw(img[0][0]) for img, _ in before]
    layouts = [layout_page(_result(1)), layout_page(_result(2))]
    write_searchable_pdf(source, layouts[:1], tmp_path / "out.pdf")
    with fitz.open(tmp_path / "out.pdf") as doc:
        assert doc.page_count == 2
        for i in range(2):
            images = doc[i].get_images(full=True)
            assert len(images) == 1 and doc[i].rect == before[i][1]
            assert doc.xref_stream_raw(images[0][0]) == streams[i]  # the scan, byte for byte
        assert doc[1].get_text() == ""  # no layout for page 2: left as it was


def test_page_with_text_is_skipped_by_default_and_replaced_on_request(tmp_path: Path) -> None:
    source = _scanned_pdf(
        tmp_path / "in.pdf",
        [{"text": "OLDLAYER", "mode": 3}, {}, {"text": "VISIBLE", "mode": 0}],
    )
    layouts = [layout_page(_result(n)) for n in (1, 2, 3)]
    report = write_searchable_pdf(source, layouts, tmp_path / "skip.pdf")
    assert report.skipped == [1, 3] and report.layered == [2]
    with fitz.open(tmp_path / "skip.pdf") as doc:
        assert doc[0].get_text().strip() == "OLDLAYER"
        assert "gamma" in doc[1].get_text()

    report = write_searchable_pdf(source, layouts, tmp_path / "replace.pdf", text_layer="replace")
    assert report.layered == [1, 2, 3] and report.skipped == []
    with fitz.open(tmp_path / "replace.pdf") as doc:
        assert "OLDLAYER" not in doc[0].get_text() and "gamma" in doc[0].get_text()
        assert "VISIBLE" in doc[2].get_text()  # visible text is not an OCR layer: it stays
        assert doc[0].get_images()  # the scan is not redacted away


def test_unknown_text_layer_mode_is_refused(tmp_path: Path) -> None:
    source = _scanned_pdf(tmp_path / "in.pdf", [{}])
    with pytest.raises(ValueError, match="text_layer"):
        write_searchable_pdf(source, [], tmp_path / "out.pdf", text_layer="merge")
    assert not (tmp_path / "out.pdf").exists()


def _lecture_layouts() -> tuple[list[Path], list[PageLayout]]:
    images, layouts = [], []
    for number, name in enumerate(LECTURES, 1):
        image = PAGES / f"lecture-{name}.jpg"
        with Image.open(image) as img:
            width, height = img.size
        raw = (PAGES / f"lecture-{name}.raw.txt").read_text(encoding="utf-8")
        parsed = parse(raw, width, height)
        result = PageResult(number, width, height, PageStatus.DONE, raw, parsed.markdown)
        result.blocks = parsed.blocks
        images.append(image)
        layouts.append(layout_page(result))
    return images, layouts


def test_real_lecture_pages_from_images(tmp_path: Path) -> None:
    images, layouts = _lecture_layouts()
    out = tmp_path / "lectures.searchable.pdf"
    report = write_searchable_pdf(images, layouts, out)
    assert report.layered == list(range(1, len(LECTURES) + 1))
    # The text layer costs little next to the scans (the fonts are subset).
    assert out.stat().st_size < sum(p.stat().st_size for p in images) + 1_000_000
    with fitz.open(out) as doc:
        assert doc.page_count == len(LECTURES)
        for page, image, layout in zip(doc, images, layouts, strict=True):
            with Image.open(image) as img:
                assert (page.rect.width, page.rect.height) == (img.width / 2, img.height / 2)
            ((xref, *_),) = page.get_images(full=True)
            assert doc.xref_stream_raw(xref) == image.read_bytes()  # the JPEG as it was
            # Every word of every block is found inside that block's box.
            for block in layout.blocks:
                box = _block_rect(page, block.box, layout.width, layout.height)
                for line in block.lines[:3]:
                    words = re.findall(r"\w{3,}", line.text)
                    if not words:
                        continue
                    word = max(words, key=len)
                    hits = [_visible(page, h) for h in page.search_for(word)]
                    assert any(box.contains(h) for h in hits), (page.number, word, hits, box)
        first = doc[0].get_text()
        assert first.index("Grundlagen Logik") < first.index("Satz 1.1") < first.index("Beweis")


# --------------------------------------------------------------------------- poppler's view

XHTML = "{http://www.w3.org/1999/xhtml}"
#: Rounding in poppler's word boxes (pt); a word off its block is off by far more.
SLACK = 0.5
BOX_KEYS = ("xMin", "yMin", "xMax", "yMax")


def _pdftotext_pages(pdf: Path) -> list[list[tuple[str, tuple[float, ...]]]]:
    """Each page's words as poppler's `pdftotext -bbox` finds them (what evince, okular and
    most Linux viewers search and select), with their boxes in points."""
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.skip("pdftotext is not installed (Debian poppler-utils; .ci/run installs it)")
    done = subprocess.run(
        [tool, "-bbox", str(pdf), "-"], capture_output=True, check=True, timeout=120
    )
    root = ET.fromstring(done.stdout)
    return [
        [
            (word.text or "", tuple(float(word.get(k, "nan")) for k in BOX_KEYS))
            for word in page.iter(f"{XHTML}word")
        ]
        for page in root.iter(f"{XHTML}page")
    ]


def _assert_poppler_finds_each_word_in_its_block(
    pdf: Path, layouts: list[PageLayout], page_sizes: list[tuple[float, float]]
) -> None:
    pages = _pdftotext_pages(pdf)
    assert len(pages) == len(layouts)
    for words, layout, (width, height) in zip(pages, layouts, page_sizes, strict=True):
        sx, sy = width / layout.width, height / layout.height
        # Each block's box in points, and the words its lines hold.
        blocks = [
            (
                (b.box[0] * sx, b.box[1] * sy, b.box[2] * sx, b.box[3] * sy),
                {w.text for line in b.lines for w in line.words},
            )
            for b in layout.blocks
        ]
        expected = Counter(w.text for b in layout.blocks for ln in b.lines for w in ln.words)
        assert Counter(text for text, _ in words) == expected, layout.number  # every word, once
        for text, (x1, y1, x2, y2) in words:
            homes = [box for box, texts in blocks if text in texts]
            assert any(
                x1 >= bx1 - SLACK and y1 >= by1 - SLACK and x2 <= bx2 + SLACK and y2 <= by2 + SLACK
                for bx1, by1, bx2, by2 in homes
            ), (layout.number, text, (x1, y1, x2, y2), homes)


def test_poppler_finds_the_words_of_real_lecture_pages_inside_their_blocks(
    tmp_path: Path,
) -> None:
    images, layouts = _lecture_layouts()
    out = tmp_path / "lectures.searchable.pdf"
    write_searchable_pdf(images, layouts, out)
    sizes = [(lay.width * 0.5, lay.height * 0.5) for lay in layouts]  # IMAGE_POINTS_PER_PIXEL
    _assert_poppler_finds_each_word_in_its_block(out, layouts, sizes)


def test_poppler_finds_the_words_of_a_scanned_pdf_inside_their_blocks(tmp_path: Path) -> None:
    # The lecture page scanned at 150 dpi: the page is in points, the layout in image pixels.
    images, layouts = _lecture_layouts()
    scan = tmp_path / "scan.pdf"
    doc = fitz.open()
    for image, layout in zip(images[:2], layouts[:2], strict=True):
        page = doc.new_page(width=layout.width * 72 / 150, height=layout.height * 72 / 150)
        page.insert_image(page.rect, filename=str(image))
    doc.save(scan)
    doc.close()
    out = tmp_path / "scan.searchable.pdf"
    assert write_searchable_pdf(scan, layouts[:2], out).layered == [1, 2]
    sizes = [(lay.width * 72 / 150, lay.height * 72 / 150) for lay in layouts[:2]]
    _assert_poppler_finds_each_word_in_its_block(out, layouts[:2], sizes)


def test_the_poppler_check_can_fail(tmp_path: Path) -> None:
    """Text laid out as if the page image were twice as large lands off its blocks (all of its
    words are there, at half their places), and the check says so."""
    images, layouts = _lecture_layouts()
    first = layouts[0]
    out = tmp_path / "misplaced.pdf"
    write_searchable_pdf(
        images[:1], [PageLayout(1, first.width * 2, first.height * 2, first.blocks)], out
    )
    with pytest.raises(AssertionError, match=r"^\(1, '"):
        _assert_poppler_finds_each_word_in_its_block(
            out, [first], [(first.width * 0.5, first.height * 0.5)]
        )
