"""The model's text as the window shows it: formulas only in text (never inside an attribute, never
forged), one unbalanced formula spoiling only itself, and file names and labels as plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PySide6 import QtGui
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QTextDocument

from ocrdesk.engine import Block
from ocrdesk.gui.html import render_markdown
from ocrdesk.gui.page_view import PageView
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until
from tests.gui.test_run_control import TEXT, add


class _Tree(HTMLParser):
    """Start tags with their attributes, the text inside each `.math` element, and the rest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.math: list[str] = []
        self.outside = ""
        self._in_math = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        self.tags.append((tag, named))
        if "math" in named.get("class", "").split():
            self._in_math += 1
            self.math.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._in_math and tag in ("span", "div"):
            self._in_math -= 1

    def handle_data(self, data: str) -> None:
        if self._in_math:
            self.math[-1] += data
        else:
            self.outside += data


def _tree(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree


def test_a_formula_in_an_attribute_stays_its_text() -> None:
    # markdown puts an image's alt text into an attribute; a formula there must not close it
    tree = _tree(render_markdown('![$x$" onerror="alert(1)](data:image/png;base64,AAAA)'))
    assert tree.tags == [
        ("p", {}),
        ("img", {"src": "data:image/png;base64,AAAA", "alt": '$x$" onerror="alert(1)'}),
    ]
    tree = _tree(render_markdown('<img alt="$a<b$ \\(c\\)" src="data:image/png;base64,AAAA">'))
    assert ("img", {"alt": "$a<b$ \\(c\\)", "src": "data:image/png;base64,AAAA"}) in tree.tags
    assert tree.math == []


def test_model_text_cannot_forge_a_formula_placeholder() -> None:
    html = render_markdown("OCRDESKMATH0X and \ue0000\ue001 then $y$")
    assert _tree(html).math == ["y"]
    assert "OCRDESKMATH0X and 0 then" in html


def test_one_unbalanced_formula_spoils_only_itself() -> None:
    html = render_markdown(
        "Intro \\(a + b\\] middle words \\(c^2\\) more \\[d\\] and $e$ end. "
        "A \\( never closed, then \\(f\\)."
    )
    tree = _tree(html)
    assert tree.math == ["a + b", "c^2", "d", "e", "f"]
    outside = "Intro middle words more and end. A ( never closed, then ."
    assert tree.outside.split() == outside.split(" ")


def _shown(text: str, fmt: Qt.TextFormat = Qt.TextFormat.AutoText) -> str:
    """What Qt shows for `text` in a label of format `fmt` or a tooltip (AutoText)."""
    if fmt == Qt.TextFormat.PlainText or (
        fmt == Qt.TextFormat.AutoText and not QtGui.Qt.mightBeRichText(text)
    ):
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


def test_a_box_label_shows_as_written(qapp: Any) -> None:
    view = PageView()
    view.set_page(200, 200)
    view.set_blocks([Block("<b>text</b>", ((10.0, 10.0, 90.0, 90.0),), "words")])
    assert [_shown(box.toolTip()) for box in view.boxes] == ["<b>text</b>"]


def test_a_file_name_that_looks_like_html_shows_as_written(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(TEXT)
    path = make_pdf(tmp_path / "<b>bold<i>.pdf", 1)
    add(qtbot, controller, window, path)
    model = window.queue.model()
    tip = model.data(model.index(model.rowCount(QModelIndex()) - 1), Qt.ItemDataRole.ToolTipRole)
    assert _shown(tip).splitlines()[0] == str(path)
    title = window.result_view.title
    arun(qtbot, wait_until(lambda: title.text(), what="result title"))
    assert _shown(title.text(), title.textFormat()).startswith("<b>bold<i>.pdf")


def test_a_block_the_model_was_unsure_of_is_tinted_and_says_so() -> None:
    from ocrdesk.engine import LOW_CONFIDENCE
    from ocrdesk.gui.html import render_blocks
    from ocrdesk.resources import RESOURCES

    box = ((0.0, 0.0, 10.0, 10.0),)
    sure = Block("text", box, "Read well.", confidence=0.97)
    unsure = Block("text", box, "Read badly.", confidence=LOW_CONFIDENCE - 0.07)
    unknown = Block("text", box, "No logprobs.")  # a server that sent none: nothing to say
    page = render_blocks([sure, unsure, unknown])
    classes = re.findall(r'<div class="([^"]+)" data-block="(\d)"', page)
    assert classes == [("block", "0"), ("block unsure", "1"), ("block", "2")]
    assert "43% mean token probability" in page
    css = (RESOURCES / "result.css").read_text(encoding="utf-8")
    assert re.search(r"\.block\.unsure\s*\{[^}]*background", css)


def test_the_legend_shows_only_the_labels_of_the_page_shown(qapp: Any) -> None:
    from PySide6.QtWidgets import QCheckBox

    from ocrdesk.gui.page_view import Legend

    legend = Legend()
    legend.show()
    for labels in (["title", "text"], ["equation", "text"], ["text", "title"]):
        legend.set_labels(labels)
        qapp.processEvents()  # not the main loop's turn: deferred deletes wait
        shown = [b.text() for b in legend.findChildren(QCheckBox) if b.isVisible()]
        assert sorted(shown) == sorted(labels)
    legend.close()


def test_a_sub_title_block_without_a_hash_is_a_heading_in_the_result_view() -> None:
    # The export's rule (mark_headings): the .md, DOCX, HTML and EPUB make it a heading.
    from ocrdesk.gui.html import render_blocks

    box = ((0.0, 0.0, 10.0, 10.0),)
    page = render_blocks(
        [
            Block("title", box, "A Report"),
            Block("sub_title", box, "Methods\nand data"),
            Block("text", box, "We measured."),
            Block("sub_title", box, "## Results"),
        ]
    )
    headings = re.findall(r"<(h[1-6])>([^<]*)</h[1-6]>", page)
    assert headings == [("h1", "A Report"), ("h2", "Methods and data"), ("h2", "Results")]
    assert "<p>We measured.</p>" in page
