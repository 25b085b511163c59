"""Starting the window: stop signals first, then QApplication, the claim to be the only window
of this user and settings folder (gui/single_instance.py: a second `ocrdesk FILE` hands FILE
to the first and exits), the qasync event loop, the controller and the main window.

    from ocrdesk.gui.app import run
    run(["scan.pdf"], server="http://gpu-box:8000/v1")   # returns the exit code

`ocrdesk` (no arguments) and `ocrdesk gui [FILES] [--server URL]` call `run`.

This module imports only the standard library at its top: `run` installs its SIGTERM/SIGINT
handler before the slow part of start-up (Qt, QtWebEngine, the engine, the window), so a signal
at any moment closes OCRDesk the normal way (exit 0). Whoever imports `build` must import
PySide6.QtWebEngineWidgets before creating the QApplication, as `run` does.

OCRDESK_LOG_LEVEL (DEBUG, INFO, ...) prints the `ocrdesk` loggers' records of that level and
above on stderr; at INFO, READY_MESSAGE says the window is open and the signals are handled.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from ocrdesk.gui.controller import Controller
    from ocrdesk.gui.main_window import MainWindow
    from ocrdesk.gui.settings import Settings
    from ocrdesk.gui.single_instance import SingleInstance

log = logging.getLogger(__name__)

LOG_LEVEL_VARIABLE = "OCRDESK_LOG_LEVEL"
#: Logged (INFO) once the window is shown with the stop signals handled; tests wait for it.
READY_MESSAGE = "the window is open"
#: Logged (DEBUG) once SIGTERM and SIGINT are handled, before Qt is loaded.
SIGNALS_MESSAGE = "SIGTERM and SIGINT close OCRDesk cleanly from here on"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install_asyncgen_hooks(loop: asyncio.AbstractEventLoop) -> None:
    """Have async generators finalised on `loop` (what asyncio's own run_forever sets up)."""
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
        finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
    )


def build(
    files: list[str],
    *,
    server: str | None = None,
    api_key: str | None = None,
    settings: Settings | None = None,
    history: bool = True,
) -> tuple[Controller, MainWindow]:
    """The controller and window, with the engine connecting and `files` being queued.

    With `history`, what earlier sessions left comes back too: their exports, and the queued
    documents they did not finish. `server` is in force for this session only (Settings shows
    it; it is saved only when the person changes the engine there).

    Needs a running qasync loop (the controller starts asyncio tasks)."""
    from ocrdesk.gui.controller import Controller
    from ocrdesk.gui.main_window import MainWindow
    from ocrdesk.gui.settings import QueueState, Settings

    settings = settings or Settings()
    controller = Controller()
    state = QueueState.load(settings.state_path)
    controller.keep_queue(state)
    if server:
        settings.override_server(server, api_key or settings.api_key())
    window = MainWindow(controller, settings)
    if server:
        controller.use_remote(server, settings.api_key())
    else:
        window.apply_engine_settings()
    if history:
        controller.load_history(Path(settings.get("output/folder")), state.queued)
    if files:
        window.open_paths(files)
    # The cyclic garbage collector stops every thread while it scans; a full (generation 2)
    # scan of the ~150,000 objects that Qt, PySide and the modules leave took 150-220 ms while
    # pages streamed, the longest GUI stalls measured. Those objects live as long as the app,
    # so they are moved out of the collector's view once the window exists. A larger first
    # threshold lets the stream's short-lived objects die by reference count before a collection
    # promotes them; both together brought the longest stall from ~200 ms to 70-90 ms
    # (benchmarks/results/gui-latency.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    return controller, window


def allow_chromium_as_root() -> bool:
    """Let Qt WebEngine (the result view) start when OCRDesk runs as root.

    Chromium refuses to run as root with its sandbox on, and the window then exits with a
    Chromium log line nobody understands. As root, turn the sandbox off and say so: the view
    only shows sanitised model output and cannot reach the network (see gui/result_view.py).
    Returns True when it did."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
    if "--no-sandbox" not in flags.split():
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = f"{flags} --no-sandbox".strip()
        print(
            "ocrdesk: running as root: the result view's Chromium sandbox is off "
            "(run OCRDesk as a normal user to keep it)",
            file=sys.stderr,
        )
    return True


def log_to_stderr(environ: Mapping[str, str] | None = None) -> None:
    """With OCRDESK_LOG_LEVEL set, print the `ocrdesk` loggers' records from that level on."""
    name = (os.environ if environ is None else environ).get(LOG_LEVEL_VARIABLE, "").strip().upper()
    level = logging.getLevelName(name) if name else None
    if not isinstance(level, int):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ocrdesk: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ocrdesk")
    root.addHandler(handler)
    root.setLevel(level)


