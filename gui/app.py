"""Starting the window: QApplication, the qasync event loop, the controller and the main window.

    from gui.app import run
    run(["scan.pdf"], server="http://gpu-box:8000/v1")   # returns the exit code

`ocrdesk` (no arguments) and `ocrdesk gui [FILES] [--server URL]` call `run`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import qasync
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gui.controller import Controller
from gui.main_window import MainWindow
from gui.result_view import RESOURCES
from gui.settings import Settings


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
        controller.add_paths(files)
    return controller, window


def run(files: list[str], *, server: str | None = None, api_key: str | None = None) -> int:
    """Open the window with `files` queued; return the exit code once it is closed."""
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
        window.show()
        await done.wait()
        await controller.close()
        return 0

    with loop:
        return loop.run_until_complete(main())
