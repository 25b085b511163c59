"""A pasted image after a restart (issue 11, item 5): history brings it back on its image, the
export the dialog makes writes its layout PDF (it said "Exported 1 document(s)" and left it out),
and Run again reads it again from its kept file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymupdf
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtTest import QTest

from ocrdesk.engine import PageStatus
from tests.gui.conftest import arun, wait_until
from tests.gui.test_new_user_queue import App, app, run_to_end  # noqa: F401  (app: fixture)

SIZE = (320, 200)


def paste_and_run(session: App, qtbot: Any) -> Path:
    """A session that pastes an image, converts it and quits; the image's kept file."""
    controller, window = session.start(history=False)
    image = QImage(*SIZE, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    QGuiApplication.clipboard().setImage(image)
    QTest.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    arun(qtbot, wait_until(lambda: controller.order, what="pasted"))
    item = controller.docs[controller.order[0]]
    arun(qtbot, wait_until(lambda: item.page_count == 1, what="opened"))
    run_to_end(qtbot, controller, window)
    assert item.pages[1].status is PageStatus.DONE
    assert isinstance(item.source, str), "the pasted image is kept as bytes only"
    kept = Path(item.source)
    assert kept.is_file()
    session.quit(controller, window)
    return kept


def test_a_pasted_image_exports_and_runs_again_after_a_restart(
    app: App,  # noqa: F811  (the fixture imported above)
    qtbot: Any,
    tmp_path: Path,
) -> None:
    kept = paste_and_run(app, qtbot)
    controller, window = app.start()  # the next session: history brings the image back
    arun(qtbot, wait_until(lambda: controller.order, what="history"))
    item = controller.docs[controller.order[0]]
    assert item.source == str(kept)
    arun(qtbot, wait_until(lambda: item.document is not None, what="image reopened"))

    # Export, as the dialog's OK does it, into another folder
    target = tmp_path / "exported"
    folders = arun(qtbot, window.export_to([item.id], target))
    assert window.statusBar().currentMessage() == f"Exported 1 document(s) to {target}"
    (folder,) = folders
    layout = folder / f"{folder.name}.layout.pdf"
    assert layout.is_file(), sorted(p.name for p in folder.iterdir())
    with pymupdf.open(layout) as pdf:
        assert pdf.page_count == 1
        assert pdf[0].get_images(), "the layout page shows no image"
    data = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
    assert data["source"] == str(kept) and Path(data["source"]).is_file()

    # Run again: the page is read again, from the kept image
    asked = len(app.server.requests)
    window.queue.select_doc(item.id)
    assert window.run_again_action.isEnabled()
    run_to_end(qtbot, controller, window, window.run_again_action)
    assert len(app.server.requests) == asked + 1
    assert app.server.requests[-1]["_image_bytes"] > 0
    assert item.pages[1].status is PageStatus.DONE
    assert (item.pages[1].result.width, item.pages[1].result.height) == SIZE
    app.quit(controller, window)
