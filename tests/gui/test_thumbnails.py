"""The thumbnail strip: lazy rendering of visible pages only, bounded concurrency and cache,
page choice by mouse and keyboard, status marks, and no stale images after a document change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtTest import QTest

from ocrdesk.engine import PageStatus
from ocrdesk.gui.thumbnails import (
    STATUS_COLORS,
    ImageRole,
    StatusColorRole,
    StatusRole,
    ThumbnailStrip,
)
from tests.gui.conftest import arun, wait_until


class Renderer:
    """An async render function that counts calls and in-flight renders; optionally held back
    until `release()` so that renders can be caught in flight."""

    def __init__(self, color: QColor, delay: float = 0.0, hold: bool = False) -> None:
        self.color = color
        self.delay = delay
        self.calls: list[int] = []
        self.running = 0
        self.max_running = 0
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()

    def release(self) -> None:
        self.gate.set()

    async def __call__(self, page: int) -> QImage | None:
        self.calls.append(page)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            image = QImage(120, 170, QImage.Format.Format_RGB32)
            image.fill(self.color)
            return image
        finally:
            self.running -= 1


RED = QColor(200, 0, 0)
BLUE = QColor(0, 0, 200)


@pytest.fixture
def strip(qloop: Any, qtbot: Any) -> ThumbnailStrip:
    widget = ThumbnailStrip()
    qtbot.addWidget(widget)
    widget.resize(130, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def image_at(strip: ThumbnailStrip, page: int) -> QImage | None:
    image = strip.model().index(page - 1, 0).data(ImageRole)
    return image if isinstance(image, QImage) else None


def settle(qtbot: Any, strip: ThumbnailStrip, render: Renderer) -> None:
    """Wait until no render is in flight and the call count has stopped growing."""

    async def quiet() -> None:
        last = -1
        while True:
            await wait_until(lambda: not strip.in_flight(), what="renders done")
            await asyncio.sleep(0.15)  # longer than the strip's 30 ms pump
            if len(render.calls) == last and not strip.in_flight():
                return
            last = len(render.calls)

    arun(qtbot, quiet())


def test_renders_only_visible_pages_of_a_long_document(strip: ThumbnailStrip, qtbot: Any) -> None:
    render = Renderer(RED, delay=0.005)
    strip.set_document(1, 300, render)
    assert strip.model().rowCount() == 300
    settle(qtbot, strip, render)

    visible = strip.visible_pages()
    assert visible.start == 1 and len(visible) >= 2
    assert set(visible) <= set(render.calls)
    assert len(render.calls) < 15, render.calls  # a screenful and a little ahead, not 300
    assert len(set(render.calls)) == len(render.calls)  # nothing rendered twice
    assert render.max_running <= strip.max_in_flight
    assert image_at(strip, 1) is not None and image_at(strip, 1).pixelColor(5, 5) == RED
    assert image_at(strip, 200) is None  # a placeholder until scrolled to

    strip.scrollToBottom()
    settle(qtbot, strip, render)
    assert strip.visible_pages().stop == 301
    assert {299, 300} <= set(render.calls)
    assert image_at(strip, 300) is not None
    assert len(render.calls) < 30
    assert render.max_running <= strip.max_in_flight


def test_at_most_max_in_flight_renders(strip: ThumbnailStrip, qtbot: Any) -> None:
    strip.resize(130, 900)  # many pages visible at once
    render = Renderer(RED, hold=True)
    strip.set_document(7, 2000, render)
    arun(qtbot, wait_until(lambda: render.running == strip.max_in_flight, what="renders"))
    arun(qtbot, asyncio.sleep(0.2))
    assert render.running == strip.max_in_flight == len(strip.in_flight())
    render.release()
    settle(qtbot, strip, render)
    assert render.max_running <= strip.max_in_flight
    assert set(strip.visible_pages()) <= set(render.calls)
    assert len(render.calls) < 25


def test_cache_is_bounded(strip: ThumbnailStrip, qtbot: Any) -> None:
    strip.cache_limit = 12
    render = Renderer(RED)
    strip.set_document(1, 300, render)
    settle(qtbot, strip, render)
    bar = strip.verticalScrollBar()
    for value in range(0, bar.maximum(), bar.maximum() // 8):
        bar.setValue(value)
        settle(qtbot, strip, render)
    assert len(render.calls) > 12
    cached = [p for p in range(1, 301) if image_at(strip, p) is not None]
    assert 0 < len(cached) <= 12
    # what is on screen now is among the cached
    assert set(strip.visible_pages()) <= set(cached)


def test_click_and_keys_choose_a_page_set_current_does_not(
    strip: ThumbnailStrip, qtbot: Any
) -> None:
    render = Renderer(RED)
    strip.set_document(3, 20, render)
    chosen: list[int] = []
    strip.pageChosen.connect(chosen.append)

    strip.set_current(12)
    assert strip.current_page() == 12 and chosen == []
    assert 12 in strip.visible_pages()  # scrolled to it

    index = strip.model().index(12, 0)  # page 13, below page 12
    strip.scrollTo(index)
    point = strip.visualRect(index).center()
    QTest.mouseClick(
        strip.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point
    )
    assert chosen == [13] and strip.current_page() == 13

    # clicking the page that is current chooses it again
    QTest.mouseClick(
        strip.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point
    )
    assert chosen == [13, 13]

    strip.setFocus()
    QTest.keyClick(strip, Qt.Key.Key_Down)
    assert chosen == [13, 13, 14]
    QTest.keyClick(strip, Qt.Key.Key_Home)
    assert chosen[-1] == 1

    strip.set_current(5)
    strip.set_current(999)  # out of range: ignored
    assert chosen[-1] == 1 and strip.current_page() == 5
    strip.set_document(4, 3, render)  # a new document chooses nothing
    assert chosen[-1] == 1 and len(chosen) == 4
    settle(qtbot, strip, render)


def test_status_mark(strip: ThumbnailStrip, qtbot: Any) -> None:
    strip.set_document(1, 5, None)
    index = strip.model().index(2, 0)
    assert index.data(StatusRole) == PageStatus.WAITING.value
    assert index.data(StatusColorRole) == STATUS_COLORS[PageStatus.WAITING]
    strip.set_status(3, PageStatus.RUNNING)
    assert index.data(StatusRole) == "running" and strip.status(3) is PageStatus.RUNNING
    strip.set_status(3, PageStatus.FAILED)
    assert strip.status(3) is PageStatus.FAILED and index.data(StatusRole) == "failed"
    assert index.data(StatusColorRole) == QColor(210, 50, 47)
    assert "failed" in index.data(Qt.ItemDataRole.ToolTipRole)
    strip.set_status(99, PageStatus.DONE)  # out of range: ignored
    # the bar is painted in the status colour, left of the placeholder
    shot = strip.viewport().grab().toImage()
    rect = strip.visualRect(index)
    row = rect.center().y()
    colors = {shot.pixelColor(x, row).name() for x in range(rect.left(), rect.center().x())}
    assert QColor(210, 50, 47).name() in colors
    # a new document starts all pages waiting again
    strip.set_document(2, 5, None)
    assert strip.status(3) is PageStatus.WAITING
    assert strip.model().index(2, 0).data(StatusRole) == "waiting"


def test_new_document_drops_pending_renders(strip: ThumbnailStrip, qtbot: Any) -> None:
    old = Renderer(RED, hold=True)
    strip.set_document(1, 50, old)
    arun(qtbot, wait_until(lambda: old.running == strip.max_in_flight, what="old renders"))

    new = Renderer(BLUE, hold=True)
    strip.set_document(2, 50, new)
    assert strip.doc_id == 2
    old.release()  # old renders were cancelled; none may land
    arun(qtbot, wait_until(lambda: new.running == strip.max_in_flight, what="new renders"))
    assert all(image_at(strip, p) is None for p in range(1, 51))
    new.release()
    settle(qtbot, strip, new)
    images = [image_at(strip, p) for p in range(1, 51)]
    landed = [im for im in images if im is not None]
    assert landed and all(im.pixelColor(5, 5) == BLUE for im in landed)
    assert old.running == 0


def test_stale_render_that_ignores_cancel_is_dropped(strip: ThumbnailStrip, qtbot: Any) -> None:
    """A render that swallows cancellation and still returns must not reach the new document."""
    gate = asyncio.Event()
    returned: list[int] = []

    async def stubborn(page: int) -> QImage:
        while True:
            try:
                await gate.wait()
                break
            except asyncio.CancelledError:
                continue
        image = QImage(120, 170, QImage.Format.Format_RGB32)
        image.fill(RED)
        returned.append(page)
        return image

    strip.set_document(1, 50, stubborn)
    arun(qtbot, wait_until(lambda: len(strip.in_flight()) == strip.max_in_flight))
    strip.set_document(2, 50, None)
    gate.set()
    arun(qtbot, wait_until(lambda: len(returned) == strip.max_in_flight, what="stale returns"))
    arun(qtbot, asyncio.sleep(0.1))
    assert all(image_at(strip, p) is None for p in range(1, 51))
    assert strip.in_flight() == []


@pytest.mark.allow_log(r"^thumbnail of page 1 failed$")
def test_failed_and_empty_renders_keep_placeholder(strip: ThumbnailStrip, qtbot: Any) -> None:
    calls: list[int] = []

    async def flaky(page: int) -> QImage | None:
        calls.append(page)
        if page == 1:
            raise RuntimeError("broken page")
        return None

    strip.set_document(1, 4, flaky)
    arun(qtbot, wait_until(lambda: {1, 2, 3, 4} <= set(calls), what="renders"))
    arun(qtbot, asyncio.sleep(0.2))
    assert sorted(calls) == [1, 2, 3, 4]  # not retried in a loop
    assert all(image_at(strip, p) is None for p in range(1, 5))


def test_same_document_keeps_images_and_resize_relayouts(strip: ThumbnailStrip, qtbot: Any) -> None:
    render = Renderer(RED)
    strip.set_document(9, 30, render)
    settle(qtbot, strip, render)
    before = len(render.calls)
    strip.set_document(9, 30, render)  # e.g. re-shown: nothing rendered again
    settle(qtbot, strip, render)
    assert len(render.calls) == before

    height = strip.visualRect(strip.model().index(0, 0)).height()
    strip.resize(200, 400)
    qtbot.waitUntil(lambda: strip.visualRect(strip.model().index(0, 0)).height() > height)
    assert strip.visualRect(strip.model().index(0, 0)).width() >= 170

    strip.set_document(None, 0, None)
    assert strip.model().rowCount() == 0 and strip.visible_pages() == range(0)
