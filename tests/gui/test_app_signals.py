"""`ocrdesk gui` as a process: SIGTERM closes the window the normal way and the process exits 0
(the run is stopped, the engine closed), instead of dying by the signal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.processes import isolated_env, sigterm_once_window_is_up


def test_sigterm_closes_the_window_cleanly(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", 2)
    log = tmp_path / "gui.log"
    status = sigterm_once_window_is_up(
        [sys.executable, "-m", "ocrdesk", "gui", str(pdf)],
        cwd=tmp_path,
        env=isolated_env(tmp_path / "home", PYTHONPATH=str(REPO)),
        log=log,
        settle=1.0,
    )
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_qt_warning_in_a_test_body_is_seen(qapp: Any) -> None:
    """The conftest's handler, not pytest-qt's capture, sees warnings raised during a test (the
    autouse fixture then fails the test; here the canary is taken back out first)."""
    from PySide6.QtCore import qWarning

    from tests.gui import conftest

    qWarning("canary: an unexpected warning")
    assert conftest._messages == ["QtWarningMsg: canary: an unexpected warning"]
    conftest._messages.clear()
