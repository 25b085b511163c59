"""Save docs/screenshot.png: the window with the real medical page converted and grounded.

    xvfb-run -a python -m ocrdesk.gui.screenshot     # the web view renders under Xvfb (xcb)
    QT_QPA_PLATFORM=offscreen python -m ocrdesk.gui.screenshot   # works; the result pane is blank

Runs the page against the loopback test server (tests/fakes), which replays the page's real
DeepSeek-OCR-2 output; rendered at 180 dpi, the boxes land on the text.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(out: Path = REPO / "docs" / "screenshot.png") -> int:
    # Chromium's sandbox cannot run as root in CI containers; this script is for CI only.
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox")
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    sys.path.insert(0, str(REPO))
    import qasync
    from PySide6 import QtWebEngineWidgets  # noqa: F401
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from ocrdesk.engine import PageStatus, Task
    from ocrdesk.gui.app import build, install_asyncgen_hooks
    from ocrdesk.gui.settings import Settings
    from tests.fakes.openai_server import PAGES_DIR, REAL_PAGE_RAW, FakeOpenAIServer

    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_asyncgen_hooks(loop)
    tmp = Path(tempfile.mkdtemp(prefix="ocrdesk-shot-"))
    settings = Settings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    settings.set("output/folder", str(tmp / "out"))
    settings.set("run/dpi", 180)
    settings.set("run/task", Task.MARKDOWN.value)
    raw = REAL_PAGE_RAW.read_text(encoding="utf-8")

    async def shoot() -> None:
        with FakeOpenAIServer([raw], token_delay=0.0005, tokens_per_chunk=4) as server:
            controller, window = build(
                [str(PAGES_DIR / "medical-report-p1.pdf")],
                server=server.url,
                settings=settings,
                history=False,
            )
            window.resize(1600, 1000)
            window.splitter.setSizes([270, 700, 630])
            window.show()
            while controller.state != "ready" or not controller.order:
                await asyncio.sleep(0.05)
            doc = controller.docs[controller.order[0]]
            while not doc.pages:
                await asyncio.sleep(0.05)
            window.run()
            while doc.pages[1].status is not PageStatus.DONE or controller.running:
                await asyncio.sleep(0.05)
            window.show_page(doc.id, 1)
            window.page_view.fit_page()
            await asyncio.sleep(1.5)  # image, figures and the web view's redraw
            target = next((b for b in window.page_view.boxes if b.index == 5), None)
            if target is not None:
                window._box_clicked(5)
            await asyncio.sleep(1.0)
            out.parent.mkdir(parents=True, exist_ok=True)
            screen = window.screen()
            shot = screen.grabWindow(window.winId()) if screen is not None else window.grab()
            if shot.isNull() or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
                shot = window.grab()
            shot.save(str(out))
            print(f"saved {out} ({shot.width()}x{shot.height()})")
            await controller.close()
            window.close()

    with loop:
        loop.run_until_complete(shoot())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
