"""The result view's scripts leave None's reference count as it was: PySide6 6.12 drops one per
runJavaScript call (and one per callback run), and within a few thousand calls, the redraws of
a long run or of paging through a document, the interpreter aborted ("none_dealloc")."""

from __future__ import annotations

import sys
from typing import Any

from ocrdesk.gui.result_view import ResultView
from tests.gui.conftest import arun, js, wait_until

CALLS = 2000


def test_scripts_sent_to_the_result_view_keep_none_alive(qloop: Any, qtbot: Any) -> None:
    view = ResultView()
    qtbot.addWidget(view)
    arun(qtbot, wait_until(lambda: view.ready, what="result view loaded"))
    before = sys.getrefcount(None)
    for k in range(CALLS):
        view._set(f"<p>body {k}</p>")
        view.highlight(None, scroll=False)
    answers: list[Any] = []
    for _ in range(CALLS // 10):
        view.run_js("1 + 1", answers.append)
    arun(qtbot, wait_until(lambda: len(answers) == CALLS // 10, what="every answer"))
    assert arun(qtbot, js(view, "document.getElementById('c').innerText")) == f"body {CALLS - 1}"
    lost = before - sys.getrefcount(None)
    assert lost < CALLS // 20, f"{lost} references to None lost over {2 * CALLS} scripts"
