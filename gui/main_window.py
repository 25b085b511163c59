"""The main window: queue (left), page view (centre), result view (right), toolbar, status bar.

All work goes through the `Controller`; this module only wires widgets to it. Pages shown are
rendered in worker threads; boxes appear as the engine reports them; the result view redraws at
most ten times a second while a page streams.

A finished page can be corrected (gui/editing.py keeps the history and the files): its blocks
edited, relabelled, deleted, merged, split and moved in reading order from the Edit menu, a box's
menu or the keys, boxes dragged on the page, a region or the page OCRed again (gui/ocr_again.py);
Ctrl+Z / Ctrl+Shift+Z undo and redo, per document.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from html import escape as html_escape
from pathlib import Path
from typing import Any

import shiboken6
from PIL import Image
from PySide6.QtCore import QMimeData, QModelIndex, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QCursor,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QIcon,
    QImage,
    QKeySequence,
    QResizeEvent,
    QTransform,
)
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSpinBox,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ocrdesk.engine import (
    FAMILIES,
    SUPPORTED_SUFFIXES,
    TASK_TITLES,
    Asked,
    Block,
    ConvertOptions,
    EditRequest,
    EditStore,
    ModelFamily,
    PageResult,
    PageStatus,
    Rotation,
    RotationStore,
    Sampling,
    Task,
    edits,
    export_folder,
    family_of,
    figure_boxes,
    overlapping,
    place_blocks,
    turn_image,
    turned_size,
)
from ocrdesk.gui.block_editor import BlockChange, BlockEditor, label_choices
from ocrdesk.gui.controller import Controller, DocItem, EngineState
from ocrdesk.gui.editing import Editor, editable
from ocrdesk.gui.export_dialog import ExportDialog
from ocrdesk.gui.help import AboutDialog, ShortcutsDialog
from ocrdesk.gui.ocr_again import OcrAgainDialog, OcrChoice, ocr_again
from ocrdesk.gui.page_view import Legend, PageView
from ocrdesk.gui.plain_text import tooltip
from ocrdesk.gui.qimage import pil_to_qimage
from ocrdesk.gui.queue_view import QueueView
from ocrdesk.gui.recent import RecentFiles, RecentMenu
from ocrdesk.gui.result_view import ResultView
from ocrdesk.gui.review_list import ReviewEntry, ReviewList
from ocrdesk.gui.search import BlockSource, SearchBar
from ocrdesk.gui.settings import ENGINE_KEYS, Settings
from ocrdesk.gui.thumbnails import CHECK_COLOR, ThumbnailStrip
from ocrdesk.resources import RESOURCES

log = logging.getLogger(__name__)

#: The model menu: auto (from the served model's name), then every family of the registry.
MODEL_CHOICES: list[tuple[str, ModelFamily | None]] = [
    ("Model: auto", None),
    *((spec.title, family) for family, spec in FAMILIES.items()),
]


def check_text(result: PageResult | None, reviewed: bool = False) -> str:
    """Why a person should look at a page ("loop, uncovered"), empty when there is no reason
    (or a person marked the page reviewed)."""
    if result is None or reviewed:
        return ""
    return ", ".join(dict.fromkeys(f.kind.value for f in result.flags))


def figure_urls(image: Image.Image, blocks: list[Block]) -> dict[int, str]:
    """Data URLs of the page's figure crops, by block index (worker thread), cut where the
    export cuts them (engine.figure_boxes)."""
    urls = {}
    for index, box in figure_boxes(blocks):
        crop = image.crop(box)
        crop.thumbnail((640, 640))
        buffer = io.BytesIO()
        crop.convert("RGB").save(buffer, format="JPEG", quality=85)
        urls[index] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    return urls


BOX_STEP = 0.005  # how far the keyboard moves a box edge: half a percent of the page
ENGINE_LABEL_WIDTH = 420  # px of engine status line, at most (it shares the status bar)
IMAGE_CACHE = 8  # page images kept, the one shown and those beside it among them
#: Over a page turned since it was read.
STALE_TEXT = "Turned since it was read: Run reads it again upright."
ENGINE_COLORS = {
    EngineState.READY: "#2a8a2a",
    EngineState.STARTING: "#b58900",
    EngineState.ERROR: "#d33",
    EngineState.NONE: "#d33",
    EngineState.STOPPED: "#666",
}


class EngineLabel(QLabel):
    """The engine's light and line, the line elided to at most ENGINE_LABEL_WIDTH, and to the
    width the status bar gives it when a narrow window gives it less."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._color, self._line = "", ""
        self._room: int | None = None  # the width laid out, once it was

    def set_status(self, color: str, line: str) -> None:
        self._color, self._line = color, line
        self.updateGeometry()
        self._render()

    def line(self) -> str:
        """The whole line, not elided."""
        return self._line

    def _bullet(self) -> int:
        return self.fontMetrics().horizontalAdvance("● ") + 6  # + the bold light's own width

    def sizeHint(self) -> QSize:
        # + 2: the advance is rounded, and elidedText cuts a line a fraction too long
        line = min(self.fontMetrics().horizontalAdvance(self._line) + 2, ENGINE_LABEL_WIDTH)
        return QSize(self._bullet() + line, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(min(self.sizeHint().width(), 160), super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._room = event.size().width()
        self._render()

    def _render(self) -> None:
        width = self.sizeHint().width()
        if self._room is not None and self._room < width:  # squeezed: a narrow window
            width = self._room
        shown = self.fontMetrics().elidedText(
            self._line, Qt.TextElideMode.ElideRight, max(width - self._bullet(), 0)
        )
        self.setText(f"<b style='color:{self._color}'>●</b> {html_escape(shown)}")


class MainWindow(QMainWindow):
    """OCRDesk's window."""

    closed = Signal()

    def __init__(self, controller: Controller, settings: Settings) -> None:
        super().__init__()
        self.controller = controller
        self.settings = settings
        self.setWindowTitle("OCRDesk")
        icon = RESOURCES / "ocrdesk.svg"
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)
        self.resize(1400, 860)
        self.current: tuple[int, int] | None = None  # (doc id, page)
        self._images: OrderedDict[tuple[int, int], QImage] = OrderedDict()
        self._password_dialogs: dict[int, QInputDialog] = {}  # doc id -> the one asking
        self._figures: dict[tuple[int, int], dict[int, str]] = {}
        self._render_token = 0
        self._boxes_wait = False  # the current page's boxes wait for its image
        self._loading: tuple[int, int] | None = None  # the page whose image is being rendered
        self._last_stats = 0.0
        self._quitting = False  # a person said Quit during a run (or a signal closes it)
        self._quit_box: QMessageBox | None = None
        # The controller's: its writes and rebuilds may outlive the window by a moment.
        self.editor = Editor(controller.library, controller.spawn, controller)
        controller.closing.connect(self.editor.flush)  # no rebuild timer outlives the loop
        self.ocr_tasks: set[asyncio.Task[Any]] = set()  # regions and pages being OCRed again
        self._build()
        self._connect()
        self._apply_settings()
        self._update_doc_actions()

    # -- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.queue = QueueView(self.controller, self)
        self.page_view = PageView(self)
        self.legend = Legend(self)
        self.result_view = ResultView(self)

        nav = QHBoxLayout()
        self.prev_button = self._tool("◀", "Previous page (PgUp)", self.prev_page)
        self.next_button = self._tool("▶", "Next page (PgDown)", self.next_page)
        self.page_label = QLabel("–", self)
        nav.addWidget(self.prev_button)
        nav.addWidget(self.page_label)
        nav.addWidget(self.next_button)
        nav.addSpacing(12)
        nav.addWidget(self._tool("Fit width", "Fit width", self.page_view.fit_width))
        nav.addWidget(self._tool("Fit page", "Fit page", self.page_view.fit_page))
        nav.addWidget(self._tool("100%", "Actual size (Ctrl+0)", self.page_view.actual_size))
        nav.addStretch(1)
        centre = QWidget(self)
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        self.search_bar = SearchBar(self)
        self._search_doc: int | None = None  # the document the find bar searches
        self.search_bar.matchChosen.connect(self._search_match)
        centre_layout.addWidget(self.search_bar)
        centre_layout.addLayout(nav)
        self.check_label = QLabel(self)
        self.check_label.setObjectName("page-checks")
        self.check_label.setTextFormat(Qt.TextFormat.PlainText)
        self.check_label.setWordWrap(True)
        self.check_label.setStyleSheet(
            f"background: {CHECK_COLOR.name()}; color: white; padding: 3px 6px;"
        )
        self.check_label.hide()
        centre_layout.addWidget(self.check_label)
        self.thumbs = ThumbnailStrip(self)
        self.thumbs.setFixedWidth(130)
        pages = QHBoxLayout()
        pages.setSpacing(2)
        pages.addWidget(self.thumbs)
        pages.addWidget(self.page_view, 1)
        centre_layout.addLayout(pages, 1)
        centre_layout.addWidget(self.legend)

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.queue, 1)
        self.doc_buttons = QHBoxLayout()
        left_layout.addLayout(self.doc_buttons)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(centre)
        self.splitter.addWidget(self.result_view)
        self.splitter.setSizes([260, 700, 520])
        self.setCentralWidget(self.splitter)

        # actions
        self.open_action = self._action("&Open…", QKeySequence.StandardKey.Open, self.open_files)
        self.paste_action = self._action("&Paste image", QKeySequence.StandardKey.Paste, self.paste)
        self.run_action = self._action("&Run", "Ctrl+R", self.run)
        self.confidence_action = self._action("Ask for &confidence", None, self._set_confidence)
        self.confidence_action.setCheckable(True)
        self.confidence_action.setChecked(bool(self.settings.get("run/confidence")))
        self.confidence_action.setToolTip(
            "Ask the server for token probabilities: each block gets a confidence, and blocks "
            "the model was unsure of are tinted and flagged for review (next run)"
        )
        self.stop_action = self._action("&Stop", "Esc", self.controller.stop)
        self.export_action = self._action("&Export…", "Ctrl+E", self.export_dialog)
        self.export_all_action = self._action("Export &all…", "Ctrl+Shift+E", self.export_all)
        self.copy_page_action = self._action("Copy page markdown", "Ctrl+Shift+C", self.copy_page)
        self.copy_doc_action = self._action("Copy document markdown", None, self.copy_document)
        self.open_folder_action = self._action("Open output folder", None, self.open_output)
        self.clear_finished_action = self._action(
            "C&lear finished documents", None, self.clear_finished
        )
        self.clear_finished_action.setToolTip(
            "Remove finished documents from the queue and history (their exports stay)"
        )
        self.run_again_action = self._action("Run &again", None, self.run_again_selected)
        self.unlock_action = self._action("&Unlock…", None, self.unlock_selected)
        self.unlock_action.setToolTip("Give the password of an encrypted PDF")
        self.settings_action = self._action("&Settings…", "Ctrl+,", self.open_settings)
        # Ctrl+Q on every platform: QKeySequence.Quit is empty on some desktops (GNOME, Windows).
        self.quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        self.find_action = self._action("&Find…", QKeySequence.StandardKey.Find, self.open_find)
        self.find_next_action = self._action(
            "Find next", QKeySequence.StandardKey.FindNext, lambda: self.search_bar.step(1)
        )
        self.find_prev_action = self._action(
            "Find previous",
            QKeySequence.StandardKey.FindPrevious,
            lambda: self.search_bar.step(-1),
        )
        self.shortcuts_action = self._action("&Keyboard shortcuts", "F1", self.show_shortcuts)
        self.about_action = self._action("&About OCRDesk", None, self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.remove_action = self._action("Remove from queue", "Del", self._delete_key)
        self.retry_action = self._action("Retry failed pages", "Ctrl+Shift+R", self.retry_selected)
        self.pause_action = self._action("&Pause document", "Ctrl+Shift+P", self.pause_selected)
        self.cancel_doc_action = self._action(
            "&Cancel document", "Ctrl+Shift+X", self.cancel_selected
        )
        for action, text in (
            (self.pause_action, "Pause"),
            (self.cancel_doc_action, "Cancel"),
            (self.retry_action, "Retry failed"),
            (self.remove_action, "Remove"),
        ):
            action.setIconText(text)  # what a text-only tool button shows
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            self.doc_buttons.addWidget(button)
        self.doc_buttons.addStretch(1)
        self.prev_page_action = self._action("Previous page", "PgUp", self.prev_page)
        self.next_page_action = self._action("Next page", "PgDown", self.next_page)
        self.zoom_in_action = self._action(
            "Zoom in", QKeySequence.StandardKey.ZoomIn, lambda: self.page_view.zoom_by(1.25)
        )
        self.zoom_out_action = self._action(
            "Zoom out", QKeySequence.StandardKey.ZoomOut, lambda: self.page_view.zoom_by(0.8)
        )
        self.actual_size_action = self._action("Actual size", "Ctrl+0", self.page_view.actual_size)
        self.fit_width_action = self._action("Fit width", "Ctrl+1", self.page_view.fit_width)
        self.fit_page_action = self._action("Fit page", "Ctrl+2", self.page_view.fit_page)
        self.raw_action = self._action("Raw output with tags", "Ctrl+U", self._toggle_raw)
        # As Evince and most viewers turn pages (Ctrl+Shift+L/R are taken: label, retry).
        self.rotate_left_action = self._action(
            "Rotate page &left", "Ctrl+Left", lambda: self.rotate_page(-1)
        )
        self.rotate_right_action = self._action(
            "Rotate page ri&ght", "Ctrl+Right", lambda: self.rotate_page(1)
        )
        for action, way in ((self.rotate_left_action, "anti"), (self.rotate_right_action, "")):
            action.setToolTip(f"Turn the page shown a quarter {way}clockwise: it is OCRed so")
        self._page_turns: dict[int, tuple[Path, dict[int, Rotation], dict[int, Rotation]]] = {}
        self._rereading: set[tuple[int, int]] = set()  # turned pages being read again
        # The keyboard's way to link the views: step through the page's boxes in reading order,
        # each highlighted on the page and in the result, as a click on it would.
        self.next_block_action = self._action("Next block", "Ctrl+Down", lambda: self.step_block(1))
        self.prev_block_action = self._action(
            "Previous block", "Ctrl+Up", lambda: self.step_block(-1)
        )
        self.next_check_action = self._action(
            "Next page to check", "F8", lambda: self.step_check(1)
        )
        self.prev_check_action = self._action(
            "Previous page to check", "Shift+F8", lambda: self.step_check(-1)
        )
        self.review_list = ReviewList(self)
        self.review_list.pageChosen.connect(self.show_page)
        self.review_dock = QDockWidget("Needs review", self)
        self.review_dock.setObjectName("needs-review-dock")
        self.review_dock.setWidget(self.review_list)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.review_dock)
        self.review_dock.hide()
        self._review_dock_shown = False
        self._review_timer = QTimer(self)  # one refresh for a burst of finished pages
        self._review_timer.setSingleShot(True)
        self._review_timer.setInterval(300)
        self._review_timer.timeout.connect(self._refresh_review)
        self.review_action = self._action("Mark page &reviewed", "Ctrl+M", self.toggle_reviewed)
        self.review_action.setCheckable(True)
        self._reviewed_pages: dict[int, set[int]] = {}  # doc id -> pages (EditStore.reviewed)
        self.log_action = self._action("Engine &log", "Ctrl+L", self.show_log)
        self.engine_start_action = self._action("Start &engine", None, self.apply_engine_settings)
        self.engine_stop_action = self._action(
            "Stop e&ngine", None, lambda: self.controller.stop_engine()
        )
        self.engine_stop_action.setToolTip("Stop the local vLLM server (frees the GPU)")
        self.stop_action.setEnabled(False)

        self.recent = RecentFiles(self.settings.q)
        self.recent_menu = RecentMenu(self.recent, self)
        self.recent_menu.fileChosen.connect(lambda path: self.open_paths([path]))
        menu = self.menuBar().addMenu("&File")
        for entry in (
            self.open_action, self.recent_menu.menuAction(), self.paste_action,
            self.unlock_action, None,
            self.export_action, self.export_all_action, self.open_folder_action, None,
            self.clear_finished_action, None, self.settings_action, None, self.quit_action,
        ):  # fmt: skip
            menu.addSeparator() if entry is None else menu.addAction(entry)
        self._build_edit_actions()
        edit = self.menuBar().addMenu("&Edit")
        for entry in (
            self.undo_action, self.redo_action, None, *self.block_actions(), None,
            self.copy_page_action, self.copy_doc_action, self.remove_action, None,
            self.find_action, self.find_next_action, self.find_prev_action,
        ):  # fmt: skip
            edit.addSeparator() if entry is None else edit.addAction(entry)
        view = self.menuBar().addMenu("&View")
        for entry in (
            self.prev_page_action, self.next_page_action, None, self.zoom_in_action,
            self.zoom_out_action, self.actual_size_action, self.fit_width_action,
            self.fit_page_action, None, self.rotate_left_action, self.rotate_right_action, None,
            self.next_block_action, self.prev_block_action, None,
            self.next_check_action, self.prev_check_action, self.review_action,
            self.review_dock.toggleViewAction(), None,
            self.raw_action, self.log_action,
        ):  # fmt: skip
            view.addSeparator() if entry is None else view.addAction(entry)
        run_menu = self.menuBar().addMenu("&Run")
        for entry in (
            self.run_action, self.stop_action, None, self.pause_action, self.cancel_doc_action,
            self.retry_action, self.run_again_action, None, self.confidence_action, None,
            self.engine_start_action, self.engine_stop_action,
        ):  # fmt: skip
            run_menu.addSeparator() if entry is None else run_menu.addAction(entry)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_action)

        bar = QToolBar("Main", self)
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        self.addToolBar(bar)
        bar.addAction(self.open_action)
        self.task_combo = QComboBox(self)
        for task, title in TASK_TITLES.items():
            self.task_combo.addItem(title, task.value)
        self.task_combo.setToolTip("What the model should do")
        self.prompt_edit = QLineEdit(self)
        self.prompt_edit.setPlaceholderText("text to locate / prompt")
        self.prompt_edit.setMinimumWidth(180)
        self.family_combo = QComboBox(self)
        for title, family in MODEL_CHOICES:
            self.family_combo.addItem(title, family.value if family else "auto")
        self.dpi_spin = QSpinBox(self)
        self.dpi_spin.setRange(72, 400)
        self.dpi_spin.setSuffix(" dpi")
        bar.addWidget(self.task_combo)
        self.prompt_widget = bar.addWidget(self.prompt_edit)
        bar.addWidget(self.family_combo)
        bar.addWidget(self.dpi_spin)
        bar.addSeparator()
        bar.addAction(self.run_action)
        bar.addAction(self.stop_action)
        bar.addAction(self.export_action)

        # The engine's status lives in the status bar's permanent area, not in the tool bar: a
        # tool bar too narrow for its widgets (1024 px with the prompt field, or a long error)
        # moves its last ones into its overflow menu, and this status must stay in sight.
        engine = QWidget(self)
        engine.setObjectName("engine")
        row = QHBoxLayout(engine)
        row.setContentsMargins(0, 0, 0, 0)
        self.engine_label = EngineLabel(engine)
        self.engine_label.setObjectName("engine-status")
        self.engine_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Tool buttons: as wide as their text (a push button is 80 px at least).
        self.engine_settings = QToolButton(engine)
        self.engine_settings.setText("Engine settings…")
        self.engine_settings.clicked.connect(self.open_settings)
        self.engine_log = QToolButton(engine)
        self.engine_log.setText("Log")
        self.engine_log.setToolTip("The engine's log (Ctrl+L)")
        self.engine_log.clicked.connect(self.show_log)
        for widget in (self.engine_label, self.engine_settings, self.engine_log):
            row.addWidget(widget)
        # The names the tool bar's items had: what is shown and hidden with the state.
        self.engine_settings_item = self.engine_settings
        self.engine_log_item = self.engine_log

        self.stats_label = QLabel("0 of 0 pages done", self)
        self.statusBar().addPermanentWidget(engine)
        self.statusBar().addPermanentWidget(self.stats_label)
        self._task_changed()
        self._engine_status(self.controller.state, self.controller.detail)

    def _build_edit_actions(self) -> None:
        group = self.editor.undo_group
        self.undo_action = group.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.redo_action = group.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)
        self.edit_block_action = self._action("&Edit block…", "F2", lambda: self.edit_block())
        self.label_action = self._action("Change &label…", "Ctrl+Shift+L", self.change_label)
        # Del deletes the highlighted block while the page or the result has the focus (and
        # removes the chosen documents elsewhere): one key, one action (`remove_action`).
        self.delete_block_action = self._action("&Delete block", None, self.delete_block)
        self.delete_block_action.setToolTip("Delete the block (Del on the page)")
        self.merge_action = self._action("&Merge with next block", "Ctrl+J", self.merge_block)
        self.split_action = self._action(
            "&Split block at cursor…", "Ctrl+Shift+J", lambda: self.edit_block(split=True)
        )
        self.move_up_action = self._action("Move block &up", "Alt+Up", lambda: self.move_block(-1))
        self.move_down_action = self._action(
            "Move block do&wn", "Alt+Down", lambda: self.move_block(1)
        )
        self.region_action = self._action("OCR a &region", "Ctrl+Shift+B", self._region_mode)
        self.region_action.setCheckable(True)
        self.region_action.setToolTip(
            "Draw a box on the page to OCR that region again (or Shift+drag at any time)"
        )
        self.ocr_page_action = self._action("&OCR page again…", "Ctrl+Shift+O", self.ocr_page)
        self.box_menu = QMenu("&Box", self)
        # The keyboard's way to move a box (Shift+arrows) and to resize it by its right and
        # bottom edges (Ctrl+Shift+arrows), while the page has the focus (arrows elsewhere
        # keep their own meaning: Shift+Down extends the queue's selection).
        self.box_actions: list[QAction] = []
        for name, keys, shift in (
            ("Move box left", "Shift+Left", (-1, 0, -1, 0)),
            ("Move box right", "Shift+Right", (1, 0, 1, 0)),
            ("Move box up", "Shift+Up", (0, -1, 0, -1)),
            ("Move box down", "Shift+Down", (0, 1, 0, 1)),
            ("Narrow box", "Ctrl+Shift+Left", (0, 0, -1, 0)),
            ("Widen box", "Ctrl+Shift+Right", (0, 0, 1, 0)),
            ("Shorten box", "Ctrl+Shift+Up", (0, 0, 0, -1)),
            ("Lengthen box", "Ctrl+Shift+Down", (0, 0, 0, 1)),
        ):
            action = QAction(name, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(lambda _=False, by=shift: self.nudge_box(by))
            self.page_view.addAction(action)
            self.box_menu.addAction(action)
            self.box_actions.append(action)

    def nudge_box(self, by: tuple[int, int, int, int]) -> None:
        """Move the highlighted block's box edges by `by` steps of BOX_STEP of the page."""
        target = self._block_target()
        if target is None or not target[2][target[3]].boxes:
            return
        doc_id, number, blocks, index = target
        width, height = self.page_view.page_size
        step_x, step_y = BOX_STEP * width, BOX_STEP * height
        x1, y1, x2, y2 = blocks[index].boxes[0]
        dx1, dy1, dx2, dy2 = by
        box = (x1 + dx1 * step_x, y1 + dy1 * step_y, x2 + dx2 * step_x, y2 + dy2 * step_y)
        if dx1 == dx2 and dy1 == dy2:  # a move: the box stays whole on the page
            shift_x = max(-box[0], min(0.0, width - box[2]))
            shift_y = max(-box[1], min(0.0, height - box[3]))
            box = (box[0] + shift_x, box[1] + shift_y, box[2] + shift_x, box[3] + shift_y)
            name = "Move box"
        else:  # a resize: at least a step wide and high, within the page
            box = (
                x1,
                y1,
                min(width, max(x1 + step_x, box[2])),
                min(height, max(y1 + step_y, box[3])),
            )
            name = "Resize box"
        if box != blocks[index].boxes[0]:
            self._change(doc_id, number, edits.set_box(blocks, index, box), name, index)

    def block_actions(self) -> list[QAction | None]:
        """The block and page corrections, in menu order (None: a separator)."""
        return [
            self.edit_block_action, self.label_action, self.delete_block_action,
            self.merge_action, self.split_action, self.move_up_action, self.move_down_action,
            None, self.box_menu.menuAction(), None, self.region_action, self.ocr_page_action,
        ]  # fmt: skip

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def _action(self, text: str, shortcut: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _connect(self) -> None:
        c = self.controller
        c.docAdded.connect(self._doc_added)
        c.docChanged.connect(self._doc_changed)
        c.docRemoved.connect(self._doc_removed)
        c.pageChanged.connect(self._page_changed)
        c.pageBoxes.connect(self._page_boxes)
        c.pageText.connect(self._page_text)
        c.engineStatus.connect(self._engine_status)
        c.runningChanged.connect(self._running)
        c.statsChanged.connect(self._stats)
        # A method, not a lambda: Qt drops the connection with the window, and the controller
        # (which outlives it) may still have a message to give while it closes.
        c.message.connect(self._show_message)
        c.passwordNeeded.connect(self._ask_password)
        self.queue.selectionModel().currentChanged.connect(lambda *_: self._queue_current())
        self.queue.selectionModel().selectionChanged.connect(lambda *_: self._update_doc_actions())
        self.queue.customContextMenuRequested.connect(self._queue_menu)
        self.queue.activated.connect(self._queue_activated)
        self.task_combo.currentIndexChanged.connect(self._task_changed)
        self.page_view.boxClicked.connect(self._box_clicked)
        self.page_view.boxHovered.connect(self._box_hovered)
        self.page_view.boxActivated.connect(lambda index: self.edit_block(index))
        self.page_view.boxMenu.connect(self._block_menu)
        self.page_view.boxMoved.connect(self._box_moved)
        self.page_view.regionDrawn.connect(self._region_drawn)
        self.page_view.highlightChanged.connect(lambda _: self._update_edit_actions())
        self.result_view.blockActivated.connect(self._result_block_activated)
        self.result_view.blockMenu.connect(self._result_block_menu)
        self.editor.pageEdited.connect(self._page_edited)
        self.editor.message.connect(self._show_message)
        self.page_view.labelsChanged.connect(self.legend.set_labels)
        self.thumbs.pageChosen.connect(self._thumb_chosen)
        self.legend.toggled.connect(self.page_view.set_label_visible)
        self.result_view.blockClicked.connect(self._block_clicked)

    def _apply_settings(self, changed: frozenset[str] | None = None) -> None:
        """Show the settings in the tool bar: all of them, or only the `changed` keys (the
        tool bar's task and DPI are the person's until the defaults change in Settings)."""
        if changed is None or "run/task" in changed:
            task = (
                Task(self.settings.get("run/task"))
                if self.settings.get("run/task") in {t.value for t in Task}
                else Task.MARKDOWN
            )
            self.task_combo.setCurrentIndex(list(TASK_TITLES).index(task))
        if changed is None:
            self.family_combo.setCurrentIndex(
                max(0, self.family_combo.findData(self.settings.get("run/family")))
            )
        if changed is None or "run/dpi" in changed:
            self.dpi_spin.setValue(self.settings.get("run/dpi"))
        self.controller.output_folder = Path(self.settings.get("output/folder"))

    # -- engine status -------------------------------------------------------------------------

    def _engine_status(self, state: EngineState, detail: str) -> None:
        if state is EngineState.NONE:
            text = detail or "no engine configured"
        else:
            text = f"{state.value}: {detail}"
        # Elided (the whole text is in the tooltip and the log) so that a long error leaves
        # room for the buttons beside it and the status bar's messages.
        self.engine_label.set_status(ENGINE_COLORS[state], text)
        self.engine_label.setToolTip(tooltip(detail))
        self.engine_settings_item.setVisible(state in (EngineState.NONE, EngineState.ERROR))
        self.engine_log_item.setVisible(state is EngineState.ERROR)
        self.run_action.setEnabled(state is EngineState.READY)
        self.engine_start_action.setEnabled(
            state in (EngineState.STOPPED, EngineState.ERROR, EngineState.NONE)
        )
        # Stopping is for the local vLLM (it frees the GPU); a remote server is not ours to stop.
        local = self.controller.local is not None
        self.engine_stop_action.setVisible(local)
        self.engine_stop_action.setEnabled(
            local and state in (EngineState.READY, EngineState.STARTING, EngineState.ERROR)
        )
        if hasattr(self, "ocr_page_action"):  # not while the window is being built
            self._update_edit_actions()

    def _show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def show_log(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(self)
        box.setWindowTitle("Engine log")
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setText(self.controller.detail)
        box.setDetailedText(self.controller.engine_log())
        box.open()

    def open_settings(self) -> None:
        from ocrdesk.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        dialog.accepted.connect(lambda: self._settings_accepted(dialog.changed))
        dialog.open()
        self.settings_dialog = dialog

    def _settings_accepted(self, changed: frozenset[str]) -> None:
        if changed & ENGINE_KEYS:  # an unchanged engine is not restarted
            self.apply_engine_settings()
        self._apply_settings(changed)

    def apply_engine_settings(self) -> None:
        """(Re)connect the engine the settings describe."""
        s = self.settings
        if s.get("engine/mode") == "remote":
            url = s.get("engine/url")
            if url:
                self.controller.use_remote(url, s.api_key())
            else:
                self.controller.no_engine("no remote server URL set")
        else:
            self.controller.use_local(
                {
                    "model": s.get("engine/model"),
                    "vllm": s.get("engine/vllm") or None,
                    "gpus": s.get("engine/gpus") or None,
                    "gpu_memory_utilization": s.get("engine/gpu_memory_utilization"),
                    # A fixed count also caps the local server; auto leaves vLLM its own.
                    "max_num_seqs": s.get("engine/concurrency") or None,
                }
            )

    # -- toolbar -------------------------------------------------------------------------------

    def _task_changed(self) -> None:
        task = self.task()
        self.prompt_widget.setVisible(task.needs_prompt)
        self.prompt_edit.setPlaceholderText(
            "text to locate" if task is Task.LOCATE else "your prompt"
        )

    def task(self) -> Task:
        return Task(self.task_combo.currentData())

    def family(self) -> ModelFamily | None:
        value = self.family_combo.currentData()
        return None if value in (None, "auto") else ModelFamily(value)

    def options(self) -> ConvertOptions:
        task = self.task()
        prompt = self.prompt_edit.text().strip() or None
        return ConvertOptions(
            task=task,
            family=self.family(),
            prompt=prompt if task.needs_prompt else None,
            dpi=self.dpi_spin.value(),
            concurrency=int(self.settings.get("engine/concurrency")) or None,  # 0: auto
            sampling=dataclasses.replace(
                Sampling(), logprobs=bool(self.settings.get("run/confidence"))
            ),
        )

    def _set_confidence(self, on: bool) -> None:
        self.settings.set("run/confidence", bool(on))

    def run(self) -> None:
        options = self.options()
        if options.task.needs_prompt and not options.prompt:
            self.statusBar().showMessage("Write the text to locate or the prompt first.", 8000)
            self.prompt_edit.setFocus()
            return
        self.controller.output_folder = Path(self.settings.get("output/folder"))
        if self.controller.start(options) and self.current is None and self.controller.order:
            self.queue.select_doc(self.controller.order[0])

    def _running(self, running: bool) -> None:
        # Run stays enabled during a run: the chosen documents then join it.
        self.run_action.setEnabled(self.controller.state is EngineState.READY)
        self.stop_action.setEnabled(running)
        self._update_doc_actions()

    def _stats(self, text: str) -> None:
        self.stats_label.setText(text)

    # -- adding documents ----------------------------------------------------------------------

    def open_files(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(SUPPORTED_SUFFIXES))
        dialog = QFileDialog(self, "Open documents")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilters([f"Documents ({patterns})", "All files (*)"])
        dialog.filesSelected.connect(lambda files: self.open_paths(list(files)))
        dialog.open()
        self.file_dialog = dialog

    def open_paths(self, paths: list[str]) -> None:
        """Queue files and folders, and remember the files in File > Open Recent."""
        self.controller.add_paths(paths)
        for path in paths:
            if Path(path).is_file():
                self.recent.add(path)

    def paste(self) -> None:
        """Ctrl+V: a clipboard image becomes a new document; file URLs are queued."""
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and self._take_mime(mime):
            return
        self.statusBar().showMessage("The clipboard holds no image or file.", 5000)

    def _take_mime(self, mime: QMimeData) -> bool:
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                from PySide6.QtCore import QBuffer, QIODevice

                buffer = QBuffer()
                buffer.open(QIODevice.OpenModeFlag.WriteOnly)
                # PySide 6.12 takes the format as str; its stubs say bytes (b"PNG": ValueError).
                image.save(buffer, "PNG")  # type: ignore[call-overload]
                name = time.strftime("clipboard-%Y-%m-%d-%H%M%S.png")
                self.controller.add_bytes(bytes(buffer.data().data()), name)
                return True
        if mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if paths:
                self.open_paths(paths)
                return True
        return False

    def _ask_password(self, doc_id: int, wrong: bool) -> None:
        """An encrypted PDF: ask for its password (again, when the one given was wrong)."""
        item = self.controller.docs.get(doc_id)
        if item is None or not item.locked:
            return
        asking = self._password_dialogs.get(doc_id)
        if asking is not None and shiboken6.isValid(asking):
            return  # asked already: that dialog is open, over the window (window-modal)
        dialog = QInputDialog(self)
        self._password_dialogs[doc_id] = dialog
        dialog.finished.connect(lambda _: self._password_dialogs.pop(doc_id, None))
        dialog.setObjectName("pdf-password")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowTitle("Password")
        dialog.setInputMode(QInputDialog.InputMode.TextInput)
        dialog.setTextEchoMode(QLineEdit.EchoMode.Password)
        ask = f"{item.name} is encrypted. Its password:"
        dialog.setLabelText(tooltip(f"Wrong password. {ask}" if wrong else ask))
        dialog.textValueSelected.connect(lambda text: self._unlock(doc_id, text))
        dialog.rejected.connect(
            lambda: self.statusBar().showMessage(
                f"{item.name} stays locked: double-click its row to give the password", 10000
            )
        )
        dialog.open()

    def _unlock(self, doc_id: int, password: str) -> None:
        if "stays locked" in self.statusBar().currentMessage():  # said after an earlier Cancel
            self.statusBar().clearMessage()
        self.controller.unlock(doc_id, password)

    def unlock_selected(self) -> None:
        """Ask for the password of the first chosen document that is locked."""
        for doc_id in self._chosen_docs():
            item = self.controller.docs.get(doc_id)
            if item is not None and item.locked:
                self._ask_password(doc_id, wrong=item.password is not None)
                return

    def _queue_activated(self, index: QModelIndex) -> None:
        """A row double-clicked (or Enter): a locked document asks for its password."""
        item = self.controller.docs.get(self.queue.queue_model.doc_id(index.row()))
        if item is not None and item.locked:
            self._ask_password(item.id, wrong=item.password is not None)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()

    def dragMoveEvent(self, event: Any) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self._take_mime(event.mimeData()):
            event.acceptProposedAction()

    # -- queue ---------------------------------------------------------------------------------

    def _doc_added(self, doc_id: int) -> None:
        if self.current is None:
            self.queue.select_doc(doc_id)

    def _doc_changed(self, doc_id: int) -> None:
        if doc_id in self._chosen_docs():
            self._update_doc_actions()
        if self.current is not None and self.current[0] == doc_id:
            self._update_page_label()
            item = self.controller.docs[doc_id]
            self._sync_thumbs(item)
            if not item.pages:  # locked, or it cannot be opened: the result view says so
                self.result_view.changed()
            # Opened since it was shown: now its page can be rendered (once, not again while
            # that render is under way).
            if (
                not self.page_view.has_image()
                and item.document is not None
                and self._loading != self.current
            ):
                self.show_page(doc_id, self.current[1])

    def _doc_removed(self, doc_id: int) -> None:
        self._reviewed_pages.pop(doc_id, None)
        self._page_turns.pop(doc_id, None)
        self._review_timer.start()
        for key in [k for k in self._images if k[0] == doc_id]:
            del self._images[key]
        if self.current is not None and self.current[0] == doc_id:
            self.current = None
            doc = self.queue.current_doc()
            if doc is not None:
                self.show_page(doc, 1)
            else:
                self.page_view.set_page(1, 1)
                self.result_view.show_source(None)
                self.thumbs.set_document(None, 0, None)
                self._update_page_label()

    def _queue_current(self) -> None:
        self._update_doc_actions()
        doc_id = self.queue.current_doc()
        if doc_id is not None and (self.current is None or self.current[0] != doc_id):
            self.show_page(doc_id, 1)

    def _queue_menu(self, pos: Any) -> None:
        menu = QMenu(self)
        if self.unlock_action.isEnabled():  # only a locked document's menu offers it
            menu.addAction(self.unlock_action)
            menu.addSeparator()
        for entry in (
            self.run_action, self.pause_action, self.cancel_doc_action, self.retry_action,
            self.run_again_action, None, self.export_action, self.copy_doc_action, None,
            self.remove_action,
        ):  # fmt: skip
            menu.addSeparator() if entry is None else menu.addAction(entry)
        menu.popup(self.queue.viewport().mapToGlobal(pos))

    def remove_selected(self) -> None:
        for doc_id in self._chosen_docs():
            self.controller.remove(doc_id)

    def _chosen_docs(self) -> list[int]:
        return self.queue.selected_docs() or list(filter(None, [self.queue.current_doc()]))

    def pause_selected(self) -> None:
        """Pause the chosen documents, or resume them when all of them are paused."""
        docs = [self.controller.docs[d] for d in self._chosen_docs() if d in self.controller.docs]
        if docs and all(d.paused for d in docs):
            for item in docs:
                self.controller.resume(item.id)
        else:
            for item in docs:
                self.controller.pause(item.id)
        self._update_doc_actions()

    def cancel_selected(self) -> None:
        for doc_id in self._chosen_docs():
            self.controller.cancel(doc_id)

    def _update_doc_actions(self) -> None:
        """Enable the document actions that apply to the chosen documents."""
        docs = [self.controller.docs[d] for d in self._chosen_docs() if d in self.controller.docs]
        in_run = [d for d in docs if d.job is not None]
        paused = bool(in_run) and all(d.paused for d in in_run)
        self.pause_action.setText("&Resume document" if paused else "&Pause document")
        self.pause_action.setIconText("Resume" if paused else "Pause")
        self.pause_action.setEnabled(bool(in_run))
        self.cancel_doc_action.setEnabled(bool(in_run))
        self.retry_action.setEnabled(
            any(d.count(PageStatus.FAILED) and d.job is None for d in docs)
        )
        self.remove_action.setEnabled(bool(docs))
        self.unlock_action.setEnabled(any(d.locked for d in docs))
        self.run_again_action.setEnabled(
            any(d.job is None and d.document is not None and d.done for d in docs)
        )

    def run_again_selected(self) -> None:
        """Convert every page of the chosen documents again."""
        ids = self._chosen_docs()
        if ids:
            self.controller.run_again(self.options(), ids)

    def clear_finished(self) -> None:
        count = self.controller.clear_finished()
        self.statusBar().showMessage(
            f"Cleared {count} finished document(s); their exports are kept.", 8000
        )

    def retry_selected(self) -> None:
        """Convert again the failed pages (only those) of the chosen documents."""
        ids = self._chosen_docs()
        if ids:
            self.controller.start(self.options(), ids, only_failed=True)

    def _toggle_raw(self) -> None:
        self.result_view.raw_switch.toggle()

    # -- pages ---------------------------------------------------------------------------------

    def show_page(self, doc_id: int, number: int) -> None:
        """Show page `number` of document `doc_id` in both views."""
        item = self.controller.docs.get(doc_id)
        if item is None:
            return
        # pending streamed boxes belong to the page shown so far; page.blocks() has them all
        self.controller.flush_deltas()
        self.current = (doc_id, number)
        self.queue.select_doc(doc_id)
        self._sync_thumbs(item)
        self.thumbs.set_current(number)
        page = item.pages.get(number)
        if not item.pages and item.error is not None:  # locked, or it cannot be opened
            self.page_view.set_no_page()
        else:
            self.page_view.set_page(*self._page_size(doc_id, number))
        self._update_page_label()
        self.result_view.show_source(
            lambda: self._result_source(doc_id, number), f"{item.name} — page {number}"
        )
        if self.search_bar.isVisible() and self._search_doc != doc_id:
            self._search_doc = doc_id
            self.search_bar.set_document(self._search_source(doc_id), number)
        cached = self._images.get((doc_id, number))
        if cached is not None:
            self.page_view.set_image(cached)
        # Boxes come with their page's image, not before it on a blank page: a page whose
        # image is still to be rendered gets them when it arrives (_load_image).
        self._boxes_wait = cached is None and item.document is not None
        self._draw_boxes()
        self._update_edit_actions()
        # A page that finished while another was shown has its image cached but no figure
        # crops yet: those are cut from a fresh render.
        figures_missing = (
            page is not None
            and page.result is not None
            and (doc_id, number) not in self._figures
            and any(b.label == "image" for b in page.result.blocks)
        )
        if (cached is None or figures_missing) and item.document is not None:
            self._render_token += 1
            self._loading = (doc_id, number)
            self.controller.spawn(self._load_image(doc_id, number, self._render_token))

    def _page_size(self, doc_id: int, number: int) -> tuple[int, int]:
        item = self.controller.docs[doc_id]
        page = item.pages.get(number)
        if page is not None and page.result is not None and page.result.width:
            read_at = self.stale_turn(doc_id, number)
            if read_at is not None:  # the result's image, turned as the page is now
                since = Rotation((self.page_turn(doc_id, number) - read_at) % 360)
                return turned_size(page.result.width, page.result.height, since)
            return page.result.width, page.result.height
        if page is not None and page.width:
            return page.width, page.height
        image = self._images.get((doc_id, number))
        if image is not None:
            return image.width(), image.height()
        return round(8.27 * item.dpi), round(11.69 * item.dpi)

    def _draw_boxes(self) -> None:
        """Draw the current page's boxes, unless they wait for its image."""
        if self.current is None or self._boxes_wait:
            return
        # Boxes still to be signalled are in page.blocks() too: signalled now, they are
        # replaced below instead of being drawn a second time later.
        self.controller.flush_deltas()
        item = self.controller.docs.get(self.current[0])
        page = item.pages.get(self.current[1]) if item else None
        # A page turned since it was read: its boxes are of the image it was read from.
        stale = self.stale_turn(*self.current) is not None
        self.page_view.set_blocks(page.blocks() if page is not None and not stale else [])
        self._show_checks(page.result if page is not None else None)

    def _reviewed(self, doc_id: int) -> set[int]:
        """The document's pages a person marked reviewed (kept with its export)."""
        if doc_id not in self._reviewed_pages:
            item = self.controller.docs.get(doc_id)
            if item is None or item.export is None:
                return set()  # no export folder yet (history still loading): nothing kept
            self._reviewed_pages[doc_id] = EditStore(item.export.folder).reviewed()
        return self._reviewed_pages[doc_id]

    def toggle_reviewed(self) -> None:
        """Mark the page shown reviewed, or not any more (Ctrl+M): its flags stop asking for a
        look (banner, thumbnail, F8), on disk with the export, so after a restart too."""
        if self.current is None:
            return
        doc_id, number = self.current
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item is not None else None
        if item is None or item.export is None or page is None or page.result is None:
            self.statusBar().showMessage("Only a finished page can be marked reviewed.", 5000)
            self.review_action.setChecked(False)
            return
        on = number not in self._reviewed(doc_id)
        try:
            pages = EditStore(item.export.folder).set_reviewed(number, on)
        except OSError as exc:
            self.statusBar().showMessage(f"Could not keep the mark: {exc}", 10000)
            self.review_action.setChecked(not on)
            return
        self._reviewed_pages[doc_id] = pages
        self._refresh_review()
        self.thumbs.set_status(number, page.status, check_text(page.result, on))
        self._show_checks(page.result)
        state = "marked reviewed" if on else "to check again"
        self.statusBar().showMessage(f"Page {number} {state}.", 5000)

    def _show_checks(self, result: PageResult | None) -> None:
        """The page's flags over the page (engine/triage.py), and the regions they point at;
        none once a person marked the page reviewed."""
        reviewed = self.current is not None and self.current[1] in self._reviewed(self.current[0])
        self.review_action.setChecked(reviewed)
        flags = result.flags if result is not None and not reviewed else []
        text = "Check this page: " + "; ".join(f"{f.kind.value}: {f.detail}" for f in flags)
        stale = self.current is not None and self.stale_turn(*self.current) is not None
        if stale:
            text = STALE_TEXT + (f" {text}" if flags else "")
        self.check_label.setText(text)
        self.check_label.setToolTip(tooltip("\n".join(f.detail for f in flags)))
        self.check_label.setVisible(bool(flags) or stale)
        self.page_view.set_marks([f.box for f in flags if f.box is not None])

    def pages_to_review(self) -> list[ReviewEntry]:
        """The pages with flags that nobody marked reviewed, in queue and page order."""
        entries = []
        for doc_id in self.controller.order:
            item = self.controller.docs[doc_id]
            reviewed = self._reviewed(doc_id)
            for number, page in sorted(item.pages.items()):
                if page.result is None or not page.result.flags or number in reviewed:
                    continue
                details = "\n".join(f.detail for f in page.result.flags)
                entries.append(
                    ReviewEntry(doc_id, number, item.name, check_text(page.result), details)
                )
        return entries

    def _refresh_review(self) -> None:
        entries = self.pages_to_review()
        self.review_list.show_entries(entries)
        self.review_dock.setWindowTitle(f"Needs review ({len(entries)})")
        if entries and not self._review_dock_shown:  # shown once there is something to review
            self._review_dock_shown = True
            self.review_dock.show()

    def step_check(self, step: int) -> None:
        """Show the next (1) or previous (-1) page with flags, across the queue's documents."""
        pages = [(entry.doc_id, entry.number) for entry in self.pages_to_review()]
        if not pages:
            self.statusBar().showMessage("No page to check", 5000)
            return
        here = self.current or (self.controller.order[0], 0)
        order = {key: i for i, key in enumerate(self.controller.order)}
        rank = lambda key: (order.get(key[0], -1), key[1])  # noqa: E731
        later = [p for p in pages if rank(p) > rank(here)]
        earlier = [p for p in pages if rank(p) < rank(here)]
        target = (later or pages)[0] if step > 0 else (earlier or pages)[-1]
        self.show_page(*target)

    async def _load_image(self, doc_id: int, number: int, token: int) -> None:
        try:
            image = await self._render_page(doc_id, number)
            qimage = None if image is None else await asyncio.to_thread(pil_to_qimage, image)
        finally:
            if token == self._render_token:
                self._loading = None
        if not self._alive():
            return
        if qimage is not None:
            self._cache_image(doc_id, number, qimage)
        if self.current != (doc_id, number):
            return
        page = self.controller.docs[doc_id].pages.get(number)
        if qimage is not None:
            if page is None or (not page.width and page.result is None):
                # no result size yet: the rendered image defines the page's pixel space
                self.page_view.set_page(qimage.width(), qimage.height())
            self.page_view.set_image(qimage)
        if self._boxes_wait:  # with the image, or without one when it cannot be rendered
            self._boxes_wait = False
            self._draw_boxes()
        if image is not None and token == self._render_token:
            self.controller.spawn(self._prefetch(doc_id, number))
            await self._load_figures(doc_id, number, image)

    def _alive(self) -> bool:
        """False once Qt has deleted the window's widgets: a render awaited while the window
        closed comes back to nothing to draw on."""
        return shiboken6.isValid(self) and shiboken6.isValid(self.page_view)

    def has_image_of(self, doc_id: int, number: int) -> bool:
        """Whether the page's image is at hand (shown at once when its page is)."""
        return (doc_id, number) in self._images

    def _cache_image(self, doc_id: int, number: int, qimage: QImage) -> None:
        self._images[(doc_id, number)] = qimage
        self._images.move_to_end((doc_id, number))
        while len(self._images) > IMAGE_CACHE:
            self._images.popitem(last=False)

    async def _prefetch(self, doc_id: int, number: int) -> None:
        """Render the pages beside the one shown, so that paging to them shows them at once."""
        item = self.controller.docs.get(doc_id)
        for near in (number + 1, number - 1):
            if item is None or not 1 <= near <= len(item.pages):
                continue
            if (doc_id, near) in self._images or self.current != (doc_id, number):
                continue
            image = await self._render_page(doc_id, near)
            if image is not None:
                self._cache_image(doc_id, near, await asyncio.to_thread(pil_to_qimage, image))

    async def _load_figures(self, doc_id: int, number: int, image: Image.Image) -> None:
        page = self.controller.docs[doc_id].pages.get(number)
        if page is None or page.result is None:
            return
        blocks = page.result.blocks
        if not any(b.label == "image" for b in blocks):
            return
        if page.result.width and image.size != (page.result.width, page.result.height):
            image = image.resize((page.result.width, page.result.height))
        self._figures[(doc_id, number)] = await asyncio.to_thread(figure_urls, image, blocks)
        if self._alive() and self.current == (doc_id, number):
            self.result_view.changed()

    def _result_source(self, doc_id: int, number: int) -> tuple[list[Block], str, dict[int, str]]:
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item else None
        if page is None:
            if item is not None and item.locked:
                why = "Wrong password" if item.password is not None else "Locked"
                text = (
                    f"**{why}:** {item.name} is an encrypted PDF. Double-click its row in the "
                    "queue (or choose Unlock… in its menu) to give its password."
                )
                return [Block("error", (), text)], "", {}
            if item is not None and item.error:
                return [Block("error", (), f"**Cannot open it:** {item.error}")], "", {}
            return [], "", {}
        if page.result is not None:
            blocks = page.result.blocks
            if not blocks and page.result.error:
                blocks = [Block("error", (), f"**This page failed:** {page.result.error}")]
            return blocks, page.result.raw, self._figures.get((doc_id, number), {})
        return page.blocks(), page.raw_text, {}

    def _update_page_label(self) -> None:
        if self.current is None:
            self.page_label.setText("–")
            return
        doc_id, number = self.current
        item = self.controller.docs.get(doc_id)
        if item is not None and not item.pages:  # not "page 1 of 0": say why it has none
            if item.locked:
                self.page_label.setText("locked: password needed")
                self.page_label.setToolTip(
                    "An encrypted PDF: double-click its row in the queue (or Unlock… in its "
                    "menu) to give its password."
                )
            else:
                self.page_label.setText("cannot open" if item.error else "opening…")
                self.page_label.setToolTip(item.error or "")
            return
        self.page_label.setToolTip("")
        total = len(item.pages) if item else 0
        page = item.pages.get(number) if item else None
        status = page.status.value if page else ""
        if page is not None and page.result is not None and page.result.edited:
            status += " · edited"
        self.page_label.setText(f"page {number} of {total}  {status}")

    def _sync_thumbs(self, item: DocItem) -> None:
        """Point the thumbnail strip at `item` (kept as it is when it shows it already)."""
        if self.thumbs.doc_id == item.id and self.thumbs.page_count() == len(item.pages):
            return
        doc_id = item.id
        self.thumbs.set_document(
            doc_id,
            len(item.pages),
            lambda n: self._thumbnail(doc_id, n),
        )
        reviewed = self._reviewed(doc_id)
        for number, page in item.pages.items():
            self.thumbs.set_status(number, page.status, check_text(page.result, number in reviewed))

    # -- turning pages -------------------------------------------------------------------------

    def _rotation_store(self, item: DocItem, *, claim: bool = False) -> RotationStore:
        """Where the document's page turns are kept: the folder its export is written to, or
        will be at its first run (with `claim`, chosen now, as a pasted image's is, so that
        the run writes there and finds the turns)."""
        if item.export is not None:
            return RotationStore(item.export.folder, item.export.source)
        source = item.source if isinstance(item.source, str) else item.name
        folder = item.home
        if folder is None:
            out = self.controller.output_folder
            others = [d for d in self.controller.docs.values() if d is not item]
            taken = {
                d.export.folder.name
                for d in others
                if d.export is not None and d.export.folder.parent == out
            } | {d.home.name for d in others if d.home is not None}
            folder = export_folder(out, item.stem, taken)
            if claim:
                item.home = folder
        return RotationStore(folder, source)

    def _turns(self, doc_id: int) -> tuple[dict[int, Rotation], dict[int, Rotation]]:
        """The document's turned pages and those turned since they were read (kept with its
        export, read once per folder)."""
        item = self.controller.docs.get(doc_id)
        if item is None:
            return {}, {}
        store = self._rotation_store(item)
        known = self._page_turns.get(doc_id)
        if known is None or known[0] != store.folder:
            known = (store.folder, store.load(), store.stale())
            self._page_turns[doc_id] = known
        return known[1], known[2]

    def page_turn(self, doc_id: int, number: int) -> Rotation:
        """How far page `number` is turned before it is OCRed."""
        return self._turns(doc_id)[0].get(number, Rotation.NONE)

    def stale_turn(self, doc_id: int, number: int) -> Rotation | None:
        """The turn a page's result was read at, when the page was turned since (None: the
        result, if any, is of the page as it is turned now)."""
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item is not None else None
        if page is None or page.result is None:
            return None
        return self._turns(doc_id)[1].get(number)

    def rotate_page(self, quarters: int) -> None:
        """Turn the page shown `quarters` quarter turns clockwise (negative: anticlockwise)
        before it is OCRed; a page read already is then read again by the next Run."""
        if self.current is None:
            return
        doc_id, number = self.current
        item = self.controller.docs.get(doc_id)
        if item is None or item.document is None:
            self.statusBar().showMessage("Only a page that is open can be turned.", 5000)
            return
        if item.job is not None:
            self.statusBar().showMessage(
                "A page is turned before or after its document's run, not during it.", 8000
            )
            return
        page = item.pages.get(number)
        read = page is not None and page.result is not None and bool(page.result.width)
        turn = self.page_turn(doc_id, number).turned(quarters)
        store = self._rotation_store(item, claim=True)
        try:
            turns = store.set(number, turn, read=read)
            stale = store.stale()
        except OSError as exc:
            self.statusBar().showMessage(f"Could not keep the turn: {exc}", 10000)
            return
        self._page_turns[doc_id] = (store.folder, turns, stale)
        self._images.pop((doc_id, number), None)
        self._figures.pop((doc_id, number), None)
        if self.thumbs.doc_id == doc_id:
            self.thumbs.refresh(number)
        self.show_page(doc_id, number)
        again = " It is read again at the next Run." if number in stale else ""
        self.statusBar().showMessage(f"Page {number} turned to {int(turn)}°.{again}", 8000)

    def _note_reread(self, doc_id: int, number: int) -> None:
        """A page turned since it was read is read again: once its new result is in, it is
        not stale any more (the run read it as it is turned: turning waits for the run)."""
        key = (doc_id, number)
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item is not None else None
        if item is None or page is None:
            return
        if page.status is PageStatus.RUNNING and key not in self._rereading:
            if self._turns(doc_id)[1].get(number) is not None:
                self._rereading.add(key)
        elif key in self._rereading and page.status in (PageStatus.DONE, PageStatus.TRUNCATED):
            self._rereading.discard(key)
            store = self._rotation_store(item)
            try:
                store.fresh(number)
            except OSError as exc:
                log.warning("could not keep that page %s was read again: %s", number, exc)
            self._page_turns.pop(doc_id, None)

    async def _render_page(self, doc_id: int, number: int) -> Image.Image | None:
        """The page image as it is turned (what a run sends, before the model's size cap)."""
        image = await self.controller.render_page(doc_id, number)
        turn = self.page_turn(doc_id, number)
        if image is None or turn is Rotation.NONE:
            return image
        return await asyncio.to_thread(turn_image, image, turn)

    async def _thumbnail(self, doc_id: int, number: int) -> QImage | None:
        image = await self.controller.render_thumbnail(doc_id, number)
        turn = self.page_turn(doc_id, number)
        if image is None or turn is Rotation.NONE:
            return image
        return image.transformed(QTransform().rotate(int(turn)))

    def _thumb_chosen(self, number: int) -> None:
        if self.current is not None and self.current[1] != number:
            self.show_page(self.current[0], number)

    def prev_page(self) -> None:
        if self.current is not None and self.current[1] > 1:
            self.show_page(self.current[0], self.current[1] - 1)

    def next_page(self) -> None:
        if self.current is None:
            return
        item = self.controller.docs.get(self.current[0])
        if item is not None and self.current[1] < len(item.pages):
            self.show_page(self.current[0], self.current[1] + 1)

    def _page_changed(self, doc_id: int, number: int) -> None:
        self._review_timer.start()
        if self.thumbs.doc_id == doc_id:
            page = self.controller.docs[doc_id].pages.get(number)
            if page is not None:
                reviewed = number in self._reviewed(doc_id)
                self.thumbs.set_status(number, page.status, check_text(page.result, reviewed))
        self._note_reread(doc_id, number)
        if self.current != (doc_id, number):
            return
        page = self.controller.docs[doc_id].pages[number]
        self._update_page_label()
        if page.status is PageStatus.RUNNING and page.width:
            if self.page_view.page_size != (page.width, page.height):
                self.page_view.set_page(page.width, page.height)
                cached = self._images.get((doc_id, number))
                if cached is not None:
                    self.page_view.set_image(cached)
            else:
                self.page_view.clear_boxes()
            self.result_view.changed()
        elif page.result is not None:
            if page.result.width and self.page_view.page_size != (
                page.result.width,
                page.result.height,
            ):
                self.show_page(doc_id, number)
                return
            self._draw_boxes()
            self.result_view.changed()
            image = self._images.get((doc_id, number))
            if image is not None and any(b.label == "image" for b in page.result.blocks):
                self.controller.spawn(self._refigure(doc_id, number))
        else:
            self.page_view.clear_boxes()
            self.result_view.changed()
        self._update_edit_actions()

    async def _refigure(self, doc_id: int, number: int) -> None:
        image = await self._render_page(doc_id, number)
        if image is not None and self._alive():
            await self._load_figures(doc_id, number, image)

    def _page_boxes(self, doc_id: int, number: int, pairs: list[tuple[int, Block]]) -> None:
        if self.current == (doc_id, number) and not self._boxes_wait:
            self.page_view.add_blocks(pairs)

    def _page_text(self, doc_id: int, number: int) -> None:
        if self.current == (doc_id, number):
            self.result_view.changed()

    # -- linking -------------------------------------------------------------------------------

    def _box_clicked(self, index: int) -> None:
        self.page_view.highlight(index, center=False)
        self.result_view.highlight(index, scroll=True)

    def step_block(self, step: int) -> None:
        """Highlight the next (step 1) or previous (-1) visible block that has a box."""
        indices = sorted({b.index for b in self.page_view.boxes if b.isVisible()})
        if not indices:
            return
        current = self.page_view.highlighted
        if current is None or current not in indices:
            target = indices[0] if step > 0 else indices[-1]
        else:
            target = indices[(indices.index(current) + step) % len(indices)]
        self.page_view.highlight(target, center=True)
        self.result_view.highlight(target, scroll=True)

    # -- corrections ---------------------------------------------------------------------------

    def _editable_page(self) -> tuple[int, int, list[Block]] | None:
        """(doc id, page, blocks) of the page shown when it can be corrected."""
        if self.current is None:
            return None
        doc_id, number = self.current
        item = self.controller.docs.get(doc_id)
        if not editable(item, number) or item is None:
            return None
        if self.stale_turn(doc_id, number) is not None:
            return None  # its blocks are of the image it was read from: Run reads it again
        result = item.pages[number].result
        return (doc_id, number, list(result.blocks)) if result is not None else None

    def _block_target(self) -> tuple[int, int, list[Block], int] | None:
        """(doc id, page, blocks, index) of the highlighted block of a page that can be
        corrected."""
        page = self._editable_page()
        index = self.page_view.highlighted
        if page is None or index is None or not 0 <= index < len(page[2]):
            return None
        return (*page, index)

    def _update_edit_actions(self) -> None:
        # A document gets its history once it has an export folder (its first run).
        self.editor.set_active(self.current[0] if self.current is not None else None)
        page = self._editable_page()
        target = self._block_target()
        index = target[3] if target is not None else -1
        count = len(target[2]) if target is not None else 0
        for action in (self.edit_block_action, self.label_action, self.delete_block_action):
            action.setEnabled(target is not None)
        has_box = target is not None and bool(target[2][index].boxes)
        self.box_menu.setEnabled(has_box)
        for action in self.box_actions:
            action.setEnabled(has_box)
        self.split_action.setEnabled(target is not None and bool(target[2][index].text.strip()))
        self.merge_action.setEnabled(target is not None and index + 1 < count)
        self.move_up_action.setEnabled(target is not None and index > 0)
        self.move_down_action.setEnabled(target is not None and index + 1 < count)
        can_ocr = page is not None and self.controller.state is EngineState.READY
        self.ocr_page_action.setEnabled(can_ocr)
        self.region_action.setEnabled(can_ocr)
        if not can_ocr and self.region_action.isChecked():
            self.region_action.setChecked(False)
            self.page_view.set_region_mode(False)
        self.page_view.editable = page is not None

    def _change(
        self, doc_id: int, number: int, blocks: list[Block], text: str, show: int | None
    ) -> None:
        """Put `blocks` on the page as one undoable step; highlight block `show` after it."""
        if self.editor.change(doc_id, number, blocks, text) and self.current == (doc_id, number):
            self.page_view.highlight(show, center=False)
            self.result_view.highlight(show, scroll=show is not None)
            self.statusBar().showMessage(f"{text} (Ctrl+Z undoes it)", 5000)

    def _page_edited(self, doc_id: int, number: int) -> None:
        """An edit, undo or redo changed the page's result: every view shows it."""
        self._figures.pop((doc_id, number), None)  # figure crops are by block index
        if self.current == (doc_id, number):
            keep = self.page_view.highlighted
            self._page_changed(doc_id, number)
            blocks = self.controller.docs[doc_id].pages[number].blocks()
            if keep is not None and keep >= len(blocks):
                self.page_view.highlight(None, center=False)
                self.result_view.highlight(None, scroll=False)
        elif self.thumbs.doc_id == doc_id:
            self._page_changed(doc_id, number)
        self._update_edit_actions()

    def _delete_key(self) -> None:
        """Del: the highlighted block when the page or the result has the focus, else the
        chosen documents."""
        focus = QApplication.focusWidget()
        on_page = focus is not None and (
            focus is self.page_view
            or self.page_view.isAncestorOf(focus)
            or self.result_view.isAncestorOf(focus)
        )
        if on_page and self._block_target() is not None:
            self.delete_block()
        else:
            self.remove_selected()

    def edit_block(self, index: int | None = None, *, split: bool = False) -> None:
        """Open the block editor on block `index` (the highlighted one by default)."""
        if index is not None:
            self.page_view.highlight(index, center=False)
            self.result_view.highlight(index, scroll=True)
        target = self._block_target()
        if target is None:
            return
        doc_id, number, blocks, index = target
        block = blocks[index]
        labels = sorted({b.label for b in blocks})
        title = f"Block {index + 1} of page {number}"
        dialog = BlockEditor(block, labels, self, title=title)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.done_editing.connect(
            lambda change: self._block_edited(doc_id, number, index, block, change)
        )
        if split:
            dialog.put_cursor(len(block.text) // 2)
            dialog.split_button.setDefault(True)
        self.block_editor = dialog
        dialog.open()

    def _current_blocks(self, doc_id: int, number: int, index: int, block: Block) -> list[Block]:
        """The page's blocks now, or [] (and a message) when block `index` is no longer
        `block` (the page changed while a dialog was open)."""
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item else None
        blocks = list(page.result.blocks) if page is not None and page.result else []
        if index < len(blocks) and blocks[index] == block:
            return blocks
        self.statusBar().showMessage("The page changed meanwhile: the edit was not made.", 8000)
        return []

    def _block_edited(
        self, doc_id: int, number: int, index: int, block: Block, change: BlockChange
    ) -> None:
        blocks = self._current_blocks(doc_id, number, index, block)
        if not blocks:
            return
        name = "Edit block"
        if change.label != block.label:
            blocks, name = edits.set_label(blocks, index, change.label), "Change label"
        text_changed = change.text.strip() != block.text
        if text_changed:
            blocks = edits.set_text(blocks, index, change.text)
            name = "Edit block" if name == "Edit block" else "Edit block and label"
        if change.split_at is not None:
            # set_text strips the text: the cut moves with what was stripped before it
            offset = change.split_at
            if text_changed:
                offset -= len(change.text) - len(change.text.lstrip())
            try:
                blocks, name = edits.split(blocks, index, offset), "Split block"
            except ValueError:
                self.statusBar().showMessage(
                    "Put the cursor inside the text to split the block there.", 8000
                )
                return
        self._change(doc_id, number, blocks, name, index)

    def change_label(self) -> None:
        target = self._block_target()
        if target is None:
            return
        doc_id, number, blocks, index = target
        block = blocks[index]
        dialog = QInputDialog(self)
        dialog.setObjectName("block-label")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowTitle("Change label")
        dialog.setLabelText(f"Label of block {index + 1}:")
        dialog.setComboBoxEditable(True)
        dialog.setComboBoxItems(label_choices(block.label, sorted({b.label for b in blocks})))
        dialog.setTextValue(block.label)

        def chosen(label: str) -> None:
            now = self._current_blocks(doc_id, number, index, block)
            if now and label.strip() and label.strip() != block.label:
                self._change(
                    doc_id, number, edits.set_label(now, index, label), "Change label", index
                )

        dialog.textValueSelected.connect(chosen)
        self.label_dialog = dialog
        dialog.open()

    def delete_block(self) -> None:
        target = self._block_target()
        if target is not None:
            doc_id, number, blocks, index = target
            self._change(doc_id, number, edits.delete(blocks, index), "Delete block", None)

    def merge_block(self) -> None:
        target = self._block_target()
        if target is not None and target[3] + 1 < len(target[2]):
            doc_id, number, blocks, index = target
            self._change(
                doc_id, number, edits.merge_with_next(blocks, index), "Merge blocks", index
            )

    def move_block(self, delta: int) -> None:
        """Move the highlighted block `delta` places in reading order."""
        target = self._block_target()
        if target is None:
            return
        doc_id, number, blocks, index = target
        to = max(0, min(len(blocks) - 1, index + delta))
        if to != index:
            name = "Move block up" if delta < 0 else "Move block down"
            self._change(doc_id, number, edits.move(blocks, index, delta), name, to)

    def _box_moved(self, index: int, box_index: int, box: tuple[float, ...]) -> None:
        """A box was dragged or resized on the page."""
        page = self._editable_page()
        if page is None or box_index != 0 or not 0 <= index < len(page[2]):
            self._draw_boxes()  # only a block's first box moves; put the others back
            return
        doc_id, number, blocks = page
        x1, y1, x2, y2 = box
        moved = edits.set_box(blocks, index, (x1, y1, x2, y2))
        old = blocks[index].boxes[0] if blocks[index].boxes else None
        size_same = old is not None and (
            abs((old[2] - old[0]) - (x2 - x1)) < 0.5 and abs((old[3] - old[1]) - (y2 - y1)) < 0.5
        )
        self._change(doc_id, number, moved, "Move box" if size_same else "Resize box", index)

    def block_menu(self, index: int) -> QMenu:
        """Block `index`'s corrections, as its box's and its text's menu (it is highlighted)."""
        self.page_view.highlight(index, center=False)
        self.result_view.highlight(index, scroll=False)
        self._update_edit_actions()
        menu = QMenu(self)
        menu.setObjectName("block-menu")
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        for entry in self.block_actions():
            menu.addSeparator() if entry is None else menu.addAction(entry)
        return menu

    def _block_menu(self, index: int, pos: Any) -> None:
        self.block_menu(index).popup(pos)

    def _result_block_activated(self, index: int) -> None:
        self.page_view.highlight(index, center=True)
        self.edit_block(index)

    def _result_block_menu(self, index: int) -> None:
        self._block_menu(index, QCursor.pos())

    # -- OCR again -----------------------------------------------------------------------------

    def _region_mode(self, on: bool) -> None:
        self.page_view.set_region_mode(on and self.region_action.isEnabled())

    def _page_task(self, item: DocItem) -> Task:
        task = item.export.task if item.export is not None else ""
        return Task(task) if task in {t.value for t in Task} else self.controller.options.task

    def _region_drawn(self, region: tuple[float, ...]) -> None:
        """A region was drawn on the page: ask how to OCR it."""
        page = self._editable_page()
        if page is None or self.controller.state is not EngineState.READY:
            self.statusBar().showMessage("Regions are OCRed once the engine is ready.", 8000)
            return
        doc_id, number, blocks = page
        x1, y1, x2, y2 = region
        box = (x1, y1, x2, y2)
        under = overlapping(blocks, box)
        item = self.controller.docs[doc_id]
        dialog = OcrAgainDialog(self._page_task(item), overlapping=len(under), parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(lambda choice: self.ocr_region(doc_id, number, box, choice))
        dialog.rejected.connect(lambda: self.page_view.show_region(None))
        self.page_view.show_region(box)
        self.ocr_dialog = dialog
        dialog.open()

    def ocr_page(self) -> None:
        """Ask with which task (and prompt) to OCR the page shown again."""
        page = self._editable_page()
        if page is None:
            return
        doc_id, number, _ = page
        item = self.controller.docs[doc_id]
        dialog = OcrAgainDialog(
            self._page_task(item), whole_page=True, prompt=self.prompt_edit.text(), parent=self
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(lambda choice: self.ocr_region(doc_id, number, None, choice))
        self.ocr_dialog = dialog
        dialog.open()

    def ocr_region(
        self,
        doc_id: int,
        number: int,
        region: tuple[float, float, float, float] | None,
        choice: OcrChoice,
    ) -> asyncio.Task[Any]:
        """OCR `region` of the page (None: the whole page) again as `choice` says; its blocks
        go where the region is (or replace the page's), as one undoable step."""
        task = self.controller.spawn(self._ocr_region(doc_id, number, region, choice))
        self.ocr_tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self.ocr_tasks.discard(task)
            if region is not None and not self.ocr_tasks and self._alive():
                self.page_view.show_region(None)

        task.add_done_callback(done)
        return task

    async def _ocr_region(
        self,
        doc_id: int,
        number: int,
        region: tuple[float, float, float, float] | None,
        choice: OcrChoice,
    ) -> None:
        item = self.controller.docs.get(doc_id)
        page = item.pages.get(number) if item else None
        if item is None or page is None or page.result is None:
            return
        where = f"page {number}" if region is None else f"a region of page {number}"
        self.statusBar().showMessage(f"OCR of {where} ({TASK_TITLES[choice.task]})…")
        image = await self._render_page(doc_id, number)
        if image is None:
            self.statusBar().showMessage(f"Page {number} could not be rendered.", 8000)
            return
        size = (page.result.width or image.width, page.result.height or image.height)
        if image.size != size:
            image = await asyncio.to_thread(image.resize, size)
        box = region or (0.0, 0.0, float(size[0]), float(size[1]))
        family = self.family() or family_of(self.controller.model)
        try:
            found, raw, finish = await ocr_again(
                self.controller.link, image, box, choice, family, self.options().sampling
            )
        except Exception as exc:  # the server's answer, whatever went wrong, is said
            log.warning("OCR of %s failed: %s", where, exc)
            self.statusBar().showMessage(f"OCR of {where} failed: {exc}", 15000)
            return
        if not self._alive():
            return
        # The model's answer as received goes into the journal, whatever the person keeps of it.
        edits = self.editor.edits(doc_id)
        if edits is not None:
            asked = Asked.PAGE if region is None else Asked.REGION
            request = EditRequest(asked, choice.task.value, region, raw, finish)
            try:
                await asyncio.to_thread(edits.store.add_request, number, request)
            except OSError as exc:
                self.statusBar().showMessage(f"The answer could not be kept: {exc}", 15000)
            if not self._alive():
                return
        now = item.pages.get(number)
        if now is None or now.result is None:
            return
        if not found:
            self.statusBar().showMessage(f"The model found nothing in {where}.", 8000)
            return
        if region is not None:
            # Text without boxes (Free OCR, a figure's description) is the region's text.
            found = [b if b.boxes else dataclasses.replace(b, boxes=(box,)) for b in found]
        blocks = (
            found
            if region is None
            else place_blocks(now.result.blocks, found, box, replace=choice.replace)
        )
        title = TASK_TITLES[choice.task]
        name = f"OCR page again ({title})" if region is None else f"OCR region ({title})"
        show = next((k for k, b in enumerate(blocks) if b in found), None)
        self._change(doc_id, number, blocks, name, show)

    # -- find and help -------------------------------------------------------------------------

    def open_find(self) -> None:
        """Open the find bar over the document shown (Ctrl+F)."""
        if self.current is None:
            self.search_bar.open(None)
            return
        doc_id, number = self.current
        self._search_doc = doc_id
        self.search_bar.open(self._search_source(doc_id), number)

    def _search_source(self, doc_id: int) -> BlockSource:
        def blocks() -> dict[int, list[Block]]:
            item = self.controller.docs.get(doc_id)
            if item is None:
                return {}
            self.controller.flush_deltas()
            return {n: p.result.blocks if p.result else p.blocks() for n, p in item.pages.items()}

        return blocks

    def _search_match(self, number: int, index: int) -> None:
        doc_id = self._search_doc
        if doc_id is None or doc_id not in self.controller.docs:
            return
        if self.current != (doc_id, number):
            self.show_page(doc_id, number)
        self.page_view.highlight(index, center=True)
        self.result_view.highlight(index, scroll=True)

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self, self).exec()

    def show_about(self) -> None:
        AboutDialog(self.controller.model or None, self).exec()

    def _box_hovered(self, index: int) -> None:
        self.result_view.highlight(index, scroll=True)

    def _block_clicked(self, index: int) -> None:
        self.page_view.highlight(index, center=True)

    # -- export and clipboard ------------------------------------------------------------------

    def _target_docs(self) -> list[int]:
        ids: list[int] = self.queue.selected_docs()
        if not ids and self.current is not None:
            ids = [self.current[0]]
        return ids

    def export_dialog(self, *, all_docs: bool = False) -> None:
        ids = list(self.controller.order) if all_docs else self._target_docs()
        self.export_window = ExportDialog.ask(
            self, self.settings, lambda choice: self.export_to(ids, choice.folder, choice.formats)
        )

    def export_all(self) -> None:
        self.export_dialog(all_docs=True)

    def export_to(
        self, doc_ids: list[int], folder: Path, formats: Sequence[str] | None = None
    ) -> asyncio.Task[Any]:
        async def go() -> list[Path]:
            outcome = await self.controller.export(doc_ids, folder, formats)
            self.last_export = folder
            done = f"Exported {len(outcome.folders)} document(s) to {folder}"
            if outcome.problems:
                self.statusBar().showMessage(
                    f"{done}; {len(outcome.problems)} file(s) could not be written", 15000
                )
                self._export_problems(outcome.problems)
            else:
                self.statusBar().showMessage(done, 10000)
            return outcome.folders

        return self.controller.spawn(go())

    def _export_problems(self, problems: list[str]) -> None:
        """Say which files an export could not write (not modal: the run goes on)."""
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Export incomplete",
            "Some files could not be written; the others were.",
            QMessageBox.StandardButton.Close,
            self,
        )
        box.setObjectName("export-problems")
        box.setDetailedText("\n".join(problems))
        box.setInformativeText(tooltip(problems[0]) if len(problems) == 1 else "")
        box.open()

    def copy_page(self) -> None:
        if self.current is None:
            return
        page = self.controller.docs[self.current[0]].pages.get(self.current[1])
        if page is not None and page.result is not None:
            QGuiApplication.clipboard().setText(page.result.markdown)
            self.statusBar().showMessage("Page markdown copied.", 4000)

    def copy_document(self) -> None:
        ids = self._target_docs()
        text = "\n\n".join(self.controller.docs[i].markdown() for i in ids)
        QGuiApplication.clipboard().setText(text)
        self.statusBar().showMessage("Document markdown copied.", 4000)

    def open_output(self) -> None:
        folder = getattr(self, "last_export", None) or Path(self.settings.get("output/folder"))
        Path(folder).mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.statusBar().showMessage(f"No program could open the folder: it is {folder}", 15000)

    # -- closing -------------------------------------------------------------------------------

    def close_now(self) -> None:
        """Close without asking, even during a run (Quit was answered, or a stop signal)."""
        self._quitting = True
        self.close()

    def _ask_quit(self) -> None:
        if self._quit_box is not None:  # asked already: the same question, in front
            self._quit_box.raise_()
            return
        box = self._quit_box = QMessageBox(
            QMessageBox.Icon.Question,
            "Quit OCRDesk?",
            "A run is going on. Quit now?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setObjectName("quit-during-run")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setInformativeText(
            "Finished pages are kept; the documents not finished are queued again at the next "
            "start."
        )
        box.button(QMessageBox.StandardButton.Yes).setText("Quit")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda _: self._quit_answered(box))
        box.open()

    def _quit_answered(self, box: QMessageBox) -> None:
        self._quit_box = None
        if box.clickedButton() is box.button(QMessageBox.StandardButton.Yes):
            self.close_now()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.controller.running and not self._quitting:
            event.ignore()
            self._ask_quit()
            return
        self.editor.flush()
        self.controller.save_queue()
        self.settings.set("run/task", self.task().value)
        self.settings.set("run/family", self.family_combo.currentData())
        self.settings.set("run/dpi", self.dpi_spin.value())
        self.settings.sync()
        super().closeEvent(event)
        self.closed.emit()
