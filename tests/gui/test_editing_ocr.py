"""A region drawn on the page, or the whole page, OCRed again from the window against the loopback
server: the crop sent has the drawn size, the answer's boxes land where the region is in page
pixels, its blocks go into the reading order there (replacing the blocks under it when asked),
and each is one undoable step."""

from __future__ import annotations

import base64
import contextlib
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from ocrdesk.engine import Asked, EditStore, Task
from ocrdesk.engine.regions import crop
from ocrdesk.engine.results import BlockSource
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, open_window, wait_until
from tests.gui.test_editing import GROUNDED, NONE, SHIFT, drag, key, texts
from tests.gui.test_result_render import convert

CTRL = Qt.KeyboardModifier.ControlModifier
REGION_ANSWER = "<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\nA line the model missed.\n"
FREE_ANSWER = "The whole page read again as plain text."


class Answers:
    """The server's answers: the page's grounded output for a whole page, REGION_ANSWER for a
    crop; it keeps the size of every image it was sent."""

    def __init__(self, page_size: tuple[int, int] = (1190, 1684)) -> None:
        self.page_size = page_size
        self.sizes: list[tuple[int, int]] = []
        self.prompts: list[str] = []
        self.free = False  # answer whole pages with FREE_ANSWER
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        content = body["messages"][0]["content"]
        url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        with self._lock:
            self.sizes.append(image.size)
            self.prompts.append(next(p["text"] for p in content if p["type"] == "text"))
        if image.size != self.page_size:
            return REGION_ANSWER
        return FREE_ANSWER if self.free else GROUNDED


@pytest.fixture
def answering(qloop: Any, qtbot: Any, settings: Any) -> Iterator[Callable[..., Any]]:
    """answering(answers) -> (controller, window) against a loopback server of its own that
    answers with `answers(request body)`; all closed afterwards."""
    with contextlib.ExitStack() as servers:
        controllers: list[Any] = []

        def launch(answers: Answers) -> tuple[Any, Any]:
            server = servers.enter_context(FakeOpenAIServer(answers))
            controller, window = open_window(qtbot, settings, server.url)
            controllers.append(controller)
            return controller, window

        yield launch
        for controller in controllers:
            arun(qtbot, controller.close())


def region_ocr(
    qtbot: Any, window: Any, region: tuple[float, ...], task: Task, modifiers: Any = SHIFT
) -> Any:
    """Shift+drag (or drag with `modifiers`) `region` on the page and choose `task` in the
    dialog that asks; the dialog, with the region the page view drew (`drawn`: the pointer
    lands on whole screen pixels)."""
    x1, y1, x2, y2 = region
    drawn: list[tuple[float, ...]] = []
    window.page_view.regionDrawn.connect(drawn.append)
    drag(window.page_view, (x1, y1), (x2, y2), modifiers)
    window.page_view.regionDrawn.disconnect(drawn.append)
    assert len(drawn) == 1 and drawn[0] == pytest.approx(region, abs=3)
    dialog = window.ocr_dialog
    dialog.drawn = drawn[0]
    assert window.page_view.region_shown() == pytest.approx(drawn[0])  # outlined while asked
    assert dialog.objectName() == "ocr-region"
    dialog.set_task(task)
    return dialog


def wait_ocr(qtbot: Any, window: Any) -> None:
    arun(qtbot, wait_until(lambda: not window.ocr_tasks, what="the OCR answered"))


