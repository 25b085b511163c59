"""Rotate page left / right (View menu, Ctrl+Left / Ctrl+Right; issue 11, "expected of a tool of
this kind"): the page shown and its thumbnail turn at once, the turn is kept with the document's
export folder (so a window opened later shows it turned), and a page read already that is turned
says it is to be read again, until it is turned back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

from ocrdesk.engine import Rotation, RotationStore, turn_image
from ocrdesk.engine.export import draw_layout
from ocrdesk.gui.library import ExportOutcome
from ocrdesk.gui.main_window import STALE_TEXT
from ocrdesk.gui.thumbnails import ImageRole
from tests.fakes.openai_server import PAGES_DIR
from tests.gui.conftest import arun, wait_until
from tests.gui.test_editing_kept import served  # noqa: F401  (the fixture)
from tests.gui.test_page_actions import run_all
from tests.gui.test_run_control import add

LECTURE = "lecture-006"


def _sideways(tmp_path: Path) -> Path:
    """A real lecture page lying on its side (turned anticlockwise), 990 x 1760 px."""
    upright = Image.open(PAGES_DIR / f"{LECTURE}.jpg").convert("RGB").resize((1760, 990))
    path = tmp_path / "sideways.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(path)
    return path


def _shown(window: Any) -> tuple[int, int]:
    pixmap = window.page_view._pixmap.pixmap()
    return pixmap.width(), pixmap.height()


def _thumb(window: Any, number: int) -> Any:
    model = window.thumbs._model
    return model.data(model.index(number - 1, 0), ImageRole)


def test_rotate_right_turns_the_page_and_its_thumbnail_and_is_kept(
    served: Any,  # noqa: F811
    qtbot: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    raw = (PAGES_DIR / f"{LECTURE}.raw.txt").read_text(encoding="utf-8")
    controller, window, _server = served([raw])
    item = add(qtbot, controller, window, _sideways(tmp_path))
    window.show_page(item.id, 1)
    arun(qtbot, wait_until(lambda: _shown(window) == (990, 1760), what="the page as it lies"))
    arun(qtbot, wait_until(lambda: _thumb(window, 1) is not None, what="its thumbnail"))
    assert _thumb(window, 1).width() < _thumb(window, 1).height()

    QTest.keySequence(window, QKeySequence("Ctrl+Right"))
    arun(qtbot, wait_until(lambda: _shown(window) == (1760, 990), what="the page turned"))
    assert window.page_view.page_size == (1760, 990)
    arun(
        qtbot,
        wait_until(
            lambda: (
                _thumb(window, 1) is not None
                and _thumb(window, 1).width() > _thumb(window, 1).height()
            ),
            what="the thumbnail turned",
        ),
    )
    assert window.page_turn(item.id, 1) is Rotation.RIGHT
    # Kept in the folder the document's export goes to, before any run.
    store = RotationStore(item.home, str(item.source))
    assert item.home == Path(settings.get("output/folder")) / "sideways"
    assert store.load() == {1: Rotation.RIGHT}
    assert window.stale_turn(item.id, 1) is None  # never read: nothing to read again
    assert window.check_label.isHidden()
    shot = os.environ.get("OCRDESK_ROTATE_SHOT")
    if shot:
        window.grab().save(shot)

    # Rotate left twice: a quarter turn anticlockwise from where it lay.
    QTest.keySequence(window, QKeySequence("Ctrl+Left"))
    QTest.keySequence(window, QKeySequence("Ctrl+Left"))
    arun(qtbot, wait_until(lambda: window.page_turn(item.id, 1) is Rotation.LEFT, what="left"))
    arun(qtbot, wait_until(lambda: _shown(window) == (1760, 990), what="turned the other way"))
    QTest.keySequence(window, QKeySequence("Ctrl+Right"))
    QTest.keySequence(window, QKeySequence("Ctrl+Right"))
    assert store.load() == {1: Rotation.RIGHT}

    # Another window, the same file: the page is shown turned.
    from ocrdesk.gui.app import build

    controller2, window2 = build([], server=_server.url, settings=settings, history=False)
    qtbot.addWidget(window2)
    try:
        window2.show()
        again = add(qtbot, controller2, window2, Path(item.source))
        window2.show_page(again.id, 1)
        arun(qtbot, wait_until(lambda: _shown(window2) == (1760, 990), what="kept turned"))
        assert window2.page_turn(again.id, 1) is Rotation.RIGHT
    finally:
        window2.close()
        arun(qtbot, controller2.close())


def test_a_page_read_already_and_turned_is_to_be_read_again(
    served: Any,  # noqa: F811
    qtbot: Any,
    tmp_path: Path,
) -> None:
    raw = (PAGES_DIR / f"{LECTURE}.raw.txt").read_text(encoding="utf-8")
    controller, window, _server = served([raw])
    upright = tmp_path / "upright.png"
    Image.open(PAGES_DIR / f"{LECTURE}.jpg").convert("RGB").resize((1760, 990)).save(upright)
    item = add(qtbot, controller, window, upright)
    run_all(qtbot, controller, window, item)
    window.show_page(item.id, 1)
    arun(qtbot, wait_until(lambda: window.page_view.boxes, what="the page's boxes"))
    assert window.check_label.isHidden() and window._editable_page() is not None

    QTest.keySequence(window, QKeySequence("Ctrl+Left"))
    arun(qtbot, wait_until(lambda: _shown(window) == (990, 1760), what="the page turned"))
    assert window.stale_turn(item.id, 1) is Rotation.NONE  # read upright
    assert not window.check_label.isHidden() and window.check_label.text() == STALE_TEXT
    assert not window.page_view.boxes  # they are of the image it was read from
    assert window._editable_page() is None
    store = RotationStore(item.export.folder, item.export.source)
    assert store.stale() == {1: Rotation.NONE} and store.load() == {1: Rotation.LEFT}

    QTest.keySequence(window, QKeySequence("Ctrl+Right"))  # back as it was read
    arun(qtbot, wait_until(lambda: window.page_view.boxes, what="its boxes again"))
    assert window.stale_turn(item.id, 1) is None and window.check_label.isHidden()
    assert store.stale() == {} and store.load() == {}


def test_run_reads_a_turned_page_upright_and_a_stale_one_again(
    served: Any,  # noqa: F811
    qtbot: Any,
    tmp_path: Path,
) -> None:
    raw = (PAGES_DIR / f"{LECTURE}.raw.txt").read_text(encoding="utf-8")
    controller, window, server = served([raw])
    item = add(qtbot, controller, window, _sideways(tmp_path))
    window.show_page(item.id, 1)
    run_all(qtbot, controller, window, item)  # read as it lies
    assert (item.pages[1].result.width, item.pages[1].result.height) == (990, 1760)
    asked = len(server.requests)
    QTest.keySequence(window, QKeySequence("Ctrl+Right"))
    arun(qtbot, wait_until(lambda: window.stale_turn(item.id, 1) is not None, what="stale"))
    run_all(qtbot, controller, window, item)  # Run reads the stale page again, upright
    arun(qtbot, wait_until(lambda: len(server.requests) > asked, what="the page asked again"))
    arun(qtbot, wait_until(lambda: item.pages[1].result.width == 1760, what="read upright"))
    assert item.pages[1].result.height == 990
    arun(qtbot, wait_until(lambda: window.stale_turn(item.id, 1) is None, what="fresh"))
    assert window.check_label.isHidden() and window.page_view.boxes


def _drawn_on(layout: Path, page: Image.Image, result: Any) -> float:
    """How far a layout image is from `result`'s boxes drawn on `page` (mean grey difference)."""
    with Image.open(layout) as img:
        drawn = img.convert("L")
    assert drawn.size == page.size
    expected = draw_layout(page, result).convert("L")
    return float(ImageStat.Stat(ImageChops.difference(drawn, expected)).mean[0])


