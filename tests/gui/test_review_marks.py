"""Mark reviewed (Ctrl+M, View menu): a flagged page a person looked at stops asking for a look
(banner, thumbnail colour, F8), and the mark is kept with the export, so it is there after a
restart (issue 12: "mark reviewed" per page, kept with the export and after a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

from ocrdesk.engine import EditStore
from ocrdesk.gui.review_list import PageRole
from ocrdesk.gui.thumbnails import CHECK_COLOR, StatusColorRole
from tests.conftest import MODEL_OUTPUTS, need
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until
from tests.gui.test_editing_kept import served  # noqa: F401  (the fixture)
from tests.gui.test_page_actions import run_all
from tests.gui.test_run_control import add


def colours(window: Any, pages: int) -> list[Any]:
    model = window.thumbs._model
    return [model.data(model.index(n, 0), StatusColorRole) for n in range(pages)]


def test_a_page_marked_reviewed_stops_asking_and_stays_marked_after_a_restart(
    served: Any,  # noqa: F811
    qtbot: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    from ocrdesk.gui.app import build

    (path,) = need(MODEL_OUTPUTS).glob("07*.txt")
    controller, window, server = served([path.read_text(encoding="utf-8")])
    item = add(qtbot, controller, window, make_pdf(tmp_path / "loops.pdf", 3))
    run_all(qtbot, controller, window, item)
    assert all(item.pages[n].result.flags for n in (1, 2, 3))

    # the "Needs review" list shows every flagged page with its reasons; choosing one shows it
    arun(qtbot, wait_until(lambda: window.review_list.count() == 3, what="the review list"))
    assert window.review_dock.isVisible() and window.review_dock.windowTitle().endswith("(3)")
    assert window.review_list.item(0).text() == "loops.pdf · page 1: loop, garbage"  # corpus 07
    window.review_list.itemClicked.emit(window.review_list.item(2))
    assert window.current == (item.id, 3)

    window.show_page(item.id, 2)
    assert not window.check_label.isHidden() and not window.review_action.isChecked()
    QTest.keySequence(window, QKeySequence("Ctrl+M"))
    assert window.check_label.isHidden() and window.review_action.isChecked()
    assert colours(window, 3)[1] != CHECK_COLOR and colours(window, 3)[0] == CHECK_COLOR
    assert EditStore(item.export.folder).reviewed() == {2}
    listed = [window.review_list.item(k).data(PageRole) for k in range(window.review_list.count())]
    assert listed == [(item.id, 1), (item.id, 3)]
    # F8 from page 1 goes past the reviewed page 2 to page 3
    window.show_page(item.id, 1)
    QTest.keySequence(window, QKeySequence("F8"))
    assert window.current == (item.id, 3)
    # and Ctrl+M again takes the mark back
    window.show_page(item.id, 2)
    assert window.review_action.isChecked()
    QTest.keySequence(window, QKeySequence("Ctrl+M"))
    assert not window.check_label.isHidden() and EditStore(item.export.folder).reviewed() == set()
    QTest.keySequence(window, QKeySequence("Ctrl+M"))
    window.close()
    arun(qtbot, controller.close())

    controller2, window2 = build([], server=server.url, settings=settings, history=True)
    qtbot.addWidget(window2)
    try:
        arun(qtbot, wait_until(lambda: controller2.order, what="history"))
        old = controller2.docs[controller2.order[0]]
        arun(qtbot, wait_until(lambda: len(old.pages) == 3 and old.pages[3].result, what="pages"))
        window2.show_page(old.id, 2)
        arun(qtbot, wait_until(window2.review_action.isChecked, what="page 2 shown reviewed"))
        assert window2.check_label.isHidden()
        window2.show_page(old.id, 1)
        arun(qtbot, wait_until(lambda: not window2.check_label.isHidden(), what="page 1's flags"))
        assert not window2.review_action.isChecked()
        assert colours(window2, 3)[1] != CHECK_COLOR
    finally:
        arun(qtbot, controller2.close())
