"""Ctrl+F, F3 and F1 in the real window, against the loopback OpenAI server: the search bar
finds a document's text, shows the page of each match and highlights its box and its block;
Help lists the find keys with the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

from ocrdesk.gui.help import ShortcutsDialog
from tests.engine.helpers import make_pdf
from tests.gui.test_page_actions import THREE, run_all
from tests.gui.test_run_control import add


def test_ctrl_f_finds_text_across_pages_and_highlights_box_and_block(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(THREE)
    item = add(qtbot, controller, window, make_pdf(tmp_path / "three.pdf", 3))
    run_all(qtbot, controller, window, item)
    # the server answers in the order the requests come, so which page is which is looked up
    page_of = {
        item.pages[n].result.blocks[0].text.split()[-1]: n for n in item.pages
    }  # "alpha": 1 paragraph, "beta": 2, "gamma": 3
    beta, gamma = page_of["beta"], page_of["gamma"]
    window.show_page(item.id, page_of["alpha"])
    bar = window.search_bar
    assert not bar.isVisible()

    QTest.keySequence(window, QKeySequence(QKeySequence.StandardKey.Find))
    assert bar.isVisible()
    QTest.keyClicks(bar.edit, "beta")
    # "Heading beta" is its page's first block, "Paragraph 1 of the beta page." its second
    assert window.current == (item.id, beta)
    assert window.page_view.highlighted == 0
    assert window.result_view.highlighted == 0
    QTest.keyClick(bar.edit, Qt.Key.Key_Return)
    assert window.current == (item.id, beta)
    assert window.page_view.highlighted == 1
    assert window.result_view.highlighted == 1

    # F3 steps on without the bar's focus: "Paragraph 2" is on the beta and gamma pages only
    window.show_page(item.id, beta)
    bar.edit.setText("paragraph 2")
    assert window.current == (item.id, beta) and window.page_view.highlighted == 2
    window.page_view.setFocus()
    QTest.keySequence(window, QKeySequence(QKeySequence.StandardKey.FindNext))
    assert window.current == (item.id, gamma)
    assert window.page_view.highlighted == 2
    assert window.result_view.highlighted == 2
    # the new page's boxes come with its image; the match's box is drawn highlighted then
    qtbot.waitUntil(lambda: any(b.index == 2 for b in window.page_view.boxes), timeout=30_000)
    drawn = {b.index: b.zValue() for b in window.page_view.boxes}
    assert drawn[2] > drawn[1] == drawn[0]

    QTest.keyClick(bar.edit, Qt.Key.Key_Escape)
    assert not bar.isVisible()
    assert controller.state == "ready"  # Escape closed the bar, it did not stop anything


def test_help_lists_the_find_keys(windows: Any, qtbot: Any) -> None:
    _, window = windows("")
    names = {name for _, name, _ in ShortcutsDialog(window).rows()}
    assert {"Find", "Find next", "Find previous", "Keyboard shortcuts"} <= names
