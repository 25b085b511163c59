"""The "Needs review" list: every flagged page of the queue's documents that a person has not
marked reviewed, with its reasons (engine/triage.py's flags); choosing one shows that page.

The window owns which pages need review (`MainWindow.pages_to_review`); this list only shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

from ocrdesk.gui.plain_text import tooltip

PageRole = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class ReviewEntry:
    """One page to look at: where it is and why."""

    doc_id: int
    number: int
    document: str
    reasons: str  # the flags' kinds, "loop, uncovered"
    details: str  # the flags' sentences, one a line


class ReviewList(QListWidget):
    """The pages to review, in queue and page order; `pageChosen(doc_id, number)` on a click or
    Enter."""

    pageChosen = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("needs-review")
        self.itemActivated.connect(self._chosen)
        self.itemClicked.connect(self._chosen)
        self._shown: tuple[ReviewEntry, ...] = ()

    def show_entries(self, entries: Sequence[ReviewEntry]) -> None:
        """Show `entries` (kept as they are when nothing changed: no flicker while pages stream)."""
        if tuple(entries) == self._shown:
            return
        self._shown = tuple(entries)
        self.clear()
        for entry in entries:
            item = QListWidgetItem(f"{entry.document} · page {entry.number}: {entry.reasons}")
            item.setData(PageRole, (entry.doc_id, entry.number))
            item.setToolTip(tooltip(entry.details))
            self.addItem(item)

    def _chosen(self, item: QListWidgetItem) -> None:
        doc_id, number = item.data(PageRole)
        self.pageChosen.emit(int(doc_id), int(number))
