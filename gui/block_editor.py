"""The block editor: a block's markdown (tables as the model's HTML, formulas as LaTeX) and its
label, with a live preview rendered the way the result view renders it (gui/html.py, KaTeX).

    dialog = BlockEditor(block, labels, window)
    dialog.done_editing.connect(lambda change: ...)   # a BlockChange: label, text, split_at
    dialog.open()

Ctrl+Enter confirms, Esc cancels, Ctrl+Shift+Enter splits the block at the text cursor (the
text before the cursor stays in this block, the rest becomes the next one).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ocrdesk.engine import LABEL_COLORS, Block
from ocrdesk.gui.result_view import ResultView


@dataclass(frozen=True)
class BlockChange:
    """What the person made of the block: its label and text, and where to split it (an offset
    into `text`), or None to keep it whole."""

    label: str
    text: str
    split_at: int | None = None


def label_choices(current: str, seen: list[str]) -> list[str]:
    """The labels offered: the block's own, those on the page, then the known ones."""
    return list(dict.fromkeys([current, *seen, *LABEL_COLORS]))


class BlockEditor(QDialog):
    """Edit one block's markdown and label, with a preview; emits `done_editing` on confirm."""

    done_editing = Signal(object)  # BlockChange

    def __init__(
        self, block: Block, labels: list[str], parent: QWidget | None = None, *, title: str = ""
    ) -> None:
        super().__init__(parent)
        self.setObjectName("block-editor")
        self.setWindowTitle(title or "Edit block")
        self.resize(980, 560)
        self.block = block
        self.label_box = QComboBox(self)
        self.label_box.setEditable(True)
        self.label_box.addItems(label_choices(block.label, labels))
        self.label_box.setCurrentText(block.label)
        self.text_edit = QPlainTextEdit(self)
        self.text_edit.setObjectName("block-text")
        self.text_edit.setPlainText(block.text)
        self.text_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text_edit.setTabChangesFocus(True)
        self.preview = ResultView(self)
        self.preview.raw_switch.hide()
        bold = QFont(self.preview.title.font())
        bold.setBold(True)
        self.preview.title.setFont(bold)
        self.preview.show_source(self._source, "Preview")
        self.text_edit.textChanged.connect(self.preview.changed)
        self.label_box.currentTextChanged.connect(lambda _: self.preview.changed())

        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.text_edit)
        split.addWidget(self.preview)
        split.setSizes([490, 490])
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setToolTip("Keep the change (Ctrl+Enter)")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip("Leave it (Esc)")
        self.split_button = QPushButton("Split at cursor", self)
        self.split_button.setToolTip(
            "The text before the cursor stays in this block, the rest becomes the next "
            "block (Ctrl+Shift+Enter)"
        )
        buttons.addButton(self.split_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self.confirm)
        buttons.rejected.connect(self.reject)
        self.split_button.clicked.connect(self.split_here)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.confirm)
        for keys in ("Ctrl+Shift+Return", "Ctrl+Shift+Enter"):
            QShortcut(QKeySequence(keys), self, self.split_here)

        form = QFormLayout()
        form.addRow("Label", self.label_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(split, 1)
        layout.addWidget(buttons)
        self.text_edit.setFocus()

    def _source(self) -> tuple[list[Block], str, dict[int, str]]:
        return [Block(self.label(), (), self.text_edit.toPlainText())], "", {}

    def label(self) -> str:
        return self.label_box.currentText().strip() or self.block.label

    def change(self, split_at: int | None = None) -> BlockChange:
        return BlockChange(self.label(), self.text_edit.toPlainText(), split_at)

    def put_cursor(self, offset: int) -> None:
        """Put the text cursor at `offset` (where a split would cut)."""
        text = self.text_edit.toPlainText()[: max(0, offset)]
        cursor = self.text_edit.textCursor()
        cursor.setPosition(len(text.encode("utf-16-le")) // 2)
        self.text_edit.setTextCursor(cursor)

    def confirm(self) -> None:
        self.done_editing.emit(self.change())
        self.accept()

    def split_here(self) -> None:
        self.done_editing.emit(self.change(self.cursor_offset()))
        self.accept()

    def cursor_offset(self) -> int:
        """The text cursor as an index into the Python string (Qt counts UTF-16 units)."""
        units = self.text_edit.textCursor().position()
        head = self.text_edit.toPlainText().encode("utf-16-le")[: 2 * units]
        return len(head.decode("utf-16-le", errors="ignore"))
