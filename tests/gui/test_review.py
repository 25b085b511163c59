"""Pages to check in the window: a page the triage flagged says why above the page, its
thumbnail takes the check colour, F8 / Shift+F8 step through such pages, and a flag's region
is outlined on the page (against the loopback server replaying a recorded loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

from ocrdesk.engine.results import Flag, FlagKind, PageResult, PageStatus
from ocrdesk.gui.thumbnails import CHECK_COLOR, StatusColorRole
from tests.conftest import MODEL_OUTPUTS, need
from tests.engine.helpers import make_pdf
from tests.gui.test_page_actions import run_all
from tests.gui.test_run_control import add


def test_flagged_pages_say_why_and_f8_steps_through_them(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    (path,) = need(MODEL_OUTPUTS).glob("07*.txt")
    controller, window = windows(path.read_text(encoding="utf-8"))
    item = add(qtbot, controller, window, make_pdf(tmp_path / "loops.pdf", 3))
    run_all(qtbot, controller, window, item)
    assert all(item.pages[n].result.flags for n in (1, 2, 3))

    window.show_page(item.id, 1)
    assert not window.check_label.isHidden()
    assert window.check_label.text().startswith("Check this page: loop: ")
    model = window.thumbs._model
    colours = [model.data(model.index(n, 0), StatusColorRole) for n in range(3)]
    assert colours == [CHECK_COLOR] * 3
    assert "check: loop" in model.data(model.index(0, 0), 3)  # the tooltip (ToolTipRole)

    QTest.keySequence(window, QKeySequence("F8"))
    assert window.current == (item.id, 2)
    QTest.keySequence(window, QKeySequence("F8"))
    QTest.keySequence(window, QKeySequence("F8"))  # wraps round to the first
    assert window.current == (item.id, 1)
    QTest.keySequence(window, QKeySequence("Shift+F8"))
    assert window.current == (item.id, 3)

    # an uncovered region is outlined; a page without flags hides the line and the outline
    region = Flag(FlagKind.UNCOVERED, "ink no box covers", (10.0, 20.0, 110.0, 220.0))
    window._show_checks(PageResult(1, 500, 700, PageStatus.DONE, flags=[region]))
    assert len(window.page_view.marks) == 1
    assert window.page_view.marks[0].rect().getCoords() == (10.0, 20.0, 110.0, 220.0)
    window._show_checks(PageResult(1, 500, 700, PageStatus.DONE))
    assert window.check_label.isHidden() and window.page_view.marks == []


def test_stop_engine_is_not_offered_for_a_remote_server(windows: Any) -> None:
    controller, window = windows("")
    assert controller.local is None  # the loopback server is remote to the window
    assert not window.engine_stop_action.isVisible()
    assert not window.engine_stop_action.isEnabled()
