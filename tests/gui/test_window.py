"""The real window against the loopback OpenAI server: drop, run, stream, boxes, linking, export,
paste, broken files, history."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
)
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from ocrdesk.engine import PageStatus, Task, parse
from tests.conftest import REAL_PAGE_PDF, REAL_PAGE_RAW, need
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, js, open_window, wait_until


@pytest.fixture
def server() -> Any:
    raw = need(REAL_PAGE_RAW).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw], token_delay=0.0005, tokens_per_chunk=4) as fake:
        yield fake


@pytest.fixture
def app(qloop: Any, qtbot: Any, settings: Any, server: Any) -> Any:
    controller, window = open_window(qtbot, settings, server.url)
    yield controller, window
    arun(qtbot, controller.close())


def drop(window: Any, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(window.width() / 2, window.height() / 2)
    actions = Qt.DropAction.CopyAction
    with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(
            pos.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        pos, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, event)


def test_drop_run_stream_boxes_link_export(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = app
    raw = REAL_PAGE_RAW.read_text(encoding="utf-8")
    seen: list[PageStatus] = []
    controller.pageChanged.connect(lambda d, n: seen.append(controller.docs[d].pages[n].status))
    drop(window, [need(REAL_PAGE_PDF)])
    arun(
        qtbot,
        wait_until(lambda: controller.order and controller.docs[controller.order[0]].page_count),
    )
    doc = controller.docs[controller.order[0]]
    assert doc.page_count == 1 and doc.error is None
    window.task_combo.setCurrentIndex(window.task_combo.findData(Task.MARKDOWN.value))
    window.dpi_spin.setValue(180)
    QTest.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    arun(
        qtbot,
        wait_until(lambda: doc.pages[1].status is PageStatus.DONE, timeout=30, what="page done"),
    )
    assert seen[0] is PageStatus.RUNNING and seen[-1] is PageStatus.DONE
    result = doc.pages[1].result
    assert result is not None and (result.width, result.height) == (1488, 2105)

    # boxes: one item per parsed box, placed by v / 999 * size
    expected = parse(raw, result.width, result.height)
    n_boxes = sum(len(b.boxes) for b in expected.blocks)
    assert n_boxes > 5
    assert len(window.page_view.boxes) == n_boxes
    first = next(i for i in window.page_view.boxes if i.index == 0)
    rect = first.rect()
    assert rect.x() == pytest.approx(58 / 999 * 1488, abs=0.6)
    assert rect.y() == pytest.approx(33 / 999 * 2105, abs=0.6)
    assert rect.right() == pytest.approx(940 / 999 * 1488, abs=0.6)
    assert rect.bottom() == pytest.approx(465 / 999 * 2105, abs=0.6)
    color = first.pen().color()
    assert color == QColor(133, 153, 0)  # engine.label_color("table")

    # the result view shows every block, with the tables the model wrote
    async def blocks() -> int:
        return int(await js(window.result_view, "document.querySelectorAll('[data-block]').length"))

    arun(qtbot, wait_until_async(blocks, len(expected.blocks)))
    assert (
        arun(qtbot, js(window.result_view, "document.querySelectorAll('td[colspan]').length")) > 0
    )
    assert arun(qtbot, js(window.result_view, "document.querySelectorAll('script').length")) == 2

    # click a box: its block is highlighted in the result view
    target = next(i for i in window.page_view.boxes if i.index == 4)
    window.page_view.fit_page()
    window.page_view.centerOn(target)
    point = window.page_view.mapFromScene(target.sceneBoundingRect().center())
    QTest.mouseClick(
        window.page_view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        point,
    )
    hl = "(document.querySelector('.block.hl')||{dataset:{}}).dataset.block"
    arun(qtbot, wait_until_async(lambda: js(window.result_view, hl), "4"))

    # click a block: its box is highlighted
    arun(qtbot, js(window.result_view, "document.querySelector('[data-block=\"2\"]').click(); 1"))
    arun(qtbot, wait_until(lambda: window.page_view.highlighted == 2, what="box highlighted"))
    assert all(i.zValue() == 2 for i in window.page_view.boxes if i.index == 2)

    # from the keyboard: Ctrl+Down / Ctrl+Up step through the boxes, both views following
    boxed = sorted({i.index for i in window.page_view.boxes})
    after = boxed[boxed.index(2) + 1]
    QTest.keyClick(window, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert window.page_view.highlighted == after
    arun(qtbot, wait_until_async(lambda: js(window.result_view, hl), str(after)))
    QTest.keyClick(window, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert window.page_view.highlighted == 2
    arun(qtbot, wait_until_async(lambda: js(window.result_view, hl), "2"))

    # auto-export to the output folder, and export to a chosen folder
    out = Path(window.settings.get("output/folder")) / "medical-report-p1"
    arun(qtbot, wait_until(lambda: (out / "medical-report-p1.json").exists(), what="auto export"))
    task = window.export_to([doc.id], tmp_path / "chosen")
    arun(qtbot, wait_until(task.done))
    folder = tmp_path / "chosen" / "medical-report-p1"
    for name in (
        "medical-report-p1.md",
        "medical-report-p1.json",
        "medical-report-p1.raw.mmd",
        "medical-report-p1.layout.pdf",
    ):
        assert (folder / name).is_file(), name
    window.copy_page()
    assert "<table>" in QGuiApplication.clipboard().text()


async def wait_until_async(probe: Any, value: Any, timeout: float = 10) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await probe()
        if last == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"wanted {value!r}, last saw {last!r}")


def test_paste_image_and_broken_file(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = app
    broken = tmp_path / "empty.pdf"
    broken.write_bytes(b"")
    drop(window, [broken])
    image = QImage(320, 200, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    QGuiApplication.clipboard().setImage(image)
    QTest.keyClick(window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    arun(
        qtbot,
        wait_until(
            lambda: (
                len(controller.order) == 2
                and all(
                    controller.docs[i].error or controller.docs[i].page_count
                    for i in controller.order
                )
            )
        ),
    )
    docs = [controller.docs[i] for i in controller.order]
    bad = next(d for d in docs if d.name == "empty.pdf")
    pasted = next(d for d in docs if d.name != "empty.pdf")
    assert bad.error and "empty" in bad.error.lower()
    assert pasted.name.startswith("clipboard-") and pasted.page_count == 1
    from ocrdesk.gui.queue_view import progress_text

    assert progress_text(bad).startswith("cannot open:")
    window.run()
    arun(qtbot, wait_until(lambda: pasted.pages[1].status is PageStatus.DONE, timeout=30))
    assert bad.error  # the others went on
    grab = window.grab()
    assert not grab.isNull()


def test_history_after_restart(qloop: Any, qtbot: Any, settings: Any, server: Any) -> None:
    from ocrdesk.gui.app import build

    controller, window = build(
        [str(need(REAL_PAGE_PDF))], server=server.url, settings=settings, history=False
    )
    qtbot.addWidget(window)
    arun(
        qtbot,
        wait_until(
            lambda: (
                controller.state == "ready"
                and controller.order
                and controller.docs[controller.order[0]].page_count
            )
        ),
    )
    window.run()
    doc = controller.docs[controller.order[0]]
    arun(
        qtbot,
        wait_until(
            lambda: not controller.running and doc.pages[1].status is PageStatus.DONE, timeout=30
        ),
    )
    arun(qtbot, controller.close())
    window.close()

    controller2, window2 = build([], server=server.url, settings=settings, history=True)
    qtbot.addWidget(window2)
    arun(
        qtbot,
        wait_until(lambda: controller2.order and controller2.docs[controller2.order[0]].pages),
    )
    old = controller2.docs[controller2.order[0]]
    assert old.from_history and old.pages[1].result is not None
    before, after = doc.pages[1].result.blocks, old.pages[1].result.blocks
    assert [(b.label, b.text) for b in after] == [(b.label, b.text) for b in before]
    assert after[0].box == pytest.approx(before[0].box, abs=0.1)
    arun(qtbot, controller2.close())


def test_sanitiser_blocks_scripts_handlers_and_remote_urls() -> None:
    from ocrdesk.gui.html import render_markdown

    html = render_markdown(
        '<script>alert(1)</script><img src="http://evil/x.png" onerror="x()">'
        '<a href="https://evil/">l</a><table><tr><td rowspan="2" onclick="y()">a</td></tr></table>'
        " \\(x^2\\) and $$\\begin{pmatrix}1\\\\2\\end{pmatrix}$$"
    )
    assert "script" not in html and "onerror" not in html and "onclick" not in html
    assert "evil" not in html
    assert 'rowspan="2"' in html
    assert '<span class="math" data-display="0">x^2</span>' in html
    assert 'data-display="1"' in html and "pmatrix" in html


@pytest.mark.parametrize("where", ["result_view", "page_view", "queue"])
def test_a_file_dropped_on_any_pane_is_queued(
    app: Any, qtbot: Any, tmp_path: Path, where: str
) -> None:
    """Through the window's own drop handling (QWidgetWindow finds the widget under the pointer
    and goes up to one that takes drops), as a drag from a file manager arrives."""
    controller, window = app
    pdf = make_pdf(tmp_path / f"dropped-on-{where}.pdf", 1)
    target = getattr(window, where)
    qtbot.waitUntil(lambda: target.isVisible())
    centre = target.mapTo(window, target.rect().center())
    pos = QPointF(centre)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(pdf))])
    actions = Qt.DropAction.CopyAction
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    handle = window.windowHandle()
    with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos.toPoint(), actions, mime, buttons, keys)
        QApplication.sendEvent(handle, enter)
        move = QDragMoveEvent(pos.toPoint(), actions, mime, buttons, keys)
        QApplication.sendEvent(handle, move)
    assert move.isAccepted(), f"a drop on the {where} is refused"
    QApplication.sendEvent(handle, QDropEvent(pos, actions, mime, buttons, keys))
    arun(qtbot, wait_until(lambda: any(d.name == pdf.name for d in controller.docs.values())))


def test_engine_status_shows_names_as_plain_text(app: Any) -> None:
    """A model label or URL that looks like HTML is shown as it is, not as rich text."""
    from PySide6 import QtGui
    from PySide6.QtGui import QTextDocument

    controller, window = app
    detail = "no server at http://<b>host</b>:8000 & co"
    controller.no_engine(detail)
    tip = window.engine_label.toolTip()
    if QtGui.Qt.mightBeRichText(tip):
        document = QTextDocument()
        document.setHtml(tip)
        tip = document.toPlainText()
    assert tip == detail
    label = QTextDocument()
    label.setHtml(window.engine_label.text())
    assert label.toPlainText() == f"● {detail}"