class StopSignals:
    """SIGTERM and SIGINT close the window the normal way: the run stops, the local server is
    stopped, finished pages are already on disk, and the process exits 0.

    Installed before anything slow, when there is no window yet: a signal then is remembered,
    and start-up ends as soon as it can (`requested`), or the window closes once it exists.
    Python runs signal handlers only between bytecodes, and the GUI thread mostly waits in
    Qt's C++ event loop; a timer that enters Python every 200 ms lets the handler run."""

    def __init__(self) -> None:
        self.requested = False
        self._window: QWidget | None = None
        self._close: Callable[[], Any] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        log.debug(SIGNALS_MESSAGE)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def attach(self, window: QWidget) -> None:
        """From now on a signal closes `window`; one that came earlier closes it at once.

        A window with `close_now` is closed with it: a signal does not wait for a person to
        answer "quit during a run?"."""
        from PySide6.QtCore import QTimer

        self._window = window
        self._close = getattr(window, "close_now", None) or window.close
        ticker = QTimer(window)
        ticker.timeout.connect(lambda: None)
        ticker.start(200)
        if self.requested:
            QTimer.singleShot(0, self._close)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._close is not None:
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, self._close)


def run(files: list[str], *, server: str | None = None, api_key: str | None = None) -> int:
    """Open the window with `files` queued; return the exit code once it is closed."""
    log_to_stderr()
    stop = StopSignals()
    stop.install()
    try:
        return _start(files, server, api_key, stop)
    finally:
        stop.restore()


def _start(files: list[str], server: str | None, api_key: str | None, stop: StopSignals) -> int:
    allow_chromium_as_root()
    import qasync
    from PySide6 import QtWebEngineWidgets  # noqa: F401  (must load before QApplication)
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from ocrdesk.resources import RESOURCES

    if stop.requested:
        return 0
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("OCRDesk")
    app.setOrganizationName("OCRDesk")
    app.setDesktopFileName("ocrdesk")
    app.setQuitOnLastWindowClosed(False)
    instance = claim_instance(files)
    if isinstance(instance, int):  # the window that runs already has the files, or hangs
        return instance
    icon = RESOURCES / "ocrdesk.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    handed = HandedFiles(instance)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_asyncgen_hooks(loop)

    async def main() -> int:
        if stop.requested:
            return 0
        done = asyncio.Event()
        controller, window = build(files, server=server, api_key=api_key)
        window.closed.connect(done.set)
        handed.window = window
        stop.attach(window)
        window.show()
        log.info(READY_MESSAGE)
        await done.wait()
        await controller.close()
        return 0

    with loop:
        status: int = loop.run_until_complete(main())
    instance.close()
    return status


def claim_instance(files: list[str]) -> SingleInstance | int:
    """This process's claim to be the window of its user and settings folder.

    The SingleInstance (now listening) when it is the first; else the exit code: 0 when
    `files` were handed to the window that runs already (said on stdout), 1 when that window
    does not answer."""
    from ocrdesk.gui.settings import Settings
    from ocrdesk.gui.single_instance import (
        NotAnswering,
        SingleInstance,
        handed_message,
        server_name,
    )

    instance = SingleInstance(server_name(Path(Settings().q.fileName()).parent))
    try:
        first = instance.claim(files)
    except NotAnswering as exc:
        print(f"ocrdesk: {exc}", file=sys.stderr)
        return 1
    if first:
        return instance
    print(handed_message(len(files)), flush=True)
    return 0


class HandedFiles:
    """Opens what a second `ocrdesk FILE` hands over, and brings the window to the front; files
    that come before the window exists are opened once it does."""

    def __init__(self, instance: SingleInstance) -> None:
        self._window: MainWindow | None = None
        self._early: list[str] = []
        instance.filesReceived.connect(self.receive)

    @property
    def window(self) -> MainWindow | None:
        return self._window

    @window.setter
    def window(self, window: MainWindow) -> None:
        self._window = window
        if self._early:
            self._open(window, self._early)
            self._early = []

    @staticmethod
    def message(count: int) -> str:
        """What the running window says of a hand-over (the second start prints its own)."""
        files = "file" if count == 1 else "files"
        return f"Opened {count} {files} handed over by another OCRDesk start"

    def _open(self, window: MainWindow, files: list[str]) -> None:
        window.open_paths(files)
        # Said here too: the second start's own line goes to a terminal the person may not see.
        window.statusBar().showMessage(self.message(len(files)), 10000)

    def receive(self, files: list[str]) -> None:
        window = self._window
        if window is None:
            self._early.extend(files)
            return
        if files:
            self._open(window, files)
        if window.isMinimized():
            window.showNormal()
        window.raise_()
        window.activateWindow()
