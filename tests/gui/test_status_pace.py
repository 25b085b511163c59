"""The status bar gives no pace for a run in which no page was converted (issue 11, item 13): with
the remote server gone every page fails, and "0.11 pages/s · 0 of 2 pages done" was a lie; the
CLI's rate counts converted pages only, and so does the window's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrdesk.engine import PageStatus
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until
from tests.gui.test_run_control import add, app

__all__ = ["app"]  # the fixture, used by name


def test_no_pace_when_every_page_of_the_run_failed(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window, server = app
    item = add(qtbot, controller, window, make_pdf(tmp_path / "doc.pdf", 2))
    seen: list[str] = []
    controller.statsChanged.connect(seen.append)
    server.stop()  # the remote server goes away: every page fails
    window.run()
    arun(qtbot, wait_until(lambda: item.finished == 2, timeout=60, what="pages failed"))
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="run over"))
    assert item.count(PageStatus.FAILED) == 2
    assert seen and seen[-1] == "0 of 2 pages done · 2 failed"
    assert window.stats_label.text() == seen[-1]
    assert not any("pages/s" in text for text in seen), seen
