"""The page actions of the real window, against the loopback OpenAI server: zoom (Ctrl+wheel
around the pointer, 100%, fit width, fit page), the per-label legend, hovering a box, stepping
through pages with every view in step, and the document actions (remove, copy, export all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QObject, QPoint, QPointF, Qt, QUrl, Slot
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication, QPalette, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ocrdesk.engine import PageStatus, label_color
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until
from tests.gui.test_result_render import convert, dom, until_dom
from tests.gui.test_run_control import add

CTRL = Qt.KeyboardModifier.ControlModifier
NONE = Qt.KeyboardModifier.NoModifier

#: Four blocks with three labels, boxes one below the other (none overlaps another).
GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 40, 900, 110]]<|/det|>\n# Heading of the page\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 200, 900, 330]]<|/det|>\nThe first paragraph.\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 420, 900, 560]]<|/det|>\nThe second paragraph.\n\n"
    "<|ref|>table<|/ref|><|det|>[[100, 650, 900, 880]]<|/det|>\n"
    "<table><tr><td>cell a</td><td>cell b</td></tr></table>\n"
)


def page_output(word: str, paragraphs: int) -> str:
    """A page whose heading names it (`word`) with `paragraphs` text boxes below it."""
    out = f"<|ref|>title<|/ref|><|det|>[[80, 40, 920, 100]]<|/det|>\n# Heading {word}\n\n"
    for k in range(paragraphs):
        top = 150 + 120 * k
        out += (
            f"<|ref|>text<|/ref|><|det|>[[{80 + 20 * k}, {top}, 900, {top + 90}]]<|/det|>\n"
            f"Paragraph {k + 1} of the {word} page.\n\n"
        )
    return out


THREE = [page_output("alpha", 1), page_output("beta", 2), page_output("gamma", 3)]


def run_all(qtbot: Any, controller: Any, window: Any, item: Any) -> None:
    window.run()
    arun(
        qtbot,
        wait_until(
            lambda: (
                item.pages
                and all(p.status is PageStatus.DONE for p in item.pages.values())
                and not controller.running
            ),
            timeout=30,
            what="every page done",
        ),
    )


def wheel(widget: Any, pos: QPoint, steps: int, modifiers: Any) -> QWheelEvent:
    """A mouse wheel turned `steps` notches (120 units each) at `pos` of `widget`."""
    event = QWheelEvent(
        QPointF(pos),
        QPointF(widget.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)
    return event


def move_mouse(widget: Any, pos: QPoint) -> None:
    """Put the pointer at `pos` of `widget`, as a real pointer move does (enter, move, hover)."""
    QTest.mouseMove(widget, pos)
    QApplication.processEvents()


def shown_boxes(view: Any) -> list[tuple[int, str, tuple[float, ...]]]:
    return sorted(
        (i.index, i.label, tuple(round(v, 1) for v in i.rect().getCoords())) for i in view.boxes
    )


def expected_boxes(blocks: list[Any]) -> list[tuple[int, str, tuple[float, ...]]]:
    return sorted(
        (k, b.label, tuple(round(v, 1) for v in box))
        for k, b in enumerate(blocks)
        for box in b.boxes
    )


HL = "(document.querySelector('.block.hl')||{dataset:{}}).dataset.block"
BODY = "document.getElementById('c').innerText"


# -- zoom ----------------------------------------------------------------------------------------


def test_zoom_wheel_actual_size_fit_width_fit_page(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "zoom.pdf", 1))
    # a wide page pane, so that a page fitted to its width is taller than the pane
    window.splitter.setSizes([200, 1000, 200])
    view = window.page_view
    viewport = view.viewport()
    arun(qtbot, wait_until(view.has_image, what="page image"))
    result = item.pages[1].result
    scene = view.sceneRect()
    assert (scene.width(), scene.height()) == (result.width, result.height)
    # the page starts fitted into the view
    assert view.fit_mode == "page"

    # Ctrl+0: 100%, one page pixel to one screen pixel
    view.setFocus()
    QTest.keyClick(window, Qt.Key.Key_0, CTRL)
    assert view.zoom() == pytest.approx(1.0)
    assert view.fit_mode is None
    a, b = view.mapFromScene(QPointF(100, 100)), view.mapFromScene(QPointF(400, 700))
    assert (b.x() - a.x(), b.y() - a.y()) == (300, 600)
    assert view.horizontalScrollBar().maximum() > 0 and view.verticalScrollBar().maximum() > 0

    # Ctrl+wheel zooms around the pointer: the page point under it stays under it
    view.centerOn(scene.center())
    pointer = QPoint(viewport.width() // 3, viewport.height() // 3)
    move_mouse(viewport, pointer)
    assert view.underMouse()
    under = view.mapToScene(pointer)
    assert wheel(viewport, pointer, 1, CTRL).isAccepted()
    assert view.zoom() == pytest.approx(1.15)
    after = view.mapToScene(pointer)
    assert (after.x(), after.y()) == (
        pytest.approx(under.x(), abs=2),
        pytest.approx(under.y(), abs=2),
    )
    wheel(viewport, pointer, -2, CTRL)
    assert view.zoom() == pytest.approx(1.15 / 1.15**2)
    after = view.mapToScene(pointer)
    assert (after.x(), after.y()) == (
        pytest.approx(under.x(), abs=2),
        pytest.approx(under.y(), abs=2),
    )
    # without Ctrl the wheel scrolls the page, at the same zoom
    zoom, top = view.zoom(), view.verticalScrollBar().value()
    wheel(viewport, pointer, -1, NONE)
    assert view.zoom() == zoom
    assert view.verticalScrollBar().value() > top

    # Zoom in / out from the keyboard (Ctrl++ / Ctrl+-)
    QTest.keyClick(window, Qt.Key.Key_Plus, CTRL)
    assert view.zoom() == pytest.approx(zoom * 1.25)
    QTest.keyClick(window, Qt.Key.Key_Minus, CTRL)
    assert view.zoom() == pytest.approx(zoom)

    # Ctrl+1: the page's width fills the viewport's width, its top in sight
    QTest.keyClick(window, Qt.Key.Key_1, CTRL)
    assert view.fit_mode == "width"

    def fits_width() -> bool:
        return bool(abs(scene.width() * view.zoom() - viewport.width()) <= 6)

    arun(qtbot, wait_until(fits_width, timeout=2, what="page width fitted"))
    assert view.horizontalScrollBar().maximum() == 0
    assert view.verticalScrollBar().maximum() > 0  # the page is taller than the view
    assert view.mapToScene(QPoint(0, 0)).y() == pytest.approx(0, abs=2)
    # ... and stays fitted when the view is resized
    wide = viewport.width()
    window.splitter.setSizes([200, 700, 500])
    arun(qtbot, wait_until(lambda: viewport.width() < wide - 80, timeout=2, what="narrower"))
    arun(qtbot, wait_until(fits_width, timeout=2, what="page width fitted after a resize"))

    # Ctrl+2: the whole page in sight, filling the view in one dimension
    QTest.keyClick(window, Qt.Key.Key_2, CTRL)
    assert view.fit_mode == "page"

    def fits_page() -> bool:
        w, h = scene.width() * view.zoom(), scene.height() * view.zoom()
        vw, vh = viewport.width(), viewport.height()
        return bool(w <= vw + 0.5 and h <= vh + 0.5 and min(vw - w, vh - h) <= 6)

    arun(qtbot, wait_until(fits_page, timeout=2, what="page fitted"))
    assert view.horizontalScrollBar().maximum() == 0 and view.verticalScrollBar().maximum() == 0
    corner = view.mapFromScene(QPointF(0, 0))
    far = view.mapFromScene(QPointF(scene.width() - 1, scene.height() - 1))
    assert viewport.rect().contains(corner) and viewport.rect().contains(far)


# -- legend --------------------------------------------------------------------------------------


def test_legend_toggles_the_boxes_of_one_label(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(GROUNDED)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "legend.pdf", 1))
    view, legend = window.page_view, window.legend
    labels = [b.label for b in item.pages[1].result.blocks]
    assert labels == ["title", "text", "text", "table"]
    assert len(view.boxes) == 4

    # one check box per label, checked, in the label's colour
    assert sorted(legend.boxes) == ["table", "text", "title"]
    for label, box in legend.boxes.items():
        assert box.isVisible() and box.isChecked() and box.text() == label
        box.ensurePolished()
        assert box.palette().color(QPalette.ColorRole.WindowText) == QColor(*label_color(label))
        # and painted in it: the check box's own pixels include the label's colour
        image = box.grab().toImage()
        rgb = QColor(*label_color(label)).rgb()
        assert any(
            image.pixel(x, y) == rgb for x in range(image.width()) for y in range(image.height())
        ), label

    def visible() -> dict[str, list[bool]]:
        seen: dict[str, list[bool]] = {}
        for box in sorted(view.boxes, key=lambda i: i.index):
            seen.setdefault(box.label, []).append(box.isVisible())
        return seen

    assert visible() == {"title": [True], "text": [True, True], "table": [True]}
    QTest.mouseClick(legend.boxes["text"], Qt.MouseButton.LeftButton)
    assert not legend.boxes["text"].isChecked()
    assert visible() == {"title": [True], "text": [False, False], "table": [True]}
    # hidden boxes are skipped when stepping through the blocks (Ctrl+Down)
    QTest.keyClick(window, Qt.Key.Key_Down, CTRL)
    QTest.keyClick(window, Qt.Key.Key_Down, CTRL)
    assert view.highlighted == 3

    QTest.mouseClick(legend.boxes["table"], Qt.MouseButton.LeftButton)
    assert visible() == {"title": [True], "text": [False, False], "table": [False]}
    QTest.mouseClick(legend.boxes["text"], Qt.MouseButton.LeftButton)
    assert legend.boxes["text"].isChecked()
    assert visible() == {"title": [True], "text": [True, True], "table": [False]}
    QTest.mouseClick(legend.boxes["table"], Qt.MouseButton.LeftButton)
    assert visible() == {"title": [True], "text": [True, True], "table": [True]}


# -- hover ---------------------------------------------------------------------------------------


def test_hovering_a_box_highlights_its_block(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(GROUNDED)
    convert(qtbot, controller, window, make_pdf(tmp_path / "hover.pdf", 1))
    until_dom(window, qtbot, "document.querySelectorAll('[data-block]').length", 4)
    view = window.page_view
    viewport = view.viewport()
    view.fit_page()
    QApplication.processEvents()
    hovered: list[int] = []
    view.boxHovered.connect(hovered.append)

    def centre(index: int) -> QPoint:
        box = next(i for i in view.boxes if i.index == index)
        point: QPoint = view.mapFromScene(box.sceneBoundingRect().center())
        return point

    # outside every box first: nothing hovered, nothing highlighted
    move_mouse(viewport, QPoint(3, 3))
    assert hovered == []
    assert dom(window, qtbot, "document.querySelectorAll('.block.hl').length") == 0
    for index in (2, 0, 3):
        move_mouse(viewport, centre(index))
        assert hovered[-1] == index
        until_dom(window, qtbot, HL, str(index))
        assert dom(window, qtbot, "document.querySelectorAll('.block.hl').length") == 1
        assert window.result_view.highlighted == index


# -- pages ---------------------------------------------------------------------------------------


def test_pages_step_together(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(THREE)
    item = add(qtbot, controller, window, make_pdf(tmp_path / "three.pdf", 3))
    run_all(qtbot, controller, window, item)
    results = {n: item.pages[n].result for n in (1, 2, 3)}
    headings = {n: r.blocks[0].text.lstrip("# ").strip() for n, r in results.items()}
    assert sorted(headings.values()) == ["Heading alpha", "Heading beta", "Heading gamma"]
    thumbs = window.thumbs

    def in_step(n: int) -> None:
        assert window.current == (item.id, n)
        assert thumbs.doc_id == item.id and thumbs.current_page() == n
        assert thumbs.selectionModel().isSelected(thumbs.model().index(n - 1, 0))
        assert window.page_label.text().startswith(f"page {n} of 3")
        assert window.result_view.title.text() == f"three.pdf — page {n}"
        result = results[n]
        assert window.page_view.page_size == (result.width, result.height)
        # the boxes come with the page's image (at once for a page next to the one shown)
        arun(qtbot, wait_until(window.page_view.has_image, what=f"page {n} image"))
        assert shown_boxes(window.page_view) == expected_boxes(result.blocks)
        until_dom(window, qtbot, f"{BODY}.includes({json.dumps(headings[n])})", True)
        others = [h for k, h in headings.items() if k != n]
        assert not any(h in dom(window, qtbot, BODY) for h in others)

    assert window.current == (item.id, 1)
    in_step(1)
    window.page_view.setFocus()
    QTest.keyClick(window, Qt.Key.Key_PageDown)
    in_step(2)
    QTest.keyClick(window, Qt.Key.Key_PageDown)
    in_step(3)
    QTest.keyClick(window, Qt.Key.Key_PageDown)  # the last page: stays
    in_step(3)
    QTest.keyClick(window, Qt.Key.Key_PageUp)
    in_step(2)
    QTest.keyClick(window, Qt.Key.Key_PageUp)
    in_step(1)
    QTest.keyClick(window, Qt.Key.Key_PageUp)  # the first page: stays
    in_step(1)
    # a click on a thumbnail moves everything too
    rect = thumbs.visualRect(thumbs.model().index(2, 0))
    QTest.mouseClick(thumbs.viewport(), Qt.MouseButton.LeftButton, NONE, rect.center())
    in_step(3)
    # and the focus on the thumbnails does not take PgUp from the window
    thumbs.setFocus()
    QTest.keyClick(window, Qt.Key.Key_PageUp)
    in_step(2)


# -- document actions ----------------------------------------------------------------------------


def test_del_removes_the_selected_document(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(GROUNDED)
    first = convert(qtbot, controller, window, make_pdf(tmp_path / "first.pdf", 1))
    second = add(qtbot, controller, window, make_pdf(tmp_path / "second.pdf", 2))
    window.queue.select_doc(second.id)
    assert window.current == (second.id, 1)
    window.queue.setFocus()
    QTest.keyClick(window, Qt.Key.Key_Delete)
    assert controller.order == [first.id]
    assert second.id not in controller.docs
    assert window.queue.model().rowCount() == 1
    assert window.queue.current_doc() == first.id
    # the window shows the document left
    assert window.current == (first.id, 1)
    assert window.thumbs.doc_id == first.id and window.thumbs.page_count() == 1
    assert window.page_label.text().startswith("page 1 of 1")
    assert window.result_view.title.text() == "first.pdf — page 1"
    assert len(window.page_view.boxes) == 4

    # the last one: the window shows nothing
    window.page_view.setFocus()
    QTest.keyClick(window, Qt.Key.Key_Delete)
    assert controller.order == [] and controller.docs == {}
    assert window.queue.model().rowCount() == 0
    assert window.current is None
    assert window.page_view.boxes == [] and not window.page_view.has_image()
    assert window.thumbs.page_count() == 0 and window.result_view.title.text() == ""
    assert window.legend.boxes == {}
    assert not window.remove_action.isEnabled()


def test_removing_the_last_document_clears_the_page_label(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(GROUNDED)
    add(qtbot, controller, window, make_pdf(tmp_path / "only.pdf", 2))
    assert window.page_label.text().startswith("page 1 of 2")
    QTest.keyClick(window, Qt.Key.Key_Delete)
    assert controller.order == [] and window.current is None
    assert window.page_label.text() == "–"


def test_del_removes_a_document_in_the_middle_of_a_run(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(THREE, token_delay=0.004)
    doomed = add(qtbot, controller, window, make_pdf(tmp_path / "doomed.pdf", 12))
    kept = add(qtbot, controller, window, make_pdf(tmp_path / "kept.pdf", 2))
    window.queue.select_doc(doomed.id)
    window.run()
    arun(
        qtbot,
        wait_until(lambda: doomed.count(PageStatus.DONE) >= 1, timeout=30, what="a page done"),
    )
    assert doomed.job is not None and doomed.count(PageStatus.DONE) < 12
    QTest.keyClick(window, Qt.Key.Key_Delete)
    assert controller.order == [kept.id] and doomed.id not in controller.docs
    assert window.current == (kept.id, 1)
    # the run goes on with the other document, and ends
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="run over"))
    assert all(p.status is PageStatus.DONE for p in kept.pages.values())
    assert controller.order == [kept.id] and window.queue.model().rowCount() == 1
    assert window.thumbs.doc_id == kept.id
    assert window.page_label.text().startswith("page 1 of 2")


class UrlSink(QObject):
    """Takes the URLs QDesktopServices.openUrl would hand to the desktop (setUrlHandler)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def take(self, url: QUrl) -> None:
        self.urls.append(url)


