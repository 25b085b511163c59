"""The document queue: a list model over the controller's documents and a delegate that paints
each row (name, page count, per-page status strip, progress with ETA, or the reason it failed).
Two rows of files with one name show their folders too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from ocrdesk.engine import PageStatus
from ocrdesk.gui.controller import Controller, DocItem
from ocrdesk.gui.plain_text import tooltip
from ocrdesk.gui.thumbnails import STATUS_COLORS  # one palette for the strip and the thumbnails

DocRole = Qt.ItemDataRole.UserRole + 1

_RANK = [
    PageStatus.FAILED,
    PageStatus.RUNNING,
    PageStatus.TRUNCATED,
    PageStatus.WAITING,
    PageStatus.DONE,
]


def _fmt_eta(seconds: float) -> str:
    s = int(seconds + 0.5)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def display_name(item: DocItem, docs: Iterable[DocItem]) -> str:
    """The row's name: the file name, and its folder when another row has that name too."""
    path = item.path
    if path is None or not any(d.name == item.name and d.id != item.id for d in docs):
        return item.name
    return f"{item.name} — {path.parent.name or path.parent}"


def progress_text(item: DocItem) -> str:
    """The row's third line: the error, or pages done with ETA."""
    if item.locked:  # an encrypted PDF: say how to give its password
        if item.password is not None:
            return "wrong password: double-click to try again"
        return "locked: double-click to give its password"
    if item.error:
        return f"cannot open: {item.error}"
    total = len(item.pages)
    if not total:
        return "opening…"
    text = f"{item.finished} of {total} pages"
    failed = item.count(PageStatus.FAILED)
    truncated = item.count(PageStatus.TRUNCATED)
    if truncated:
        text += f" · {truncated} truncated"
    if failed:
        text += f" · {failed} failed"
    eta = item.eta()
    if eta is not None and item.finished < total and item.count(PageStatus.RUNNING):
        text += f" · ETA {_fmt_eta(eta)}"
    if item.paused:
        text += " · paused"
    if item.from_history:
        text += " · earlier session"
    edited = sum(1 for p in item.pages.values() if p.result is not None and p.result.edited)
    if edited:
        text += f" · {edited} edited"
    return text


class QueueModel(QAbstractListModel):
    """Rows are the controller's documents in queue order."""

    def __init__(self, controller: Controller) -> None:
        super().__init__(controller)
        self.controller = controller
        controller.docAdded.connect(self._added)
        controller.docChanged.connect(self._changed)
        controller.docRemoved.connect(self._removed)
        self._names: dict[int, str] = {}  # doc id -> name, to repaint rows that share one
        self._rows: list[int] = list(controller.order)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        item = self.controller.docs.get(self._rows[index.row()])
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return display_name(item, self.controller.docs.values())
        if role == Qt.ItemDataRole.ToolTipRole:
            source = item.source if isinstance(item.source, str) else "pasted image"
            return tooltip(f"{source}\n{progress_text(item)}")
        if role == DocRole:
            return item
        return None

    def doc_id(self, row: int) -> int:
        return self._rows[row]

    def row_of(self, doc_id: int) -> int:
        return self._rows.index(doc_id) if doc_id in self._rows else -1

    def _added(self, doc_id: int) -> None:
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.append(doc_id)
        self.endInsertRows()
        item = self.controller.docs.get(doc_id)
        if item is not None:
            self._names[doc_id] = item.name
            self._namesakes(item.name)

    def _namesakes(self, name: str) -> None:
        """Repaint the rows called `name`: whether they show their folder has changed."""
        for doc_id, other in self._names.items():
            if other == name:
                self._changed(doc_id)

    def _changed(self, doc_id: int) -> None:
        row = self.row_of(doc_id)
        if row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def _removed(self, doc_id: int) -> None:
        row = self.row_of(doc_id)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            self._rows.pop(row)
            self.endRemoveRows()
        name = self._names.pop(doc_id, None)
        if name is not None:
            self._namesakes(name)


