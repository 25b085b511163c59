"""Tests for engine.text_layer: lines and words estimated inside grounded blocks."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ocrdesk.engine.parser import parse
from ocrdesk.engine.results import Block, PageResult, PageStatus
from ocrdesk.engine.text_layer import block_lines, label_role, layout_block, layout_page

PAGES = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pages"


def _inside(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    eps = 1e-6
    return (
        inner[0] >= outer[0] - eps
        and inner[1] >= outer[1] - eps
        and inner[2] <= outer[2] + eps
        and inner[3] <= outer[3] + eps
    )


def test_markdown_html_and_latex_marks_are_removed() -> None:
    text = "## Satz **1.1** Seien A &amp; B\n\n- erstens <sup>2</sup>\n\\[ x^2 \\]\n"
    assert block_lines("text", text) == ["Satz 1.1 Seien A & B", "erstens 2", "x^2"]
    assert block_lines("image", "anything") == []
    assert block_lines("text", "a < b and c > d, <br/>e") == ["a < b and c > d, e"]
    assert block_lines("text", "bad\x00control\ud800") == ["bad control\ufffd"]


def test_table_gives_a_line_per_row_spanning_the_block() -> None:
    table = "<table><tr><td>A</td><td>\\(x\\)</td></tr><tr><td colspan='2'>W</td></tr></table>"
    assert block_lines("table", table) == ["A x", "W"]
    layout = layout_block("table", (10.0, 100.0, 510.0, 300.0), table)
    assert [line.text for line in layout.lines] == ["A x", "W"]
    assert [line.box for line in layout.lines] == [(10, 100, 510, 200), (10, 200, 510, 300)]


def test_a_paragraph_is_wrapped_into_rows_that_fill_its_box() -> None:
    # 59 characters in 800 x 480 px: 3 rows (160 px, 12 characters a row) need 5 rows; 4 rows
    # (100 px at 1.2 em a row, 16 characters a row at 0.5 em a character) need 4: 4 it is.
    words = " ".join(f"w{i:03d}" for i in range(12))
    box = (100.0, 100.0, 900.0, 580.0)
    layout = layout_block("text", box, words)
    assert len(layout.lines) == 4
    assert " ".join(line.text for line in layout.lines) == words  # every word, in order
    tops = [line.box[1] for line in layout.lines]
    assert tops == pytest.approx([100, 220, 340, 460])
    assert max(line.box[2] for line in layout.lines) == pytest.approx(900)
    for line in layout.lines:
        assert _inside(line.box, box)
        assert line.font_size == pytest.approx(120 / 1.2)
        for word in line.words:
            assert _inside(word.box, line.box)
        assert [w.text for w in line.words] == line.text.split(" ")
        xs = [w.box[0] for w in line.words]
        assert xs == sorted(xs)


def test_one_short_line_takes_the_whole_box() -> None:
    layout = layout_block("title", (5.0, 6.0, 205.0, 46.0), "# Grundlagen Logik")
    (line,) = layout.lines
    assert line.text == "Grundlagen Logik" and line.box == (5.0, 6.0, 205.0, 46.0)
    assert [w.text for w in line.words] == ["Grundlagen", "Logik"]


def test_formula_lines_stay_whole_unless_absurdly_long() -> None:
    formula = "\\[ (A \\lor (B \\lor C)) \\Leftrightarrow ((A \\lor B) \\lor C), \\]\n\\[ y \\]"
    layout = layout_block("equation", (0.0, 0.0, 400.0, 100.0), formula)
    assert [line.text for line in layout.lines] == [
        "(A \\lor (B \\lor C)) \\Leftrightarrow ((A \\lor B) \\lor C),",
        "y",
    ]
    loop = "\\[ " + " \\\\ ".join(str(i) for i in range(2000)) + " \\]"
    assert len(layout_block("equation", (0.0, 0.0, 400.0, 100.0), loop).lines) > 1


def test_degenerate_boxes_do_not_raise() -> None:
    for box in [(10.0, 10.0, 10.0, 10.0), (0.0, 0.0, 1.0, 1000.0), (0.0, 0.0, 1000.0, 0.5)]:
        layout = layout_block("text", box, "some words here\nand more")
        assert " ".join(line.text for line in layout.lines) == "some words here and more"


def test_labels_have_roles() -> None:
    assert [label_role(x) for x in ("title", "sub_title", "image_caption", "image")] == [
        "heading",
        "heading",
        "caption",
        "figure",
    ]
    assert label_role("table") == "table" and label_role("whatever") == "text"


def test_page_keeps_the_model_order_and_skips_blocks_without_a_box() -> None:
    blocks = [
        Block("text", ((0.0, 500.0, 100.0, 520.0),), "second on the page, first in order"),
        Block("text", (), "no box"),
        Block("title", ((0.0, 0.0, 100.0, 20.0),), "# top"),
    ]
    layout = layout_page(PageResult(3, 100, 600, PageStatus.DONE, blocks=blocks))
    assert (layout.number, layout.width, layout.height) == (3, 100, 600)
    texts = [b.text.replace("\n", " ") for b in layout.blocks]
    assert texts == ["second on the page, first in order", "top"]


@pytest.mark.parametrize("name", ["006", "015", "024", "043", "202", "354"])
def test_real_pages_lines_stay_inside_their_blocks(name: str) -> None:
    with Image.open(PAGES / f"lecture-{name}.jpg") as image:
        width, height = image.size
    raw = (PAGES / f"lecture-{name}.raw.txt").read_text(encoding="utf-8")
    parsed = parse(raw, width, height)
    layout = layout_page(PageResult(1, width, height, PageStatus.DONE, blocks=parsed.blocks))
    assert layout.blocks
    for block in layout.blocks:
        for line in block.lines:
            assert _inside(line.box, block.box)
            assert line.words and all(_inside(w.box, line.box) for w in line.words)
        if block.label != "image":
            assert block.lines, block
