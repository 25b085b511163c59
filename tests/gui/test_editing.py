"""Correcting a finished page in the real window, against the loopback OpenAI server: each block
action from its key, menu entry or dialog, its undo and its redo, each kept on disk at once
(pages/NNNN.edits.json) and in the rebuilt export files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QShortcut
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ocrdesk.engine.edits import EditStore
from ocrdesk.engine.results import BlockSource
from tests.engine.helpers import make_pdf
from tests.gui.conftest import WAIT_SECONDS, arun, js, wait_until
from tests.gui.test_result_render import convert

ALT = Qt.KeyboardModifier.AltModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
NONE = Qt.KeyboardModifier.NoModifier
BODY = "document.getElementById('c').innerText"

#: Four blocks one below the other (none overlaps another).
GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 40, 900, 110]]<|/det|>\n# Heading of the page\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 200, 900, 330]]<|/det|>\nThe first paragraph.\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 420, 900, 560]]<|/det|>\nThe second paragraph.\n\n"
    "<|ref|>table<|/ref|><|det|>[[100, 650, 900, 880]]<|/det|>\n"
    "<table><tr><td>cell a</td><td>cell b</td></tr></table>\n"
)


def texts(item: Any, number: int = 1) -> list[str]:
    return [b.text for b in item.pages[number].result.blocks]


def stored(item: Any, number: int = 1) -> list[str] | None:
    """The page's edited texts as the EditStore has them on disk (None: no edits)."""
    blocks = EditStore(item.export.folder).load(number)
    return None if blocks is None else [b.text for b in blocks]


def shown(window: Any, qtbot: Any, text: str) -> None:
    """Wait until the result view shows `text`."""

    async def check() -> None:
        await wait_until_js(window.result_view, lambda body: text in body)

    arun(qtbot, check())


async def wait_until_js(view: Any, predicate: Any, timeout: float = 30) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await js(view, BODY)
        if predicate(body or ""):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the view shows {body!r}")
        await asyncio.sleep(0.05)


def key(window: Any, qtbot: Any, code: Qt.Key, modifiers: Any = NONE) -> None:
    """Press a key in the window, once it is the active window again (shortcuts need that; a
    dialog that closed gives the activation back a moment later)."""
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=WAIT_SECONDS * 1000)
    QTest.keyClick(window, code, modifiers)