def strip_colors(item: DocItem, slots: int) -> list[QColor]:
    """The status strip: one colour per page, or per bin of pages when there are more than
    `slots` (a bin shows its most telling status: failed, running, truncated, waiting, done)."""
    numbers = sorted(item.pages)
    if not numbers:
        return []
    if len(numbers) <= slots:
        return [STATUS_COLORS[item.pages[n].status] for n in numbers]
    colors = []
    for k in range(slots):
        part = numbers[k * len(numbers) // slots : (k + 1) * len(numbers) // slots]
        statuses = {item.pages[n].status for n in part}
        worst = next((s for s in _RANK if s in statuses), PageStatus.WAITING)
        colors.append(STATUS_COLORS[worst])
    return colors


def strip_image(item: DocItem, width: int) -> QImage | None:
    """The status strip as one `width` x 8 image (a 1-pixel gap between slots)."""
    colors = strip_colors(item, max(1, width // 3))
    if not colors or width <= 0:
        return None
    rgb = [(c.red(), c.green(), c.blue()) for c in colors]
    gap = (255, 255, 255, 0)
    row = bytearray()
    n = len(colors)
    for k in range(n):
        left, right = k * width // n, (k + 1) * width // n
        span = max(1, right - left - 1)
        r, g, b = rgb[k]
        row += bytes((r, g, b, 255)) * span
        row += bytes(gap) * (right - left - span)
    row = row[: width * 4].ljust(width * 4, b"\0")
    data = bytes(row) * 8
    return QImage(data, width, 8, width * 4, QImage.Format.Format_RGBA8888).copy()


class QueueDelegate(QStyledItemDelegate):
    """Paints name and page count, the status strip, and progress/ETA or the error."""

    ROW_HEIGHT = 58

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return QSize(220, self.ROW_HEIGHT)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        item: DocItem | None = index.data(DocRole)
        if item is None:
            return
        painter.save()
        rect: QRect = option.rect  # type: ignore[attr-defined]
        style = option.widget.style() if option.widget else None  # type: ignore[attr-defined]
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
        palette = option.palette  # type: ignore[attr-defined]
        text_color = palette.highlightedText().color() if selected else palette.text().color()
        x, y, w = rect.x() + 6, rect.y() + 4, rect.width() - 12
        font = QFont(option.font)  # type: ignore[attr-defined]
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(text_color)
        count = f"{item.page_count} p." if item.page_count else ""
        metrics = painter.fontMetrics()
        shown = index.data(Qt.ItemDataRole.DisplayRole) or item.name
        name = metrics.elidedText(shown, Qt.TextElideMode.ElideMiddle, w - 50)
        painter.drawText(QRect(x, y, w - 48, 18), Qt.AlignmentFlag.AlignLeft, name)
        font.setBold(False)
        painter.setFont(font)
        painter.drawText(QRect(x + w - 48, y, 48, 18), Qt.AlignmentFlag.AlignRight, count)
        strip = QRect(x, y + 21, w, 8)
        image = strip_image(item, strip.width())
        if image is not None:
            painter.drawImage(strip.topLeft(), image)  # one call, not one per slot
        elif item.error:
            painter.fillRect(strip, STATUS_COLORS[PageStatus.FAILED])
        line = progress_text(item)
        if item.error:
            painter.setPen(QColor(210, 50, 47) if not selected else text_color)
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        painter.setFont(small)
        line = painter.fontMetrics().elidedText(line, Qt.TextElideMode.ElideRight, w)
        painter.drawText(QRect(x, y + 32, w, 18), Qt.AlignmentFlag.AlignLeft, line)
        painter.restore()


class QueueView(QListView):
    """The queue list."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue_model = QueueModel(controller)
        self.setModel(self.queue_model)
        self.setItemDelegate(QueueDelegate(self))
        self.setUniformItemSizes(True)
        self.setAcceptDrops(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setSelectionMode(QListView.SelectionMode.ExtendedSelection)

    def current_doc(self) -> int | None:
        index = self.currentIndex()
        return self.queue_model.doc_id(index.row()) if index.isValid() else None

    def selected_docs(self) -> list[int]:
        rows = sorted(i.row() for i in self.selectionModel().selectedRows())
        return [self.queue_model.doc_id(r) for r in rows]

    def select_doc(self, doc_id: int) -> None:
        row = self.queue_model.row_of(doc_id)
        if row >= 0:  # that document alone: Del then removes it and nothing else
            flags = QItemSelectionModel.SelectionFlag
            self.selectionModel().setCurrentIndex(
                self.queue_model.index(row), flags.ClearAndSelect | flags.Rows
            )
