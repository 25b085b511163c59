"""`ocrdesk gui` as a process: SIGTERM closes the window the normal way and the process exits 0
(the run is stopped, the engine closed), instead of dying by the signal; also when the signal
comes during start-up, before there is a window. The tests wait for the lines the app logs, not
for a window or a time."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from ocrdesk.gui.app import SIGNALS_MESSAGE, StopSignals
from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.processes import isolated_env, sigterm_window


def _gui(tmp_path: Path) -> list[str]:
    pdf = make_pdf(tmp_path / "scan.pdf", 2)
    return [sys.executable, "-m", "ocrdesk", "gui", str(pdf)]


def test_sigterm_closes_the_window_cleanly(tmp_path: Path) -> None:
    log = tmp_path / "gui.log"
    env = isolated_env(tmp_path / "home", PYTHONPATH=str(REPO))
    status = sigterm_window(_gui(tmp_path), cwd=tmp_path, env=env, log=log)
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_sigterm_during_start_up_exits_cleanly(tmp_path: Path) -> None:
    """The handler is in place before Qt and the window are loaded: a signal then ends
    start-up with exit 0 rather than killing the process."""
    log = tmp_path / "gui.log"
    env = isolated_env(tmp_path / "home", PYTHONPATH=str(REPO))
    status = sigterm_window(
        _gui(tmp_path), cwd=tmp_path, env=env, log=log, after=SIGNALS_MESSAGE, web_view=False
    )
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_signal_before_the_window_closes_it_once_it_exists(qloop: Any, qtbot: Any) -> None:
    from PySide6.QtWidgets import QWidget

    stop = StopSignals()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: stop.requested, timeout=30_000)
        window = QWidget()
        qtbot.addWidget(window)
        window.show()
        stop.attach(window)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGTERM) != stop._handle


def test_a_qt_warning_in_a_test_body_is_seen(qapp: Any) -> None:
    """The conftest's handler, not pytest-qt's capture, sees warnings raised during a test (the
    autouse fixture then fails the test; here the canary is taken back out first)."""
    from PySide6.QtCore import qWarning

    from tests.gui import conftest

    qWarning("canary: an unexpected warning")
    assert conftest._messages == ["QtWarningMsg: canary: an unexpected warning"]
    conftest._messages.clear()