def test_copy_document_markdown_and_export_all(windows: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = windows(THREE)
    one = add(qtbot, controller, window, make_pdf(tmp_path / "one.pdf", 2))
    other = add(qtbot, controller, window, make_pdf(tmp_path / "other.pdf", 1))
    window.run()
    arun(
        qtbot,
        wait_until(
            lambda: (
                all(p.status is PageStatus.DONE for d in (one, other) for p in d.pages.values())
                and not controller.running
            ),
            timeout=30,
            what="both documents done",
        ),
    )

    # Edit > Copy document markdown: every page, each after its marker
    window.queue.select_doc(one.id)
    QGuiApplication.clipboard().setText("")
    window.copy_doc_action.trigger()
    pages = [one.pages[n].result.markdown for n in (1, 2)]
    assert all(pages) and pages[0] != pages[1]
    text = QGuiApplication.clipboard().text()
    assert text == f"<!-- page 1 -->\n\n{pages[0]}\n\n<!-- page 2 -->\n\n{pages[1]}"
    # Ctrl+Shift+C: the page shown only
    window.next_page()
    assert window.current == (one.id, 2)
    QTest.keyClick(window, Qt.Key.Key_C, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert QGuiApplication.clipboard().text() == pages[1]

    # File > Export all (Ctrl+Shift+E), a folder chosen in the dialog: one folder per document,
    # with its markdown and JSON
    target = tmp_path / "all"
    target.mkdir()
    QTest.keyClick(window, Qt.Key.Key_E, CTRL | Qt.KeyboardModifier.ShiftModifier)
    dialog = window.export_window
    assert dialog.isVisible()
    dialog.folder_edit.setText(str(target))
    dialog.export_button.click()
    arun(qtbot, wait_until(lambda: getattr(window, "last_export", None) == target, what="export"))
    assert sorted(p.name for p in target.iterdir()) == ["one", "other"]
    for doc in (one, other):
        folder = target / doc.stem
        md = (folder / f"{doc.stem}.md").read_text(encoding="utf-8")
        for number, page in sorted(doc.pages.items()):
            assert f"<!-- page {number} -->\n\n{page.result.markdown}" in md
        data = json.loads((folder / f"{doc.stem}.json").read_text(encoding="utf-8"))
        assert [p["markdown"] for p in data["pages"]] == [
            p.result.markdown for _, p in sorted(doc.pages.items())
        ]
        assert data["source"] == str(tmp_path / doc.name)

    # File > Open output folder: the folder just exported to
    sink = UrlSink()
    QDesktopServices.setUrlHandler("file", sink, "take")  # type: ignore[arg-type]
    try:
        window.open_folder_action.trigger()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [u.toLocalFile() for u in sink.urls] == [str(target)]