def test_a_region_in_empty_space_is_ocred_and_placed_in_reading_order(
    answering: Any, qtbot: Any, tmp_path: Path
) -> None:
    answers = Answers()
    controller, window = answering(answers)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "region.pdf", 1))
    result = item.pages[1].result
    assert (result.width, result.height) == answers.page_size
    original = texts(item)
    arun(qtbot, wait_until(lambda: window.page_view.editable, what="editable"))

    # between the second paragraph (ends at y 962) and the table (starts at y 1116)
    region = (200.0, 975.0, 800.0, 1100.0)
    dialog = region_ocr(qtbot, window, region, Task.OCR)
    assert not dialog.replace_box.isVisible()  # nothing under it to replace
    dialog.chosen.emit(dialog.choice())
    dialog.accept()
    wait_ocr(qtbot, window)
    assert window.page_view.region_shown() is None

    # the crop sent is the region drawn, with crop()'s margin around it
    page = Image.new("RGB", answers.page_size)
    piece, placed = crop(page, dialog.drawn)
    assert answers.sizes[-1] == piece.size
    margin = 0.01 * max(answers.page_size)
    assert piece.size[0] == pytest.approx(600 + 2 * margin, abs=2)
    assert piece.size[1] == pytest.approx(125 + 2 * margin, abs=2)
    assert "Locate" not in answers.prompts[-1]

    # the answer's box (the whole crop) is the crop's place on the page, in reading order
    assert texts(item) == [*original[:3], "A line the model missed.", original[3]]
    new = item.pages[1].result.blocks[3]
    assert new.source is BlockSource.REGION
    assert new.boxes[0] == pytest.approx(placed, abs=1.5)
    assert [b.rect().getCoords() for b in window.page_view.boxes if b.index == 3] == [
        pytest.approx(new.boxes[0])
    ]
    assert window.page_view.highlighted == 3
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert texts(item) == original
    key(window, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert texts(item)[3] == "A line the model missed."
    # the model's answer as received is in the journal beside the edits, undo or not
    (kept,) = EditStore(item.export.folder).requests(1)
    assert kept.asked is Asked.REGION and kept.task == Task.OCR.value
    assert kept.box == pytest.approx(dialog.drawn, abs=0.1)
    assert "A line the model missed." in kept.raw


def test_a_region_over_blocks_offers_to_replace_them(
    answering: Any, qtbot: Any, tmp_path: Path
) -> None:
    answers = Answers()
    controller, window = answering(answers)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "replace.pdf", 1))
    original = texts(item)
    arun(qtbot, wait_until(lambda: window.page_view.editable, what="editable"))

    # around the first paragraph (box 119..1071 x 337..567)
    dialog = region_ocr(qtbot, window, (110.0, 330.0, 1080.0, 580.0), Task.FREE)
    assert dialog.replace_box.isVisible() and dialog.replace_box.isChecked()
    assert "1 block" in dialog.replace_box.text()
    dialog._accept()
    wait_ocr(qtbot, window)
    assert texts(item) == [original[0], "A line the model missed.", *original[2:]]
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert texts(item) == original

    # a plain drag pans the page until region mode (Edit > OCR a region) is on
    plain: list[tuple[float, ...]] = []
    window.page_view.regionDrawn.connect(plain.append)
    drag(window.page_view, (50.0, 1600.0), (400.0, 1650.0), NONE)
    window.page_view.regionDrawn.disconnect(plain.append)
    assert plain == [] and texts(item) == original
    key(window, qtbot, Qt.Key.Key_B, CTRL | SHIFT)
    assert window.region_action.isChecked() and window.page_view.region_mode

    # the same region without replacing: both stay, the new one beside the old
    dialog = region_ocr(qtbot, window, (110.0, 330.0, 1080.0, 580.0), Task.FREE, NONE)
    dialog.replace_box.setChecked(False)
    dialog._accept()
    wait_ocr(qtbot, window)
    assert len(texts(item)) == 5 and "A line the model missed." in texts(item)
    assert original[1] in texts(item)


def test_the_page_ocred_again_with_another_task_stays_one_undo_away(
    answering: Any, qtbot: Any, tmp_path: Path
) -> None:
    answers = Answers()
    controller, window = answering(answers)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "again.pdf", 1))
    original = texts(item)
    arun(qtbot, wait_until(lambda: window.ocr_page_action.isEnabled(), what="can OCR again"))
    answers.free = True
    window.ocr_page_action.trigger()
    dialog = window.ocr_dialog
    assert dialog.objectName() == "ocr-page-again" and dialog.task() is Task.MARKDOWN
    dialog.set_task(Task.FREE)
    dialog._accept()
    wait_ocr(qtbot, window)
    assert answers.sizes[-1] == answers.page_size  # the whole page was sent
    assert texts(item) == [FREE_ANSWER]
    assert window.undo_action.text().endswith("OCR page again (Free OCR)")
    assert item.pages[1].result.raw == GROUNDED  # what the model said first is kept
    key(window, qtbot, Qt.Key.Key_Z, CTRL)
    assert texts(item) == original
    key(window, qtbot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert texts(item) == [FREE_ANSWER]
