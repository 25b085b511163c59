"""Save docs/editing.png: a real lecture page corrected in the window (the block editor with its
live preview over the page, the block's box highlighted), and, beside it in `--all` mode, the
other editing states (a region drawn to OCR again, a box resized) for a person to look at.

    xvfb-run -a python -m ocrdesk.gui.editing_screenshot [--all OUT_DIR]   # web views render
    QT_QPA_PLATFORM=offscreen python -m ocrdesk.gui.editing_screenshot     # previews blank

The page is replayed by the loopback test server (tests/fakes) with its real DeepSeek-OCR output,
so its boxes land on its own text.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PAGE = "lecture-015"
EDITED_BLOCK = 4  # "Q: rationale Zahlen {m/n | ...}": a formula in the preview


def _grab(window: Any, out: Path) -> None:
    """The screen where the window is (its dialogs included), or the window alone offscreen."""
    screen = window.screen()
    shot = None
    if screen is not None and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        frame = window.frameGeometry()
        shot = screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
    if shot is None or shot.isNull():
        shot = window.grab()
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.save(str(out))
    print(f"saved {out} ({shot.width()}x{shot.height()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "editing.png")
    parser.add_argument("--all", type=Path, default=None, help="also save every state here")
    args = parser.parse_args(argv)
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox")  # CI containers only
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    sys.path.insert(0, str(REPO))
    import qasync
    from PySide6 import QtWebEngineWidgets  # noqa: F401
    from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from ocrdesk.engine import PageStatus, Task
    from ocrdesk.gui.app import build, install_asyncgen_hooks
    from ocrdesk.gui.settings import Settings
    from tests.fakes.openai_server import PAGES_DIR, FakeOpenAIServer

    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_asyncgen_hooks(loop)
    tmp = Path(tempfile.mkdtemp(prefix="ocrdesk-edit-shot-"))
    settings = Settings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    settings.set("output/folder", str(tmp / "out"))
    settings.set("run/task", Task.MARKDOWN.value)
    raw = (PAGES_DIR / f"{PAGE}.raw.txt").read_text(encoding="utf-8")

    def mouse(view: Any, kind: QEvent.Type, scene: tuple[float, float]) -> None:
        pos = QPointF(view.mapFromScene(QPointF(*scene)))
        buttons = (
            Qt.MouseButton.NoButton
            if kind == QEvent.Type.MouseButtonRelease
            else Qt.MouseButton.LeftButton
        )
        event = QMouseEvent(
            kind,
            pos,
            QPointF(view.viewport().mapToGlobal(pos.toPoint())),
            Qt.MouseButton.LeftButton,
            buttons,
            Qt.KeyboardModifier.ShiftModifier,
        )
        QApplication.sendEvent(view.viewport(), event)

    async def shoot() -> None:
        with FakeOpenAIServer([raw], token_delay=0.0005, tokens_per_chunk=4) as server:
            controller, window = build(
                [str(PAGES_DIR / f"{PAGE}.jpg")],
                server=server.url,
                settings=settings,
                history=False,
            )
            window.resize(1600, 1000)
            window.splitter.setSizes([230, 760, 610])
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
            await asyncio.sleep(1.5)
            view = window.page_view

            # a region drawn (Shift+drag) over the figure, and the dialog that asks how
            result = doc.pages[1].result
            assert result is not None
            if args.all is not None:
                blocks = result.blocks
                figure = next(b for b in blocks if b.label == "image").boxes[0]
                x1, y1, x2, y2 = figure
                mouse(view, QEvent.Type.MouseButtonPress, (x1 - 10, y1 - 10))
                mouse(view, QEvent.Type.MouseMove, (x2 + 10, y2 + 10))
                await asyncio.sleep(0.5)
                _grab(window, args.all / "editing-region-drawing.png")
                mouse(view, QEvent.Type.MouseButtonRelease, (x2 + 10, y2 + 10))
                await asyncio.sleep(1.0)
                _grab(window, args.all / "editing-region-dialog.png")
                window.ocr_dialog.reject()
                # a box made wider by its right edge
                window._box_clicked(6)
                target = blocks[6].boxes[0]
                window._box_moved(6, 0, (target[0], target[1], target[2] + 120, target[3]))
                await asyncio.sleep(1.0)
                _grab(window, args.all / "editing-box-resized.png")
                window.undo_action.trigger()

            # the block editor over the page: a formula retyped, its preview live
            window._box_clicked(EDITED_BLOCK)
            window.edit_block()
            editor = window.block_editor
            text = editor.text_edit.toPlainText()
            editor.text_edit.setPlainText(
                text.replace("rationale Zahlen", "rationale Zahlen (Brüche)")
            )
            editor.put_cursor(len(editor.text_edit.toPlainText()))
            # beside the page, over the result view, so that the block's box shows
            frame = window.frameGeometry()
            editor.resize(760, 520)
            editor.move(frame.right() - 780, frame.top() + 330)
            for _ in range(100):
                if editor.preview.ready and editor.preview.redraws:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)
            print(f"preview ready {editor.preview.ready}, redraws {editor.preview.redraws}")
            _grab(window, args.out)
            if args.all is not None:
                editor.confirm()
                await asyncio.sleep(1.5)
                _grab(window, args.all / "editing-after-edit.png")
            await controller.close()
            window.close()

    with loop:
        loop.run_until_complete(shoot())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
