"""Starting the window: QApplication, the qasync event loop, the controller and the main window.

    from ocrdesk.gui.app import run
    run(["scan.pdf"], server="http://gpu-box:8000/v1")   # returns the exit code

`ocrdesk` (no arguments) and `ocrdesk gui [FILES] [--server URL]` call `run`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

import qasync
from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QWidget

from ocrdesk.gui.controller import Controller
from ocrdesk.gui.main_window import MainWindow
from ocrdesk.gui.settings import Settings
from ocrdesk.resources import RESOURCES


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

    Needs a running qasync loop (the controller starts asyncio tasks)."""
    settings = settings or Settings()
    controller = Controller()
    window = MainWindow(controller, settings)
    if server:
        controller.use_remote(server, api_key or settings.api_key())
    else:
        window.apply_engine_settings()
    if history:
        controller.load_history(Path(settings.get("output/folder")))
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


def close_on_signals(window: QWidget) -> None:
    """SIGTERM and SIGINT close the window the normal way: the run stops, the local server is
    stopped, finished pages are already on disk, and the process exits 0.

    Python runs signal handlers only between bytecodes, and the GUI thread mostly waits in
    Qt's C++ event loop; a timer that enters Python every 200 ms lets the handler run."""

    def handler(signum: int, frame: object) -> None:
        QTimer.singleShot(0, window.close)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    ticker = QTimer(window)
    ticker.timeout.connect(lambda: None)
    ticker.start(200)


def run(files: list[str], *, server: str | None = None, api_key: str | None = None) -> int:
    """Open the window with `files` queued; return the exit code once it is closed."""
    allow_chromium_as_root()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("OCRDesk")
    app.setOrganizationName("OCRDesk")
    app.setDesktopFileName("ocrdesk")
    app.setQuitOnLastWindowClosed(False)
    icon = RESOURCES / "ocrdesk.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_asyncgen_hooks(loop)

    async def main() -> int:
        done = asyncio.Event()
        controller, window = build(files, server=server, api_key=api_key)
        window.closed.connect(done.set)
        close_on_signals(window)
        window.show()
        await done.wait()
        await controller.close()
        return 0

    with loop:
        return loop.run_until_complete(main())