def test_export_to_another_folder_draws_each_page_turned_as_it_was_read(
    served: Any,  # noqa: F811
    qtbot: Any,
    tmp_path: Path,
) -> None:
    """A page turned right and read upright is exported to another folder on the page turned,
    not on the page as it lies squashed to the result's size; turned again (stale), it is still
    exported as it was read; the copy keeps the turns its results were read at."""
    raw = (PAGES_DIR / f"{LECTURE}.raw.txt").read_text(encoding="utf-8")
    controller, window, _server = served([raw])
    sideways = _sideways(tmp_path)
    item = add(qtbot, controller, window, sideways)
    window.show_page(item.id, 1)
    QTest.keySequence(window, QKeySequence("Ctrl+Right"))
    arun(qtbot, wait_until(lambda: window.page_turn(item.id, 1) is Rotation.RIGHT, what="right"))
    run_all(qtbot, controller, window, item)
    result = item.pages[1].result
    assert (result.width, result.height) == (1760, 990)
    upright = turn_image(Image.open(sideways).convert("RGB"), Rotation.RIGHT)
    squashed = Image.open(sideways).convert("RGB").resize(upright.size)

    def export(name: str) -> Path:
        outcome: ExportOutcome = arun(
            qtbot, controller.library.export([item.id], tmp_path / name, "m", "markdown")
        )
        assert outcome.problems == [] and len(outcome.folders) == 1
        return outcome.folders[0]

    copy = export("copy")
    layout = copy / "pages" / "0001.layout.jpg"
    assert _drawn_on(layout, upright, result) < 2  # 0.3: the JPEG's loss
    assert _drawn_on(layout, squashed, result) > 5
    kept = RotationStore(copy, item.export.source)
    assert kept.load() == {1: Rotation.RIGHT} and kept.stale() == {}

    QTest.keySequence(window, QKeySequence("Ctrl+Right"))  # half a turn now: to be read again
    arun(qtbot, wait_until(lambda: window.stale_turn(item.id, 1) is Rotation.RIGHT, what="stale"))
    again = export("again")
    assert _drawn_on(again / "pages" / "0001.layout.jpg", upright, result) < 2
    kept = RotationStore(again, item.export.source)
    assert kept.load() == {1: Rotation.RIGHT} and kept.stale() == {}
