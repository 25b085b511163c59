"""The page view: the page image with its grounding boxes, zoom, pan and a per-label legend.

Scene coordinates are the pixels of the image the model was sent (the page result's width and
height), which is where the engine puts boxes (`v / 999 * width`), so a box item's rectangle is
the block's box as it is. A page image rendered at another size is scaled to fit that space.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSceneHoverEvent,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QHBoxLayout,
    QWidget,
)

from ocrdesk.engine import Block, label_color
from ocrdesk.gui.plain_text import tooltip
from ocrdesk.gui.thumbnails import CHECK_COLOR


def qcolor(label: str, alpha: int = 255) -> QColor:
    r, g, b = label_color(label)
    return QColor(r, g, b, alpha)


class BoxItem(QGraphicsRectItem):
    """One box of one block: coloured by label, its label as tooltip, clickable."""

    def __init__(self, view: PageView, index: int, block: Block, rect: QRectF) -> None:
        super().__init__(rect)
        self.view = view
        self.index = index
        self.label = block.label
        self.setToolTip(tooltip(block.label))
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setZValue(1)
        self.set_highlighted(False)

    def set_highlighted(self, on: bool) -> None:
        pen = QPen(qcolor(self.label), 3 if on else 1.5)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setBrush(QBrush(qcolor(self.label, 90 if on else 28)))
        self.setZValue(2 if on else 1)

    def hoverEnterEvent(self, event: QGraphicsSceneHoverEvent) -> None:
        self.view.boxHovered.emit(self.index)
        super().hoverEnterEvent(event)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.view.boxClicked.emit(self.index)
            event.accept()
            return
        super().mousePressEvent(event)


class PageView(QGraphicsView):
    """A zoomable, pannable page with box items; emits the index of a clicked or hovered box."""

    boxClicked = Signal(int)
    boxHovered = Signal(int)
    labelsChanged = Signal(list)  # labels seen on this page

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QColor(90, 90, 90))
        self.setAcceptDrops(False)
        self._page = QGraphicsRectItem()
        self._page.setBrush(QBrush(Qt.GlobalColor.white))
        self._page.setPen(QPen(Qt.PenStyle.NoPen))
        self.scene().addItem(self._page)
        self._pixmap = QGraphicsPixmapItem(self._page)
        self._pixmap.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.boxes: list[BoxItem] = []
        self.marks: list[QGraphicsRectItem] = []  # regions a flag points at (engine/triage.py)
        self.hidden_labels: set[str] = set()
        self.highlighted: int | None = None
        self.fit_mode: str | None = "page"  # "page", "width", or None (free zoom)

    # -- page ----------------------------------------------------------------------------------

    def set_page(self, width: int, height: int) -> None:
        """A new page of `width` x `height` result pixels: no image yet, no boxes."""
        self.clear_boxes()
        self._pixmap.setPixmap(QPixmap())
        self.page_size = (max(1, width), max(1, height))
        rect = QRectF(0, 0, *self.page_size)
        self._page.setRect(rect)
        self.scene().setSceneRect(rect)
        self._refit()

    def set_image(self, image: QImage) -> None:
        """Show the page image, scaled into the page's result pixel space."""
        pixmap = QPixmap.fromImage(image)
        self._pixmap.setPixmap(pixmap)
        width, _ = getattr(self, "page_size", (pixmap.width(), pixmap.height()))
        if pixmap.width():
            self._pixmap.setScale(width / pixmap.width())

    def has_image(self) -> bool:
        return not self._pixmap.pixmap().isNull()

    # -- boxes ---------------------------------------------------------------------------------

    def set_marks(self, regions: list[tuple[float, float, float, float]]) -> None:
        """Outline, dashed, the regions of the page a flag points at (an `uncovered` region)."""
        for item in self.marks:
            self.scene().removeItem(item)
        self.marks = []
        pen = QPen(CHECK_COLOR, 3, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for x1, y1, x2, y2 in regions:
            item = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1), self._page)
            item.setPen(pen)
            item.setBrush(
                QBrush(QColor(CHECK_COLOR.red(), CHECK_COLOR.green(), CHECK_COLOR.blue(), 40))
            )
            item.setZValue(20)
            item.setToolTip("Not covered by any box: the model may have missed text here")
            self.marks.append(item)

    def clear_boxes(self) -> None:
        for item in self.boxes:
            self.scene().removeItem(item)
        self.boxes = []
        self.set_marks([])
        self.highlighted = None
        self.labelsChanged.emit([])

    def add_blocks(self, pairs: list[tuple[int, Block]]) -> None:
        """Draw the boxes of (index, block) pairs."""
        before = {b.label for b in self.boxes}
        for index, block in pairs:
            for x1, y1, x2, y2 in block.boxes:
                item = BoxItem(self, index, block, QRectF(x1, y1, x2 - x1, y2 - y1))
                item.setVisible(block.label not in self.hidden_labels)
                self.scene().addItem(item)
                self.boxes.append(item)
        labels = sorted({b.label for b in self.boxes})
        if set(labels) != before:
            self.labelsChanged.emit(labels)

    def set_blocks(self, blocks: list[Block]) -> None:
        """Replace all boxes with those of `blocks` (index = position in the list)."""
        keep = self.highlighted
        self.clear_boxes()
        self.add_blocks(list(enumerate(blocks)))
        if keep is not None:
            self.highlight(keep, center=False)

    def set_label_visible(self, label: str, visible: bool) -> None:
        if visible:
            self.hidden_labels.discard(label)
        else:
            self.hidden_labels.add(label)
        for item in self.boxes:
            if item.label == label:
                item.setVisible(visible)

    def highlight(self, index: int | None, *, center: bool = True) -> None:
        """Emphasise block `index`'s boxes (and bring them into view)."""
        self.highlighted = index
        target: QGraphicsItem | None = None
        for item in self.boxes:
            on = item.index == index
            item.set_highlighted(on)
            if on and target is None:
                target = item
        if center and target is not None:
            self.ensureVisible(target, 40, 40)
            self.centerOn(target)

    # -- zoom ----------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float) -> None:
        factor = min(16.0, max(0.05, factor))
        self.fit_mode = None
        self.resetTransform()
        self.scale(factor, factor)

    def zoom_by(self, step: float) -> None:
        self.set_zoom(self.zoom() * step)

    def fit_page(self) -> None:
        self.fit_mode = "page"
        self._refit()

    def fit_width(self) -> None:
        self.fit_mode = "width"
        self._refit()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def _refit(self) -> None:
        rect = self.sceneRect()
        if rect.isEmpty() or self.fit_mode is None:
            return
        self.resetTransform()
        if self.fit_mode == "page":
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        else:
            width = max(1, self.viewport().width() - 4)
            factor = width / rect.width()
            self.scale(factor, factor)
            self.centerOn(rect.center().x(), rect.top())

    def resizeEvent(self, event: object) -> None:  # type: ignore[override]
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._refit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() / 120
            if steps:
                self.zoom_by(1.15**steps)
            event.accept()
            return
        super().wheelEvent(event)


class Legend(QWidget):
    """One check box per label on the page, in the label's colour; toggles its boxes."""

    toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(4, 0, 4, 0)
        self._layout.addStretch(1)
        self.boxes: dict[str, QCheckBox] = {}
        self.hidden: set[str] = set()

    def set_labels(self, labels: list[str]) -> None:
        for label in list(self.boxes):
            if label not in labels:
                self.boxes.pop(label).deleteLater()
        for label in labels:
            if label in self.boxes:
                continue
            box = QCheckBox(label, self)
            r, g, b = label_color(label)
            box.setStyleSheet(f"QCheckBox {{ color: rgb({r},{g},{b}); font-weight: bold; }}")
            box.setChecked(label not in self.hidden)
            box.toggled.connect(lambda on, lab=label: self._toggle(lab, on))
            self._layout.insertWidget(self._layout.count() - 1, box)
            self.boxes[label] = box

    def _toggle(self, label: str, on: bool) -> None:
        if on:
            self.hidden.discard(label)
        else:
            self.hidden.add(label)
        self.toggled.emit(label, on)