def undo_redo(window: Any, qtbot: Any, item: Any, before: list[str], after: list[str]) -> None:
    """Ctrl+Z brings back `before`, Ctrl+Shift+Z `after` again."""
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert texts(item) == before
    key(window, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert texts(item) == after


def saved(qtbot: Any, item: Any, expected: list[str] | None) -> None:
    arun(qtbot, wait_until(lambda: stored(item) == expected, what=f"edits on disk: {expected}"))


def mouse(view: Any, kind: QEvent.Type, scene: tuple[float, float], modifiers: Any = NONE) -> None:
    """A left-button mouse event at page pixel `scene` of the page view."""
    pos = QPointF(view.mapFromScene(QPointF(*scene)))
    viewport = view.viewport()
    buttons = (
        Qt.MouseButton.NoButton
        if kind == QEvent.Type.MouseButtonRelease
        else Qt.MouseButton.LeftButton
    )
    event = QMouseEvent(
        kind,
        pos,
        QPointF(viewport.mapToGlobal(pos.toPoint())),
        Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton,
        buttons,
        modifiers,
    )
    QApplication.sendEvent(viewport, event)


def drag(
    view: Any, start: tuple[float, float], end: tuple[float, float], modifiers: Any = NONE
) -> None:
    mouse(view, QEvent.Type.MouseButtonPress, start, modifiers)
    steps = 4
    for k in range(1, steps + 1):
        point = (
            start[0] + (end[0] - start[0]) * k / steps,
            start[1] + (end[1] - start[1]) * k / steps,
        )
        mouse(view, QEvent.Type.MouseMove, point, modifiers)
    mouse(view, QEvent.Type.MouseButtonRelease, end, modifiers)


def first_box(item: Any, index: int) -> tuple[float, ...]:
    return tuple(item.pages[1].result.blocks[index].boxes[0])


def test_edit_text_with_preview_confirm_cancel_undo_redo(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "edit.pdf", 1))
    original = texts(item)
    assert not window.undo_action.isEnabled()

    # double-click the second box: the editor opens on its block
    window.page_view.boxActivated.emit(1)
    dialog = window.block_editor
    assert dialog.text_edit.toPlainText() == "The first paragraph."
    arun(qtbot, wait_until(lambda: dialog.preview.ready, what="preview loaded"))
    dialog.text_edit.setPlainText("The first paragraph, **corrected**.")
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog, timeout=WAIT_SECONDS * 1000)

    async def preview() -> None:
        await wait_until_js(dialog.preview, lambda body: "corrected" in body and "**" not in body)

    arun(qtbot, preview())  # rendered markdown, live
    QTest.keyClick(dialog.text_edit, Qt.Key.Key_Return, CTRL)
    assert texts(item)[1] == "The first paragraph, **corrected**."
    assert item.pages[1].result.blocks[1].source is BlockSource.EDITED
    assert "corrected" in item.pages[1].result.markdown
    shown(window, qtbot, "The first paragraph, corrected.")
    saved(qtbot, item, texts(item))
    assert "edited" in window.page_label.text()
    edited_texts = texts(item)

    # a double-click on a block's text in the result view opens the editor on it too
    dialog_one = dialog
    arun(
        qtbot,
        js(
            window.result_view,
            "document.querySelector('[data-block=\"2\"]')"
            ".dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))",
        ),
    )
    qtbot.waitUntil(lambda: window.block_editor is not dialog_one, timeout=WAIT_SECONDS * 1000)
    from_text = window.block_editor
    assert from_text.text_edit.toPlainText() == "The second paragraph."
    assert window.page_view.highlighted == 2
    from_text.reject()

    # Esc leaves the block as it is
    window.edit_block(2)
    cancelled = window.block_editor
    cancelled.text_edit.setPlainText("never kept")
    qtbot.waitUntil(lambda: QApplication.activeWindow() is cancelled, timeout=WAIT_SECONDS * 1000)
    QTest.keyClick(cancelled.text_edit, Qt.Key.Key_Escape)
    assert not cancelled.isVisible() and texts(item) == edited_texts

    assert window.undo_action.isEnabled() and "Edit block" in window.undo_action.text()
    undo_redo(window, qtbot, item, original, edited_texts)
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    saved(qtbot, item, None)  # back to the model's page: no edits kept
    assert "edited" not in window.page_label.text()
    shown(window, qtbot, "The first paragraph.")


