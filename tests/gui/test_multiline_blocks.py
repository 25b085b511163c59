"""A block's single newlines are line breaks in the result view (issue 11, item 21), on real model
output: a definition written over five lines shows five lines, while display formulas over
several lines, two display formulas on consecutive lines, and tables render as before."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import Block, parse, split_math
from ocrdesk.engine.sanitize import Formula
from ocrdesk.gui.html import render_markdown
from tests.conftest import CORPUS, MODEL_OUTPUTS, need
from tests.gui.test_result_render import convert, dom, launch, until_dom

__all__ = ["launch"]  # the fixture, used by name

PAGES = CORPUS / "pages"
_BREAK = re.compile(r"<br\s*/?>")


def blocks_of(path: Path) -> list[Block]:
    return list(parse(need(path).read_text(encoding="utf-8"), 1000, 1000).blocks)


def block_with(path: Path, words: str) -> Block:
    return next(b for b in blocks_of(path) if words in b.text)


def test_the_lines_of_a_definition_are_lines() -> None:
    block = block_with(PAGES / "lecture-024.raw.txt", "Folgeglieder")
    lines = block.text.strip().split("\n")
    assert len(lines) == 5  # the page's own five lines, with inline formulas on them
    html = render_markdown(block.text)
    assert html.count("<p>") == 1
    assert len(_BREAK.findall(html)) == 4
    assert html.count('class="math" data-display="0"') == 6


def test_a_blank_line_is_still_a_paragraph() -> None:
    html = render_markdown("First paragraph line one\nline two\n\nSecond paragraph")
    assert html.count("<p>") == 2
    assert len(_BREAK.findall(html)) == 1


def test_display_formulas_on_consecutive_lines_get_no_empty_line() -> None:
    equations = [
        b for b in blocks_of(PAGES / "lecture-006.raw.txt") if b.text.strip().count("\\[") == 2
    ]
    assert len(equations) == 3
    for block in equations:
        html = render_markdown(block.text)
        assert not _BREAK.search(html), html
        assert html.count('class="math" data-display="1"') == 2


def test_a_display_formula_after_a_line_of_text() -> None:
    block = block_with(MODEL_OUTPUTS / "06_repetition_loop_pmatrix.txt", "Bsp:")
    html = render_markdown(block.text)
    assert not _BREAK.search(html), html
    assert html.startswith("<p>Bsp:") and 'data-display="1"' in html


def test_a_formula_over_several_lines_stays_one_formula() -> None:
    source = MODEL_OUTPUTS / "06_repetition_loop_pmatrix.txt"
    multi = [
        b
        for b in blocks_of(source)
        if b.label == "equation"
        and "\\begin{pmatrix}\n" in b.text
        and "\\\\\n" in b.text
        and b.text.strip().endswith("\\]")  # not the one the repetition loop cut off
    ]
    assert multi
    for block in multi:
        html = render_markdown(block.text)
        assert not _BREAK.search(html), html
        wanted = [p.tex for p in split_math(block.text) if isinstance(p, Formula)]
        shown = re.findall(r'<div class="math" data-display="1">(.*?)</div>', html, re.S)
        assert [s.replace("&amp;", "&") for s in shown] == wanted


@pytest.mark.parametrize(
    ("source", "rows"),
    [
        (MODEL_OUTPUTS / "15_ollama13345_markdown_table_loop_excerpt.txt", None),
        (PAGES / "lecture-024.raw.txt", 3),
        (MODEL_OUTPUTS / "09_receipt_html_tables_postprocessed.txt", None),
    ],
)
def test_tables_still_render(source: Path, rows: int | None) -> None:
    tables = [b for b in blocks_of(source) if "<table" in b.text or "|---" in b.text]
    assert tables
    for block in tables:
        html = render_markdown(block.text)
        assert "<table>" in html
        inside = html[html.index("<table>") : html.rindex("</table>")]
        assert not _BREAK.search(inside)  # no line breaks made inside a table
        if rows is not None:
            assert inside.count("<tr>") == rows


def test_the_window_shows_the_lines_and_their_formulas(
    launch: Any, qtbot: Any, tmp_path: Path
) -> None:
    raw = need(PAGES / "lecture-024.raw.txt").read_text(encoding="utf-8")
    page = tmp_path / "lecture-024.jpg"
    page.write_bytes(need(PAGES / "lecture-024.jpg").read_bytes())
    controller, window = launch(raw)
    item = convert(qtbot, controller, window, page)
    blocks = item.pages[1].result.blocks
    k = next(i for i, b in enumerate(blocks) if "Folgeglieder" in b.text)
    until_dom(window, qtbot, f"document.querySelectorAll('[data-block=\"{k}\"] .katex').length", 6)
    tops = json.loads(
        dom(
            window,
            qtbot,
            f"JSON.stringify(Array.from(document.querySelectorAll('[data-block=\"{k}\"] .katex'))"
            ".map(function (e) { return Math.round(e.getBoundingClientRect().top); }))",
        )
    )
    # the formulas on the block's five lines: 1 on the first, 1, 1, 2, then 1 on the last
    rows = sorted(set(tops))
    assert len(rows) == 5, tops
    assert [sum(1 for t in tops if t == r) for r in rows] == [1, 1, 1, 2, 1]
    lines = dom(window, qtbot, f"document.querySelector('[data-block=\"{k}\"]').innerText")
    assert [line.strip() for line in lines.strip().split("\n")][-1].endswith(": Folgeglieder")
    assert window.result_view.page.js_errors == []
