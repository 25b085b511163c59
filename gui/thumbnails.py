"""The thumbnail strip: one small image per page of the current document, rendered lazily.

`ThumbnailStrip` is a one-column `QListView` over `ThumbnailModel`, painted by
`ThumbnailDelegate`: the page image (or a grey page-shaped placeholder until it is rendered), a
bar in the page's status colour beside it, and the page number below.

Only pages that are on screen (plus a few rows either side) are rendered, at most
`ThumbnailStrip.max_in_flight` at a time, as asyncio tasks on the running (qasync) loop; the
results are kept in a bounded LRU cache in the model. `set_document` cancels what is in flight
and bumps a generation number, so a render of the previous document that still finishes is
dropped instead of landing in the new document's items.

`STATUS_COLORS` is the one page-status palette; the queue's status strip imports it from here
(this module depends on neither the queue nor the controller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import shiboken6
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFocusEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from ocrdesk.engine import PageStatus

log = logging.getLogger(__name__)

Render = Callable[[int], Awaitable[QImage | None]]
AnyIndex = QModelIndex | QPersistentModelIndex

#: Page status colours, of the thumbnails and of the queue's per-page status strip.
STATUS_COLORS: dict[PageStatus, QColor] = {
    PageStatus.WAITING: QColor(200, 200, 200),
    PageStatus.RUNNING: QColor(38, 139, 210),
    PageStatus.DONE: QColor(80, 170, 60),
    PageStatus.TRUNCATED: QColor(230, 160, 20),
    PageStatus.FAILED: QColor(210, 50, 47),
}

PageRole = Qt.ItemDataRole.UserRole + 1  # int, 1-based page number
#: A finished page whose triage left flags on it: a person should look at it.
CHECK_COLOR = QColor(142, 68, 173)
StatusRole = Qt.ItemDataRole.UserRole + 2  # the engine.PageStatus's value, a str ("done")
StatusColorRole = Qt.ItemDataRole.UserRole + 3  # QColor of the status mark
ImageRole = Qt.ItemDataRole.UserRole + 4  # QImage, or None until rendered

PAGE_RATIO = 1.414  # height / width of the placeholder (A4 and near enough for Letter)
MAX_THUMB_WIDTH = 120
MIN_THUMB_WIDTH = 48
BAR_WIDTH = 4  # the status bar left of the image
BAR_GAP = 3
PAD = 6  # above the image, and below the number
TEXT_GAP = 2  # between image and number


class ThumbnailModel(QAbstractListModel):
    """Rows are pages (row 0 = page 1): status per page and a bounded LRU cache of images."""

    def __init__(self, parent: Any = None, cache_limit: int = 256) -> None:
        super().__init__(parent)
        self.page_count = 0
        self.cache_limit = cache_limit
        self.status: dict[int, PageStatus] = {}
        self.checks: dict[int, str] = {}  # page -> why to check it (its flags' kinds)
        self.images: OrderedDict[int, QImage] = OrderedDict()
        self.no_image: set[int] = set()  # render gave None or failed: not asked again

    def reset(self, page_count: int, *, keep_images: bool = False) -> None:
        self.beginResetModel()
        self.page_count = max(0, page_count)
        self.status = {}
        self.checks = {}
        if not keep_images:
            self.images.clear()
            self.no_image.clear()
        self.endResetModel()

    # -- cache ---------------------------------------------------------------------------------

    def has(self, page: int) -> bool:
        return page in self.images or page in self.no_image

    def forget(self, page: int) -> None:
        """Drop page `page`'s image: it is rendered again when wanted (the page was turned)."""
        self.images.pop(page, None)
        self.no_image.discard(page)

    def store(self, page: int, image: QImage | None) -> None:
        if not 1 <= page <= self.page_count:
            return
        if image is None or image.isNull():
            self.no_image.add(page)
        else:
            self.images[page] = image
            self.images.move_to_end(page)
            while len(self.images) > self.cache_limit:
                self.images.popitem(last=False)
        index = self.index(page - 1, 0)
        self.dataChanged.emit(index, index, [ImageRole])

    def set_status(self, page: int, status: PageStatus, check: str = "") -> None:
        if not 1 <= page <= self.page_count:
            return
        if self.status.get(page) is status and self.checks.get(page, "") == check:
            return
        self.status[page] = status
        if check:
            self.checks[page] = check
        else:
            self.checks.pop(page, None)
        index = self.index(page - 1, 0)
        self.dataChanged.emit(
            index, index, [StatusRole, StatusColorRole, Qt.ItemDataRole.ToolTipRole]
        )

    # -- model ---------------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.page_count

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self.page_count:
            return None
        page = index.row() + 1
        if role == Qt.ItemDataRole.DisplayRole:
            return str(page)
        if role == PageRole:
            return page
        if role == StatusRole:  # PageStatus is a str Enum: through Qt it arrives as a str
            return self.status.get(page, PageStatus.WAITING).value
        if role == StatusColorRole:
            if page in self.checks:
                return CHECK_COLOR
            return STATUS_COLORS[self.status.get(page, PageStatus.WAITING)]
        if role == ImageRole:
            image = self.images.get(page)
            if image is not None:
                self.images.move_to_end(page)
            return image
        if role == Qt.ItemDataRole.ToolTipRole:
            shown = f"Page {page} — {self.status.get(page, PageStatus.WAITING).value}"
            return shown + (f"; check: {self.checks[page]}" if page in self.checks else "")
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"Page {page}"
        return None


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints a cell: selection background, status bar, image or placeholder, page number."""

    def __init__(self, view: ThumbnailStrip) -> None:
        super().__init__(view)
        self.view = view

    def thumb_size(self) -> QSize:
        """The box an image is fitted into, from the strip's width (scroll bar counted in)."""
        width = self.view.cell_width() - 2 * (BAR_WIDTH + BAR_GAP) - 8
        width = max(MIN_THUMB_WIDTH, min(MAX_THUMB_WIDTH, width))
        return QSize(width, round(width * PAGE_RATIO))

    def sizeHint(self, option: QStyleOptionViewItem, index: AnyIndex) -> QSize:
        box = self.thumb_size()
        text = option.fontMetrics.height()
        return QSize(self.view.cell_width(), PAD + box.height() + TEXT_GAP + text + PAD)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        painter.save()
        cell: QRect = option.rect
        state = option.state
        selected = bool(state & QStyle.StateFlag.State_Selected)
        palette: QPalette = option.palette
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        # a light highlight, so that the status bar (blue while running) stays visible on it
        if selected or state & QStyle.StateFlag.State_MouseOver:
            highlight = QColor(palette.color(QPalette.ColorRole.Highlight))
            fill = QColor(highlight)
            fill.setAlpha(70 if selected else 28)
            painter.setBrush(fill)
            painter.setPen(QPen(highlight, 1.5) if selected else Qt.PenStyle.NoPen)
            painter.drawRoundedRect(QRectF(cell).adjusted(3.5, 2.5, -3.5, -2.5), 5, 5)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

        box = self.thumb_size()
        image: QImage | None = index.data(ImageRole)
        if image is not None and not image.isNull() and image.width() and image.height():
            size = image.size().scaled(box, Qt.AspectRatioMode.KeepAspectRatio)
        else:
            image = None
            size = box  # the placeholder: a grey page of PAGE_RATIO
        # images sit on the line above the number, centred across the cell
        left = cell.x() + (cell.width() - size.width()) // 2
        top = cell.y() + PAD + box.height() - size.height()
        target = QRect(left, top, size.width(), size.height())

        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        if image is not None:
            painter.fillRect(target, Qt.GlobalColor.white)
            painter.drawImage(target, image)
        else:
            painter.fillRect(target, QColor(214, 214, 214))
        painter.setPen(QPen(QColor(0, 0, 0, 70), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(target.adjusted(0, 0, -1, -1))

        color: QColor = index.data(StatusColorRole) or STATUS_COLORS[PageStatus.WAITING]
        bar = QRect(target.left() - BAR_GAP - BAR_WIDTH, target.top(), BAR_WIDTH, target.height())
        painter.fillRect(bar, color)

        painter.setPen(palette.color(QPalette.ColorRole.Text))
        font = painter.font()
        font.setBold(selected)
        painter.setFont(font)
        text_rect = QRect(
            cell.x(),
            cell.y() + PAD + box.height() + TEXT_GAP,
            cell.width(),
            option.fontMetrics.height(),
        )
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignCenter, str(index.data(PageRole)))
        painter.restore()


class ThumbnailStrip(QListView):
    """A vertical strip of page thumbnails; emits `pageChosen(page)` (1-based) on user choice."""

    pageChosen = Signal(int)

    #: renders running at once
    max_in_flight = 3
    #: rows beyond the visible ones that are rendered ahead, either side
    lookahead = 3

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = ThumbnailModel(self)
        self.setModel(self._model)
        self.setItemDelegate(ThumbnailDelegate(self))
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setFlow(QListView.Flow.TopToBottom)
        self.setWrapping(False)
        self.setUniformItemSizes(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSpacing(0)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setDragEnabled(False)
        self.setAcceptDrops(False)
        self.setMinimumWidth(90)
        self.verticalScrollBar().setSingleStep(24)

        self.doc_id: int | None = None
        self._render: Render | None = None
        self._generation = 0
        self._tasks: dict[int, asyncio.Future[None]] = {}  # page -> render task in flight
        self._quiet = False  # set_current and model resets choose no page
        self._cell_width = 0

        self._pump_timer = QTimer(self)
        self._pump_timer.setSingleShot(True)
        self._pump_timer.setInterval(30)
        self._pump_timer.timeout.connect(self._pump)
        self.verticalScrollBar().valueChanged.connect(self._schedule)
        self.selectionModel().currentChanged.connect(self._current_changed)

    # -- API -----------------------------------------------------------------------------------

    @property
    def cache_limit(self) -> int:
        return self._model.cache_limit

    @cache_limit.setter
    def cache_limit(self, value: int) -> None:
        self._model.cache_limit = max(1, value)

    def set_document(self, doc_id: int | None, page_count: int, render: Render | None) -> None:
        """Show `page_count` placeholders for document `doc_id`; thumbnails come from `render`.

        Renders of the previous document are cancelled, and any that still complete are dropped.
        Images already rendered are kept only when `doc_id` (not None) and `page_count` are those
        of the document shown now."""
        keep = doc_id is not None and doc_id == self.doc_id and page_count == self._model.page_count
        self._cancel_tasks()
        self._generation += 1
        self.doc_id = doc_id
        self._render = render
        self._quiet = True
        try:
            self._model.reset(page_count, keep_images=keep)
        finally:
            self._quiet = False
        self._schedule()

    def set_status(self, page: int, status: PageStatus, check: str = "") -> None:
        """`check`: why a person should look at the page (empty: no reason)."""
        self._model.set_status(page, PageStatus(status), check)

    def refresh(self, page: int) -> None:
        """Render page `page`'s thumbnail again (a render of it under way is dropped)."""
        task = self._tasks.pop(page, None)
        if task is not None:
            task.cancel()
        self._model.forget(page)
        self._schedule()

    def status(self, page: int) -> PageStatus:
        return self._model.status.get(page, PageStatus.WAITING)

    def set_current(self, page: int) -> None:
        """Select `page` and scroll it into view, without emitting `pageChosen`."""
        index = self._model.index(page - 1, 0)
        if not index.isValid():
            return
        self._quiet = True
        try:
            self.setCurrentIndex(index)
        finally:
            self._quiet = False
        self.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)
        self._schedule()

    def current_page(self) -> int | None:
        index = self.currentIndex()
        return index.row() + 1 if index.isValid() else None

    def page_count(self) -> int:
        return self._model.page_count

    def in_flight(self) -> list[int]:
        """Pages whose render is running now."""
        return sorted(self._tasks)

    def visible_pages(self) -> range:
        """The pages at least partly on screen (empty when hidden or empty)."""
        count = self._model.page_count
        if not count or not self.isVisible():
            return range(0)
        area = self.viewport().rect()
        x = area.center().x()
        top = self.indexAt(QPoint(x, area.top()))
        bottom = self.indexAt(QPoint(x, area.bottom()))
        first = top.row() if top.isValid() else 0
        last = bottom.row() if bottom.isValid() else count - 1
        return range(first + 1, last + 2)

    def cell_width(self) -> int:
        """Width of a cell: the viewport's, as if the vertical scroll bar were shown (so that a
        scroll bar appearing does not change the cells' size and relayout back and forth)."""
        if not self._cell_width:
            self._cell_width = self._compute_cell_width()
        return self._cell_width

    def sizeHint(self) -> QSize:
        return QSize(130, 400)

    # -- lazy rendering ------------------------------------------------------------------------

    def _schedule(self, *_: Any) -> None:
        if not self._pump_timer.isActive():
            self._pump_timer.start()

    def _wanted(self) -> list[int]:
        """Pages to render, most wanted first: visible, then below, then above."""
        visible = self.visible_pages()
        if not visible:
            return []
        count = self._model.page_count
        below = range(visible.stop, min(count, visible.stop - 1 + self.lookahead) + 1)
        above = range(visible.start - 1, max(1, visible.start - self.lookahead) - 1, -1)
        return [p for p in (*visible, *below, *above) if not self._model.has(p)]

    def _pump(self) -> None:
        render = self._render
        if render is None:
            return
        for page in self._wanted():
            if len(self._tasks) >= self.max_in_flight:
                break
            if page in self._tasks:
                continue
            self._tasks[page] = asyncio.ensure_future(self._load(self._generation, page, render))

    async def _load(self, generation: int, page: int, render: Render) -> None:
        try:
            image = await render(page)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("thumbnail of page %d failed", page)
            image = None
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self._tasks.pop(page, None)
        if image is not None and not isinstance(image, QImage):
            log.warning("thumbnail render of page %d returned %r, not a QImage", page, image)
            image = None
        self._model.store(page, image)
        self._schedule()

    def _cancel_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    # -- choosing pages ------------------------------------------------------------------------

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if self._quiet or not current.isValid():
            return
        self.pageChosen.emit(current.row() + 1)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        before = self.currentIndex()
        super().mousePressEvent(event)
        index = self.indexAt(event.position().toPoint())
        # a click on the page that is already current chooses it again (currentChanged is silent)
        if (
            event.button() == Qt.MouseButton.LeftButton
            and index.isValid()
            and index == before
            and index == self.currentIndex()
        ):
            self.pageChosen.emit(index.row() + 1)

    def focusInEvent(self, event: QFocusEvent) -> None:
        # QAbstractItemView makes the first row current on focus when none is: not a choice
        self._quiet = True
        try:
            super().focusInEvent(event)
        finally:
            self._quiet = False

    # -- geometry ------------------------------------------------------------------------------

    def _compute_cell_width(self) -> int:
        bar = self.verticalScrollBar()
        extent = (
            0
            if bar.isVisible()
            else self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self)
        )
        return max(MIN_THUMB_WIDTH + 2 * (BAR_WIDTH + BAR_GAP), self.viewport().width() - extent)

    def resizeEvent(self, event: QResizeEvent) -> None:
        width = self._compute_cell_width()
        if width != self._cell_width:
            self._cell_width = width
            # the cells' size follows the width: make the view ask the delegate again
            with contextlib.suppress(RuntimeError):
                self.scheduleDelayedItemsLayout()
        super().resizeEvent(event)
        self._schedule()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._schedule()