def test_label_delete_merge_split_move_each_undone_and_redone(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "blocks.pdf", 1))
    original = texts(item)
    view = window.page_view

    # label: from the box's menu entry, in a dialog
    window._box_clicked(2)
    window.label_action.trigger()
    dialog = window.label_dialog
    dialog.setTextValue("sub_title")
    dialog.accept()
    assert [b.label for b in item.pages[1].result.blocks][2] == "sub_title"
    assert {b.label for b in view.boxes if b.index == 2} == {"sub_title"}
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert item.pages[1].result.blocks[2].label == "text"
    key(window, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert item.pages[1].result.blocks[2].label == "sub_title"
    saved(qtbot, item, original)  # the texts are the model's; the label is an edit

    # move down (Alt+Down), then up again
    window._box_clicked(1)
    key(window, qtbot, Qt.Key.Key_Down, ALT)
    moved = [original[0], original[2], original[1], original[3]]
    assert texts(item) == moved and view.highlighted == 2
    undo_redo(window, qtbot, item, original, moved)
    key(window, qtbot, Qt.Key.Key_Z, CTRL)

    # merge with next (Ctrl+J)
    window._box_clicked(1)
    key(window, qtbot, Qt.Key.Key_J, CTRL)
    merged = [original[0], f"{original[1]}\n\n{original[2]}", original[3]]
    assert texts(item) == merged
    assert len({b.index for b in view.boxes}) == 3
    undo_redo(window, qtbot, item, original, merged)
    key(window, qtbot, Qt.Key.Key_Z, CTRL)

    # split at the cursor (Ctrl+Shift+J opens the editor; the split button cuts at the cursor,
    # as Ctrl+Shift+Enter does: a key sent to a dialog of a loaded offscreen session can reach
    # it before it is the active window, so the button is what the test presses)
    window._box_clicked(1)
    key(window, qtbot, Qt.Key.Key_J, CTRL | SHIFT)
    editor = window.block_editor
    editor.put_cursor(len("The first"))
    split_keys = {s.key().toString() for s in editor.findChildren(QShortcut)}
    assert {"Ctrl+Shift+Return", "Ctrl+Shift+Enter"} <= split_keys
    editor.split_button.click()
    parts = [original[0], "The first", "paragraph.", original[2], original[3]]
    assert texts(item) == parts
    top, bottom = first_box(item, 1), first_box(item, 2)
    assert top[3] == bottom[1] and top[1] < top[3] < bottom[3]
    undo_redo(window, qtbot, item, original, parts)
    key(window, qtbot, Qt.Key.Key_Z, CTRL)

    # delete: Del while the page has the focus deletes the highlighted block, not the document
    window._box_clicked(3)
    view.setFocus()
    key(window, qtbot, Qt.Key.Key_Delete)
    assert texts(item) == original[:3] and controller.order == [item.id]
    assert view.highlighted is None
    undo_redo(window, qtbot, item, original, original[:3])
    saved(qtbot, item, original[:3])
    shown(window, qtbot, "The second paragraph.")

    # the box's context menu offers every correction
    menu = window.block_menu(0)
    entries = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert "&Edit block…" in entries and "&Delete block" in entries
    assert "OCR a &region" in entries and "&OCR page again…" in entries
    assert view.highlighted == 0 and not window.move_up_action.isEnabled()
    menu.deleteLater()


def test_drag_moves_and_edges_resize_a_box(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "drag.pdf", 1))
    view = window.page_view
    arun(qtbot, wait_until(lambda: view.boxes and view.editable, what="boxes"))
    x1, y1, x2, y2 = first_box(item, 1)
    centre = ((x1 + x2) / 2, (y1 + y2) / 2)
    drag(view, centre, (centre[0] + 30, centre[1] + 60))
    nx1, ny1, nx2, ny2 = first_box(item, 1)
    assert (nx1 - x1, ny1 - y1) == pytest.approx((nx2 - x2, ny2 - y2))  # the same size, moved
    assert abs(nx1 - x1 - 30) < 3 and abs(ny1 - y1 - 60) < 3
    assert item.pages[1].result.blocks[1].source is BlockSource.EDITED
    assert window.undo_action.text().endswith("Move box")
    moved = first_box(item, 1)

    # the bottom-right corner: a resize
    drag(view, (moved[2], moved[3]), (moved[2] - 100, moved[3] + 40))
    rx1, ry1, rx2, ry2 = first_box(item, 1)
    assert (rx1, ry1) == (moved[0], moved[1])
    assert abs(rx2 - (moved[2] - 100)) < 3 and abs(ry2 - (moved[3] + 40)) < 3
    box_items = [b for b in view.boxes if b.index == 1]
    assert box_items[0].rect().getCoords() == (rx1, ry1, rx2, ry2)

    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert first_box(item, 1) == moved
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert first_box(item, 1) == (x1, y1, x2, y2)
    key(window, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert first_box(item, 1) == moved

    def on_disk() -> bool:  # kept at 0.1 px, as the journal keeps boxes
        blocks = EditStore(item.export.folder).load(1)
        return blocks is not None and blocks[1].boxes[0] == pytest.approx(moved, abs=0.06)

    arun(qtbot, wait_until(on_disk, what="the moved box on disk"))


def test_the_keyboard_moves_and_resizes_a_box(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "keys.pdf", 1))
    view = window.page_view
    arun(qtbot, wait_until(lambda: view.boxes and view.editable, what="boxes"))
    width, height = view.page_size
    window._box_clicked(2)
    x1, y1, x2, y2 = first_box(item, 2)
    window.activateWindow()
    view.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view, timeout=WAIT_SECONDS * 1000)
    QTest.keyClick(view, Qt.Key.Key_Right, SHIFT)  # Shift+arrow: the box moves
    QTest.keyClick(view, Qt.Key.Key_Down, SHIFT)
    step_x, step_y = 0.005 * width, 0.005 * height
    assert first_box(item, 2) == pytest.approx((x1 + step_x, y1 + step_y, x2 + step_x, y2 + step_y))
    QTest.keyClick(view, Qt.Key.Key_Left, CTRL | SHIFT)  # Ctrl+Shift+arrow: its right edge
    assert first_box(item, 2) == pytest.approx((x1 + step_x, y1 + step_y, x2, y2 + step_y))
    assert window.undo_action.text().endswith("Resize box")
    for _ in range(3):
        QTest.keyClick(view, Qt.Key.Key_Z, CTRL)
    assert first_box(item, 2) == (x1, y1, x2, y2)
    # away from the page, Shift+Down is the queue's again: no box moves
    window.queue.setFocus()
    QTest.keyClick(window.queue, Qt.Key.Key_Down, SHIFT)
    assert first_box(item, 2) == (x1, y1, x2, y2)
