"""Help: the keyboard shortcuts, read from the window's own actions, and the About box.

    ShortcutsDialog(window).exec()      # F1: every action with a shortcut, grouped by menu
    AboutDialog(model_name, window).exec()

The shortcuts table is built from the QActions the window has at the moment it is opened (its
menus first, in their order, then any other action with a shortcut), so it shows what the
keys really do and cannot drift from them. The About box takes the version, the licence and
the models from where they are declared (the package, its metadata, the engine's families).
"""

from __future__ import annotations

import html
import importlib.metadata
import platform
from collections.abc import Iterable

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMainWindow,
    QMenu,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ocrdesk import __version__
from ocrdesk.engine import FAMILIES

#: The section of actions that are in no menu.
OTHER_SECTION = "Other"
PROJECT_NAME = "ocrdesk"


def action_name(action: QAction) -> str:
    """What a person reads for `action`: its text without mnemonics ('&') or a trailing '…'."""
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…. ")


def shortcut_text(action: QAction) -> str:
    """`action`'s shortcuts as the platform writes them ("Ctrl+O, Ctrl+Shift+O"); '' for none."""
    keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
    return ", ".join(k for k in keys if k)


def _menu_actions(menu: QMenu) -> Iterable[QAction]:
    for action in menu.actions():
        sub = action.menu()
        if isinstance(sub, QMenu):
            yield from _menu_actions(sub)
        elif not action.isSeparator():
            yield action


def shortcut_sections(window: QWidget) -> list[tuple[str, list[tuple[str, str]]]]:
    """(section, [(action, shortcut)]) for every action of `window` that has a shortcut: one
    section per menu of a main window's menu bar, then OTHER_SECTION for the rest."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    seen: set[int] = set()
    menus = window.menuBar().actions() if isinstance(window, QMainWindow) else []
    for entry in menus:
        menu = entry.menu()
        if not isinstance(menu, QMenu):
            continue
        rows = []
        for action in _menu_actions(menu):
            seen.add(id(action))
            if shortcut_text(action):
                rows.append((action_name(action), shortcut_text(action)))
        if rows:
            sections.append((action_name(entry), rows))
    rest = [
        (action_name(action), shortcut_text(action))
        for action in window.actions()
        if id(action) not in seen and shortcut_text(action) and action.text()
    ]
    if rest:
        sections.append((OTHER_SECTION, rest))
    return sections


class ShortcutsDialog(QDialog):
    """The window's keyboard shortcuts, grouped by menu."""

    def __init__(self, window: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else window)
        self.setWindowTitle("Keyboard shortcuts")
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Action", "Shortcut"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        for section, rows in shortcut_sections(window):
            head = QTreeWidgetItem(self.tree, [section.replace("&", "")])
            font = head.font(0)
            font.setBold(True)
            head.setFont(0, font)
            head.setFirstColumnSpanned(True)
            head.setFlags(Qt.ItemFlag.ItemIsEnabled)
            for name, keys in rows:
                QTreeWidgetItem(head, [name, keys])
            head.setExpanded(True)
        self.tree.resizeColumnToContents(0)
        self.tree.setColumnWidth(0, self.tree.columnWidth(0) + 24)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree)
        layout.addWidget(buttons)
        self.resize(460, 560)

    def rows(self) -> list[tuple[str, str, str]]:
        """(section, action, shortcut) as shown, in order."""
        found = []
        for i in range(self.tree.topLevelItemCount()):
            head = self.tree.topLevelItem(i)
            assert head is not None
            for j in range(head.childCount()):
                child = head.child(j)
                assert child is not None
                found.append((head.text(0), child.text(0), child.text(1)))
        return found


def licence() -> str:
    """OCRDesk's licence as its package metadata declares it (pyproject.toml's `license`)."""
    try:
        meta = importlib.metadata.metadata(PROJECT_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "see the project's pyproject.toml"
    return meta["License-Expression"] or meta["License"] or "unknown"


def about_html(model: str | None = None) -> str:
    """The About box's text: version, the model in use, licence, and the models' pages."""
    links = "<br>".join(
        f'{spec.title}: <a href="https://github.com/{spec.hub_id}">GitHub</a> · '
        f'<a href="https://huggingface.co/{spec.hub_id}">Hugging Face</a>'
        for spec in FAMILIES.values()
    )
    using = f"<p>Model: <b>{html.escape(model)}</b></p>" if model else ""
    return (
        f"<h2>OCRDesk {__version__}</h2>"
        "<p>A desktop OCR workbench on DeepSeek-OCR: PDFs and images to grounded markdown.</p>"
        f"{using}"
        f"<p>Licence: {html.escape(licence())}</p>"
        f"<p>{links}</p>"
        f"<p><small>Python {platform.python_version()} · PySide6 {PYSIDE_VERSION}</small></p>"
    )


class AboutDialog(QDialog):
    """About OCRDesk: version, model, licence, and links to DeepSeek-OCR."""

    def __init__(self, model: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About OCRDesk")
        self.label = QLabel(about_html(model), self)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setOpenExternalLinks(True)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(buttons)
        self.resize(440, 300)
