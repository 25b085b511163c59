"""Issue 11, the queue a new user met, in the real window against the loopback OpenAI server:
quitting during a run asks first and the unfinished documents come back at the next start; a
removed document stays removed; "Clear finished documents"; Run again; one file queued once;
rows of files with one name show their folders and never share an export folder; an encrypted
PDF asks for its password; the whole engine error in the status's tooltip; "Open output folder"
says so when nothing could open it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMessageBox

from ocrdesk.engine import PageStatus
from ocrdesk.gui.queue_view import display_name, progress_text
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose
from tests.gui import conftest as gui_conftest
from tests.gui.conftest import arun, wait_until
from tests.gui.test_window import drop

# The box covers the "Page N" line of make_pdf (a box below it would leave it uncovered, and
# the retry would OCR that region again: more requests than pages).
TEXT = "<|ref|>text<|/ref|><|det|>[[100, 50, 900, 300]]<|/det|>\n" + prose(120)


class App:
    """Windows built the way `ocrdesk` builds them, one session after another, against one
    loopback server."""

    def __init__(self, qtbot: Any, settings: Any, server: FakeOpenAIServer) -> None:
        self.qtbot, self.settings, self.server = qtbot, settings, server
        self.open: list[tuple[Any, Any]] = []

    def start(self, files: Sequence[Path] = (), history: bool = True) -> tuple[Any, Any]:
        from ocrdesk.gui.app import build

        controller, window = build(
            [str(f) for f in files],
            server=self.server.url,
            settings=self.settings,
            history=history,
        )
        self.qtbot.addWidget(window)
        window.show()
        self.open.append((controller, window))
        arun(self.qtbot, wait_until(lambda: controller.state == "ready", what="engine ready"))
        return controller, window

    def quit(self, controller: Any, window: Any) -> None:
        """What the app does once its window has closed: the controller closes."""
        if window.isVisible():
            window.close_now()
        self.open.remove((controller, window))
        arun(self.qtbot, controller.close(), timeout=60)


@pytest.fixture
def app(qloop: Any, qtbot: Any, settings: Any) -> Iterator[App]:
    with FakeOpenAIServer([TEXT], token_delay=0.002) as server:
        app = App(qtbot, settings, server)
        yield app
        for controller, window in list(app.open):
            app.quit(controller, window)


def add(qtbot: Any, controller: Any, window: Any, path: Path) -> Any:
    before = len(controller.order)
    drop(window, [path])
    arun(qtbot, wait_until(lambda: len(controller.order) > before, what="queued"))
    item = controller.docs[controller.order[-1]]
    arun(qtbot, wait_until(lambda: item.page_count or item.error, what="opened"))
    return item


def run_to_end(qtbot: Any, controller: Any, window: Any, action: Any = None) -> None:
    (action.trigger if action is not None else window.run)()
    arun(qtbot, wait_until(lambda: controller.running, what="running"))
    arun(qtbot, wait_until(lambda: not controller.running, timeout=60, what="run over"))


def names(controller: Any) -> list[str]:
    return sorted(controller.docs[d].name for d in controller.order)


def named(controller: Any, name: str) -> Any:
    return next(i for i in controller.docs.values() if i.name == name)


def quit_box(window: Any) -> QMessageBox | None:
    boxes = [b for b in window.findChildren(QMessageBox, "quit-during-run") if b.isVisible()]
    assert len(boxes) <= 1
    return boxes[0] if boxes else None


def test_quit_during_a_run_asks_and_the_unfinished_queue_comes_back(
    app: App, qtbot: Any, tmp_path: Path
) -> None:
    app.settings.set("engine/concurrency", 1)
    long = make_pdf(tmp_path / "long.pdf", 12)
    later = make_pdf(tmp_path / "later.pdf", 2)
    gone = make_pdf(tmp_path / "gone.pdf", 2)
    controller, window = app.start([long, later, gone])
    arun(qtbot, wait_until(lambda: len(controller.order) == 3, what="queued"))
    arun(qtbot, wait_until(lambda: all(i.pages for i in controller.docs.values()), what="opened"))
    window.run()
    first = named(controller, "long.pdf")
    arun(qtbot, wait_until(lambda: first.done >= 1, timeout=30, what="a page done"))

    # Ctrl+Q asks; Cancel keeps the window and the run.
    window.quit_action.trigger()
    box = quit_box(window)
    assert box is not None and window.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert window.isVisible() and controller.running

    # Closing the window asks too; Quit closes it and the run stops, finished pages written.
    window.close()
    box = quit_box(window)
    assert box is not None
    box.button(QMessageBox.StandardButton.Yes).click()
    arun(qtbot, wait_until(lambda: not window.isVisible(), what="closed"))
    app.quit(controller, window)
    assert first.done < 12
    gone.unlink()

    controller, window = app.start()

    def queued() -> list[str]:  # what can run (an earlier session's export of gone.pdf cannot)
        return sorted(i.name for i in controller.docs.values() if not i.from_history)

    arun(qtbot, wait_until(lambda: queued() == ["later.pdf", "long.pdf"], what="queue back"))
    arun(qtbot, wait_until(lambda: all(i.pages for i in controller.docs.values()), what="opened"))
    again = named(controller, "long.pdf")
    assert len(again.pages) == 12 and again.done >= 1  # its finished pages are kept
    runnable = [i for i in controller.docs.values() if not i.from_history]
    left = sum(len(i.pages) - i.done for i in runnable)
    asked = len(app.server.requests)
    run_to_end(qtbot, controller, window)
    assert all(i.done == len(i.pages) for i in runnable)
    assert len(app.server.requests) - asked == left  # only the pages not done were asked for


def test_removed_stays_removed_and_clear_finished_keeps_exports(
    app: App, qtbot: Any, tmp_path: Path
) -> None:
    files = [make_pdf(tmp_path / f"{name}.pdf", 1) for name in ("one", "two", "three")]
    controller, window = app.start(files)
    arun(qtbot, wait_until(lambda: len(controller.order) == 3, what="queued"))
    arun(qtbot, wait_until(lambda: all(i.pages for i in controller.docs.values()), what="opened"))
    run_to_end(qtbot, controller, window)
    folders = [controller.docs[d].export.folder for d in controller.order]
    app.quit(controller, window)

    controller, window = app.start()
    arun(qtbot, wait_until(lambda: len(controller.order) == 3, what="history"))
    window.queue.select_doc(named(controller, "two.pdf").id)
    window.remove_action.trigger()
    assert names(controller) == ["one.pdf", "three.pdf"]
    app.quit(controller, window)

    controller, window = app.start()
    arun(qtbot, wait_until(lambda: len(controller.order) == 2, what="history"))
    assert names(controller) == ["one.pdf", "three.pdf"]  # two.pdf stays removed
    waiting = add(qtbot, controller, window, make_pdf(tmp_path / "waiting.pdf", 1))
    window.clear_finished_action.trigger()  # File > Clear finished documents
    assert names(controller) == ["waiting.pdf"] and waiting.id in controller.docs
    assert "2 finished" in window.statusBar().currentMessage()
    app.quit(controller, window)

    controller, window = app.start()
    arun(qtbot, wait_until(lambda: names(controller) == ["waiting.pdf"], what="queue back"))
    arun(qtbot, wait_until(lambda: named(controller, "waiting.pdf").pages, what="opened"))
    assert names(controller) == ["waiting.pdf"]  # history is loaded before the queue
    # never deleted: removing and clearing only hide them
    assert all(folder.is_dir() and (folder / "pages").is_dir() for folder in folders)


def test_run_again_and_one_file_is_queued_once(app: App, qtbot: Any, tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "report.pdf", 2)
    controller, window = app.start(history=False)
    item = add(qtbot, controller, window, path)
    run_to_end(qtbot, controller, window)
    assert item.done == 2

    drop(window, [path])  # again: refused, with a word
    arun(qtbot, wait_until(lambda: "already in the queue" in window.statusBar().currentMessage()))
    assert len(controller.order) == 1

    window.queue.select_doc(item.id)
    assert window.run_again_action.isEnabled()
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.run_again_action in run_menu.actions()
    asked = len(app.server.requests)
    folder = item.export.folder
    run_to_end(qtbot, controller, window, window.run_again_action)
    assert len(app.server.requests) - asked == 2 and item.done == 2
    assert item.export.folder == folder  # into its own folder, not a second one
    app.quit(controller, window)

    # An earlier session's document runs again too.
    controller, window = app.start()
    arun(qtbot, wait_until(lambda: controller.order, what="history"))
    old = controller.docs[controller.order[0]]
    arun(qtbot, wait_until(lambda: old.document is not None, what="source opened"))
    assert old.from_history
    window.queue.select_doc(old.id)
    asked = len(app.server.requests)
    run_to_end(qtbot, controller, window, window.run_again_action)
    assert len(app.server.requests) - asked == 2 and not old.from_history and old.done == 2


def test_rows_of_one_name_show_their_folders_and_write_two_folders(
    app: App, qtbot: Any, tmp_path: Path
) -> None:
    (tmp_path / "monday").mkdir()
    (tmp_path / "tuesday").mkdir()
    controller, window = app.start(history=False)
    first = add(qtbot, controller, window, make_pdf(tmp_path / "monday" / "page.pdf", 1))
    assert window.queue.queue_model.data(window.queue.queue_model.index(0)) == "page.pdf"
    run_to_end(qtbot, controller, window)
    second = add(qtbot, controller, window, make_pdf(tmp_path / "tuesday" / "page.pdf", 1))
    docs = list(controller.docs.values())
    assert display_name(first, docs) == "page.pdf — monday"
    assert display_name(second, docs) == "page.pdf — tuesday"
    model = window.queue.queue_model
    assert [model.data(model.index(r)) for r in range(2)] == [
        "page.pdf — monday",
        "page.pdf — tuesday",
    ]
    run_to_end(qtbot, controller, window)
    assert first.export.folder != second.export.folder
    window.queue.grab().save(str(tmp_path / "queue.png"))


def encrypted(path: Path) -> Path:
    doc = pymupdf.open()
    for number in (1, 2):
        doc.new_page().insert_text((72, 72), f"Secret page {number}", fontsize=18)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="sesame", owner_pw="owner")
    doc.close()
    return path


def password_dialog(qtbot: Any, window: Any) -> QInputDialog:
    def shown() -> QInputDialog | None:
        dialogs = [d for d in window.findChildren(QInputDialog, "pdf-password") if d.isVisible()]
        return dialogs[-1] if dialogs else None

    return arun(qtbot, wait_until(shown, what="password asked"))  # type: ignore[no-any-return]


def test_an_encrypted_pdf_asks_for_its_password(app: App, qtbot: Any, tmp_path: Path) -> None:
    controller, window = app.start(history=False)
    drop(window, [encrypted(tmp_path / "secret.pdf")])
    dialog = password_dialog(qtbot, window)
    assert dialog.textEchoMode() is QLineEdit.EchoMode.Password
    assert "secret.pdf" in dialog.labelText()
    item = controller.docs[controller.order[0]]
    assert item.page_count == 0 and item.error

    dialog.setTextValue("nope")
    dialog.accept()
    dialog = password_dialog(qtbot, window)  # asked again, and told why
    assert "Wrong password" in dialog.labelText()
    dialog.setTextValue("sesame")
    dialog.accept()
    arun(qtbot, wait_until(lambda: item.page_count == 2, what="opened with the password"))
    assert item.error is None
    run_to_end(qtbot, controller, window)
    assert item.done == 2 and item.count(PageStatus.FAILED) == 0

    # Cancelled, it stays in the queue and says what it needs, on its row and over its page
    # (not "page 1 of 0").
    drop(window, [encrypted(tmp_path / "other.pdf")])
    password_dialog(qtbot, window).reject()
    other = controller.docs[controller.order[-1]]
    assert other.error == "encrypted: needs its password" and other.page_count == 0
    window.queue.select_doc(other.id)
    assert window.current == (other.id, 1)
    assert window.page_label.text() == "locked: password needed"
    assert not window.page_view.has_page()  # no blank sheet that would read as an empty page
    blocks, _, _ = window._result_source(other.id, 1)  # what the result view shows
    assert "Double-click its row" in blocks[0].text
    assert progress_text(other) == "locked: double-click to give its password"
    window.run()  # the other one is done: Run says why there is nothing to do
    said = window.statusBar().currentMessage
    arun(qtbot, wait_until(lambda: said().startswith("nothing to convert"), what="Run's answer"))
    assert window.statusBar().currentMessage() == (
        "nothing to convert: other.pdf is locked (double-click its row to give its password)"
    )
    # Asked again: a double-click on its row, or Unlock… (in its menu and the File menu).
    row = window.queue.visualRect(window.queue.queue_model.index(controller.order.index(other.id)))
    # What a person's double-click sends: a click, then the double click.
    QTest.mouseClick(window.queue.viewport(), Qt.MouseButton.LeftButton, pos=row.center())
    QTest.mouseDClick(window.queue.viewport(), Qt.MouseButton.LeftButton, pos=row.center())
    dialog = password_dialog(qtbot, window)
    assert "other.pdf" in dialog.labelText()
    dialog.reject()
    # The double click's release went to the dialog it opened: without one here Qt holds the
    # button as pressed, and the next tests' pointer enters no widget.
    QTest.mouseRelease(window.queue.viewport(), Qt.MouseButton.LeftButton, pos=row.center())
    assert window.unlock_action.isEnabled()
    window.unlock_action.trigger()
    dialog = password_dialog(qtbot, window)
    window.unlock_action.trigger()  # one question at a time
    assert len([d for d in window.findChildren(QInputDialog, "pdf-password") if d.isVisible()]) == 1
    dialog.setTextValue("sesame")
    dialog.accept()
    arun(qtbot, wait_until(lambda: other.page_count == 2, what="opened when asked again"))
    assert window.page_label.text().startswith("page 1 of 2")
    arun(qtbot, wait_until(window.page_view.has_image, what="its first page drawn"))
    assert window.page_view.has_page()
    assert "stays locked" not in window.statusBar().currentMessage()
    assert not window.unlock_action.isEnabled()


def test_the_whole_engine_error_is_in_the_status_tooltip(app: App) -> None:
    controller, window = app.start(history=False)
    long = "the server said: " + "a very long reason, " * 40 + "the end"
    controller.no_engine(long)
    assert "the end" not in window.engine_label.text()  # elided in the tool bar
    assert "the end" in window.engine_label.toolTip()


def test_open_output_folder_says_so_when_nothing_opens_it(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, window = app.start(history=False)
    # No launcher: offscreen Qt has none (and says so), and under xcb PATH has no xdg-open.
    said = re.compile(r"^This plugin does not support QPlatformServices::openDocument\(\) for ")
    monkeypatch.setattr(gui_conftest, "_ALLOWED", [*gui_conftest._ALLOWED, said])
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    window.open_output()
    message = window.statusBar().currentMessage()
    assert "could open" in message and str(app.settings.get("output/folder")) in message


# -- item 5: a pasted image is kept as a file of its own document, in its export folder, so its
# JSON names a file, its layout PDF is written and history shows it on its image after a restart


def test_a_pasted_image_is_a_file_of_its_own_document(app: App, qtbot: Any) -> None:
    controller, window = app.start(history=False)
    image = QImage(320, 200, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    QGuiApplication.clipboard().setImage(image)
    QTest.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    arun(qtbot, wait_until(lambda: controller.order, what="pasted"))
    item = controller.docs[controller.order[0]]
    arun(qtbot, wait_until(lambda: item.page_count == 1, what="opened"))
    kept = Path(item.source)
    assert kept.is_file() and kept.name == item.name and kept.read_bytes()[:4] == b"\x89PNG"
    run_to_end(qtbot, controller, window)
    folder = item.export.folder
    assert kept.parent == folder  # in its own export folder
    data = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
    assert data["source"] == str(kept)
    assert (folder / f"{folder.name}.layout.pdf").is_file()
    app.quit(controller, window)

    controller, window = app.start()  # history brings it back with its image
    arun(qtbot, wait_until(lambda: controller.order, what="history"))
    again = controller.docs[controller.order[0]]
    assert again.name == kept.name and again.source == str(kept)
    arun(qtbot, wait_until(lambda: again.document is not None, what="image reopened"))
    app.quit(controller, window)
