"""The page view: the page image with its grounding boxes, zoom, pan and a per-label legend.

Scene coordinates are the pixels of the image the model was sent (the page result's width and
height), which is where the engine puts boxes (`v / 999 * width`), so a box item's rectangle is
the block's box as it is. A page image rendered at another size is scaled to fit that space.

On a page that can be corrected (`editable`), a box is dragged to move it and dragged by an edge
or corner to resize it (`boxMoved` once the button is let go), double-clicked to edit its block
(`boxActivated`), right-clicked for its block's menu (`boxMenu`); Shift+drag, or any drag in
region mode (`set_region_mode`), draws a region to OCR again (`regionDrawn`).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSceneContextMenuEvent,
    QGraphicsSceneHoverEvent,
    QGraphicsSceneMouseEvent,
    QGraphicsView,
    QHBoxLayout,
    QWidget,
)

from ocrdesk.engine import Block, Box, label_color
from ocrdesk.gui.plain_text import tooltip
from ocrdesk.gui.thumbnails import CHECK_COLOR


def qcolor(label: str, alpha: int = 255) -> QColor:
    r, g, b = label_color(label)
    return QColor(r, g, b, alpha)


EDGE_PX = 6  # how near an edge (in screen pixels) a press grabs the edge instead of the box
MIN_SIDE = 4.0  # the smallest side (page pixels) a box is resized to
DRAG_PX = 3  # how far (screen pixels) the pointer moves before a press becomes a drag
REGION_MIN = 8.0  # the smallest region side (page pixels) worth OCRing


@dataclass(frozen=True)
class Edges:
    """Which sides of a box a drag moves: all four (a move) or those grabbed (a resize)."""

    left: bool = False
    top: bool = False
    right: bool = False
    bottom: bool = False

    @property
    def move(self) -> bool:
        return not (self.left or self.top or self.right or self.bottom)

    def cursor(self) -> Qt.CursorShape:
        if self.move:
            return Qt.CursorShape.SizeAllCursor
        if (self.left and self.top) or (self.right and self.bottom):
            return Qt.CursorShape.SizeFDiagCursor
        if (self.right and self.top) or (self.left and self.bottom):
            return Qt.CursorShape.SizeBDiagCursor
        if self.left or self.right:
            return Qt.CursorShape.SizeHorCursor
        return Qt.CursorShape.SizeVerCursor


def edges_at(rect: QRectF, pos: QPointF, margin: float) -> Edges:
    """The edges of `rect` within `margin` of `pos` (none: the pointer is inside, a move)."""
    return Edges(
        left=abs(pos.x() - rect.left()) <= margin,
        top=abs(pos.y() - rect.top()) <= margin,
        right=abs(pos.x() - rect.right()) <= margin,
        bottom=abs(pos.y() - rect.bottom()) <= margin,
    )


def dragged(rect: QRectF, edges: Edges, dx: float, dy: float, bounds: QRectF) -> QRectF:
    """`rect` after a drag by (dx, dy) of its `edges` (or all of it), kept inside `bounds` and
    at least MIN_SIDE on each side."""
    if edges.move:
        dx = max(bounds.left() - rect.left(), min(dx, bounds.right() - rect.right()))
        dy = max(bounds.top() - rect.top(), min(dy, bounds.bottom() - rect.bottom()))
        return rect.translated(dx, dy)
    left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
    if edges.left:
        left = max(bounds.left(), min(left + dx, right - MIN_SIDE))
    if edges.right:
        right = min(bounds.right(), max(right + dx, left + MIN_SIDE))
    if edges.top:
        top = max(bounds.top(), min(top + dy, bottom - MIN_SIDE))
    if edges.bottom:
        bottom = min(bounds.bottom(), max(bottom + dy, top + MIN_SIDE))
    return QRectF(QPointF(left, top), QPointF(right, bottom))


def rect_box(rect: QRectF) -> Box:
    r = rect.normalized()
    return (r.left(), r.top(), r.right(), r.bottom())


@dataclass
class _Drag:
    start: QPointF  # scene position of the press
    screen: QPoint  # screen position of the press
    rect: QRectF  # the box when pressed
    edges: Edges
    moving: bool = False


class BoxItem(QGraphicsRectItem):
    """One box of one block: coloured by label, its label as tooltip, clickable; on an
    editable page draggable by its inside (move) or its edges (resize)."""

    def __init__(
        self, view: PageView, index: int, block: Block, rect: QRectF, box_index: int = 0
    ) -> None:
        super().__init__(rect)
        self.view = view
        self.index = index
        self.box_index = box_index  # which of the block's boxes this is
        self.label = block.label
        self._drag: _Drag | None = None
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

    def hoverMoveEvent(self, event: QGraphicsSceneHoverEvent) -> None:
        if self.view.editable and self.box_index == 0:
            self.setCursor(edges_at(self.rect(), event.pos(), self.view.edge_margin()).cursor())
        else:
            self.setCursor(Qt.CursorShape.PointingHandCursor)
        super().hoverMoveEvent(event)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.view.boxClicked.emit(self.index)
            if self.view.editable and self.box_index == 0:  # a block's first box is its place
                edges = edges_at(self.rect(), event.pos(), self.view.edge_margin())
                self._drag = _Drag(event.scenePos(), event.screenPos(), self.rect(), edges)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        drag = self._drag
        if drag is None:
            return
        if not drag.moving:
            if (event.screenPos() - drag.screen).manhattanLength() < DRAG_PX:
                return
            drag.moving = True
        delta = event.scenePos() - drag.start
        self.setRect(dragged(drag.rect, drag.edges, delta.x(), delta.y(), self.view.page_rect()))

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        drag, self._drag = self._drag, None
        if drag is not None and drag.moving and self.rect() != drag.rect:
            self.view.boxMoved.emit(self.index, self.box_index, rect_box(self.rect()))
        event.accept()

    def mouseDoubleClickEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._drag = None
            self.view.boxActivated.emit(self.index)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: QGraphicsSceneContextMenuEvent) -> None:
        self.view.boxClicked.emit(self.index)
        self.view.boxMenu.emit(self.index, event.screenPos())
        event.accept()


class PageView(QGraphicsView):
    """A zoomable, pannable page with box items; emits the index of a clicked or hovered box."""

    boxClicked = Signal(int)
    boxHovered = Signal(int)
    labelsChanged = Signal(list)  # labels seen on this page
    boxActivated = Signal(int)  # a box double-clicked: edit its block
    boxMenu = Signal(int, QPoint)  # a box right-clicked: its block's menu at this screen point
    boxMoved = Signal(int, int, tuple)  # block index, box index, the new Box (page pixels)
    regionDrawn = Signal(tuple)  # a region drawn on the page: its Box (page pixels)
    highlightChanged = Signal(object)  # the highlighted block's index, or None

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
        self.editable = False  # boxes can be moved and resized, regions drawn
        self.region_mode = False  # a plain drag draws a region (else Shift+drag does)
        self._band: QGraphicsRectItem | None = None  # the region being drawn
        self._region: QGraphicsRectItem | None = None  # the region drawn, while it is OCRed
        self._band_start = QPointF()

    # -- page ----------------------------------------------------------------------------------

    def set_page(self, width: int, height: int) -> None:
        """A new page of `width` x `height` result pixels: no image yet, no boxes."""
        self._page.setVisible(True)
        self.clear_boxes()
        self.show_region(None)
        self._pixmap.setPixmap(QPixmap())
        self.page_size = (max(1, width), max(1, height))
        rect = QRectF(0, 0, *self.page_size)
        self._page.setRect(rect)
        self.scene().setSceneRect(rect)
        self._refit()

    def set_no_page(self) -> None:
        """Nothing to show (a locked document, one that cannot be opened): not even the blank
        sheet, which would read as an empty page."""
        self.set_page(1, 1)
        self._page.setVisible(False)

    def has_page(self) -> bool:
        return self._page.isVisible()

    def set_image(self, image: QImage) -> None:
        """Show the page image, scaled into the page's result pixel space."""
        pixmap = QPixmap.fromImage(image)
        self._pixmap.setPixmap(pixmap)
        width, _ = getattr(self, "page_size", (pixmap.width(), pixmap.height()))
        if pixmap.width():
            self._pixmap.setScale(width / pixmap.width())

    def has_image(self) -> bool:
        return not self._pixmap.pixmap().isNull()

    def page_rect(self) -> QRectF:
        return self._page.rect()

    def edge_margin(self) -> float:
        """EDGE_PX screen pixels in page pixels at the current zoom."""
        return EDGE_PX / max(1e-6, self.zoom())

    # -- drawing a region ----------------------------------------------------------------------

    def set_region_mode(self, on: bool) -> None:
        """In region mode a plain drag draws a region (out of it, Shift+drag does)."""
        self.region_mode = on
        self.setDragMode(
            QGraphicsView.DragMode.NoDrag if on else QGraphicsView.DragMode.ScrollHandDrag
        )
        self.viewport().setCursor(
            Qt.CursorShape.CrossCursor if on else Qt.CursorShape.OpenHandCursor
        )

    def show_region(self, box: Box | None) -> None:
        """Outline the region being OCRed again (None: no more)."""
        if self._region is not None:
            self.scene().removeItem(self._region)
            self._region = None
        if box is not None:
            x1, y1, x2, y2 = box
            self._region = self._band_item(QRectF(x1, y1, x2 - x1, y2 - y1))

    def region_shown(self) -> Box | None:
        return rect_box(self._region.rect()) if self._region is not None else None

    def _band_item(self, rect: QRectF) -> QGraphicsRectItem:
        item = QGraphicsRectItem(rect)
        pen = QPen(QColor(20, 20, 20), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        item.setPen(pen)
        item.setBrush(QBrush(QColor(255, 200, 0, 50)))
        item.setZValue(30)
        self.scene().addItem(item)
        return item

    def mousePressEvent(self, event: QMouseEvent) -> None:
        wants_region = self.region_mode or (event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if self.editable and event.button() == Qt.MouseButton.LeftButton and wants_region:
            self._band_start = self.mapToScene(event.position().toPoint())
            self._band = self._band_item(QRectF(self._band_start, self._band_start))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._band is not None:
            here = self.mapToScene(event.position().toPoint())
            rect = QRectF(self._band_start, here).normalized().intersected(self.page_rect())
            self._band.setRect(rect)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        band, self._band = self._band, None
        if band is not None:
            rect = band.rect()
            self.scene().removeItem(band)
            event.accept()
            if rect.width() >= REGION_MIN and rect.height() >= REGION_MIN:
                self.regionDrawn.emit(rect_box(rect))
            return
        super().mouseReleaseEvent(event)

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
            for k, (x1, y1, x2, y2) in enumerate(block.boxes):
                item = BoxItem(self, index, block, QRectF(x1, y1, x2 - x1, y2 - y1), k)
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
        changed = index != self.highlighted
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
        if changed:
            self.highlightChanged.emit(index)

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
                gone = self.boxes.pop(label)
                # Out of the bar now: a deferred delete waits for the event loop's next turn at
                # this level, which a window driven by qasync may not give it for a while (the
                # old page's labels then showed beside the new ones).
                self._layout.removeWidget(gone)
                gone.hide()
                gone.deleteLater()
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
