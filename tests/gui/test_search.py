"""Ctrl+F: the search over a document's blocks (a pure function) and the bar that steps through
the matches, with its keys (Enter, Shift+Enter, Escape even where the window binds Escape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QVBoxLayout, QWidget

from ocrdesk.engine import Block
from ocrdesk.gui.search import SearchBar, SearchMatch, find_matches

BOX = ((10.0, 10.0, 100.0, 40.0),)


def _blocks(*texts: str) -> list[Block]:
    return [Block("text", BOX, text) for text in texts]


PAGES = {
    1: _blocks("Introduction", "The Résumé of the lecture", "nothing here"),
    2: _blocks("Second page", "a resume\nwith words"),
    3: _blocks("<table><tr><td>Total</td><td>12 &amp; 13</td></tr></table>", "RESUME again"),
}


def test_matches_in_page_then_reading_order_ignoring_case_and_accents() -> None:
    assert find_matches(PAGES, "résumé") == [
        SearchMatch(1, 1),
        SearchMatch(2, 1),
        SearchMatch(3, 1),
    ]
    assert find_matches(PAGES, "RESUMÉ") == find_matches(PAGES, "resume")


def test_a_phrase_wrapped_onto_the_next_line_matches() -> None:
    assert find_matches(PAGES, "resume with") == [SearchMatch(2, 1)]
    assert find_matches(PAGES, "  resume   with ") == [SearchMatch(2, 1)]


def test_table_markup_is_not_searched_but_its_text_is() -> None:
    assert find_matches(PAGES, "td") == []
    assert find_matches(PAGES, "total") == [SearchMatch(3, 0)]
    assert find_matches(PAGES, "12 & 13") == [SearchMatch(3, 0)]


def test_an_empty_query_matches_nothing() -> None:
    assert find_matches(PAGES, "") == []
    assert find_matches(PAGES, "   ") == []
    assert find_matches(PAGES, "absent") == []


def _bar(qtbot: Any, pages: dict[int, list[Block]]) -> tuple[SearchBar, list[tuple[int, int]]]:
    bar = SearchBar()
    qtbot.addWidget(bar)
    chosen: list[tuple[int, int]] = []
    bar.matchChosen.connect(lambda page, block: chosen.append((page, block)))
    bar.open(lambda: pages, page=1)
    return bar, chosen


def test_typing_chooses_the_first_match_and_enter_steps_round(qtbot: Any) -> None:
    bar, chosen = _bar(qtbot, PAGES)
    qtbot.keyClicks(bar.edit, "resume")
    assert chosen[-1] == (1, 1)
    assert bar.count_label.text() == "1 of 3 (page 1)"
    for _ in range(3):
        qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert chosen[-3:] == [(2, 1), (3, 1), (1, 1)]  # wraps round after the last
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert chosen[-1] == (3, 1)
    assert bar.count_label.text() == "3 of 3 (page 3)"


def test_opening_on_a_later_page_starts_there(qtbot: Any) -> None:
    bar, chosen = _bar(qtbot, PAGES)
    qtbot.keyClicks(bar.edit, "resume")
    bar.open(lambda: PAGES, page=2)
    assert chosen[-1] == (2, 1)


def test_no_match_is_said(qtbot: Any) -> None:
    bar, chosen = _bar(qtbot, PAGES)
    qtbot.keyClicks(bar.edit, "zebra")
    assert chosen == []
    assert bar.count_label.text() == "No matches"


def test_pages_that_finish_later_are_searched(qtbot: Any) -> None:
    pages = {1: _blocks("first")}
    bar, chosen = _bar(qtbot, pages)
    qtbot.keyClicks(bar.edit, "late")
    assert chosen == []
    pages[2] = _blocks("a late page")
    bar.refresh()
    assert bar.count_label.text() == "1 match"
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert chosen == [(2, 0)]


def test_escape_closes_the_bar_not_the_windows_escape_action(qtbot: Any) -> None:
    """The window binds Escape to Stop; in the search field Escape closes the bar only."""
    window = QMainWindow()
    qtbot.addWidget(window)
    stopped: list[bool] = []
    stop = QAction("Stop", window)
    stop.setShortcut(QKeySequence("Esc"))
    stop.triggered.connect(lambda: stopped.append(True))
    window.addAction(stop)
    centre = QWidget(window)
    bar = SearchBar(centre)
    QVBoxLayout(centre).addWidget(bar)
    window.setCentralWidget(centre)
    window.show()
    qtbot.waitExposed(window)
    bar.open(lambda: PAGES)
    window.activateWindow()
    qtbot.waitUntil(bar.edit.hasFocus, timeout=10_000)
    with qtbot.waitSignal(bar.closed, timeout=10_000):
        qtbot.keyClick(bar.edit, Qt.Key.Key_Escape)
    assert not bar.isVisible()
    assert stopped == []


def test_screenshot(qtbot: Any) -> None:
    bar, _ = _bar(qtbot, PAGES)
    bar.resize(640, bar.sizeHint().height())
    bar.edit.setText("résumé")  # QTest types ASCII only
    qtbot.keyClick(bar.edit, Qt.Key.Key_Return)
    assert not bar.grab().isNull()
    bar.grab().save(str(Path("/tmp/h11-search-bar.png")))
