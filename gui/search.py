"""Find text in a document: the matching blocks, page by page, and the bar that steps through them.

    matches = find_matches({1: page1_blocks, 2: page2_blocks}, "résumé")
    # [SearchMatch(page=1, block=3), SearchMatch(page=2, block=0), ...]

`find_matches` is the search itself (no Qt): a block matches when its text, as a person reads
it, contains the query, ignoring case, accents and how the whitespace is laid out (a phrase
that wraps onto the next line of a block still matches). Markup the model writes around the
text (the HTML of tables) is not searched.

`SearchBar` is the Ctrl+F bar: it reads the document's blocks from a callable given to
`open` (so pages that finished since are searched too), and emits `matchChosen(page, block)`
for the match to show; Enter goes to the next match, Shift+Enter to the previous one, Escape
closes the bar (`closed`).
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from ocrdesk.engine import Block

#: What `SearchBar.open` is given: a document's blocks by page number, read at each search.
BlockSource = Callable[[], Mapping[int, Sequence[Block]]]

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class SearchMatch(NamedTuple):
    """A block whose text contains the query: its page number and its index in the page's
    blocks (the index the page view and the result view highlight)."""

    page: int
    block: int


@functools.lru_cache(maxsize=65_536)
def fold(text: str) -> str:
    """`text` as it is compared: tags dropped, entities decoded, accents removed, case folded,
    and every run of whitespace made one space."""
    text = html.unescape(_TAG.sub(" ", text))
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACE.sub(" ", bare).strip()


def find_matches(pages: Mapping[int, Sequence[Block]], query: str) -> list[SearchMatch]:
    """The blocks of `pages` whose text contains `query`, in page and then reading order.

    An empty query (or one of whitespace only) matches nothing."""
    needle = fold(query)
    if not needle:
        return []
    return [
        SearchMatch(number, index)
        for number in sorted(pages)
        for index, block in enumerate(pages[number])
        if needle in fold(block.text)
    ]


class _QueryEdit(QLineEdit):
    """The query field: Enter, Shift+Enter and Escape are the bar's, even where the window has
    a shortcut on the same key (Escape stops a run there)."""

    step = Signal(int)  # +1 next, -1 previous
    escape = Signal()

    def event(self, event: QEvent) -> bool:
        # Qt offers a key to the focused widget before the window's shortcuts; accepting the
        # override keeps Escape for the bar instead of the window's Stop action.
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            self.step.emit(-1 if shift else 1)
        elif key == Qt.Key.Key_Escape:
            self.escape.emit()
        else:
            super().keyPressEvent(event)


class SearchBar(QWidget):
    """A find bar over one document's blocks; hidden until `open` is called."""

    matchChosen = Signal(int, int)  # page number, block index
    closed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent if isinstance(parent, QWidget) else None)
        self.setObjectName("search-bar")
        self._source: BlockSource | None = None
        self._page = 1
        self.matches: list[SearchMatch] = []
        self.current: SearchMatch | None = None

        self.edit = _QueryEdit(self)
        self.edit.setPlaceholderText("Find in document")
        self.edit.setClearButtonEnabled(True)
        self.edit.textChanged.connect(self._query_changed)
        self.edit.step.connect(self.step)
        self.edit.escape.connect(self.close_bar)
        self.count_label = QLabel(self)
        self.count_label.setMinimumWidth(130)
        self.prev_button = self._button("▲", "Previous match (Shift+Enter)", lambda: self.step(-1))
        self.next_button = self._button("▼", "Next match (Enter)", lambda: self.step(1))
        close = self._button("✕", "Close (Esc)", self.close_bar)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(QLabel("Find:", self))
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.prev_button)
        layout.addWidget(self.next_button)
        layout.addWidget(self.count_label)
        layout.addWidget(close)
        self._update_label()
        self.hide()

    def _button(self, text: str, tip: str, slot: Callable[[], object]) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        return button

    # -- the API the window uses ---------------------------------------------------------------

    def open(self, source: BlockSource | None, page: int = 1) -> None:
        """Show the bar over the document whose blocks `source` gives, with the query selected;
        a query already typed is searched again from `page` (the page shown)."""
        self._source = source
        self._page = page
        self.show()
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()
        self.current = None
        self._search(choose=True)

    def set_document(self, source: BlockSource | None, page: int = 1) -> None:
        """Search another document (the window's current one changed); the bar stays as it is."""
        self._source = source
        self._page = page
        self.current = None
        self._search(choose=False)

    def refresh(self) -> None:
        """Search again (pages finished or were edited), keeping the match that is shown."""
        self._search(choose=False)

    def step(self, direction: int) -> None:
        """Choose the next (1) or previous (-1) match, wrapping round at the document's ends."""
        self.matches = self._find()
        if not self.matches:
            self.current = None
            self._update_label()
            return
        if self.current is None:
            target = self._first_from(self._page) if direction > 0 else self.matches[-1]
        elif direction > 0:
            later = [m for m in self.matches if m > self.current]
            target = later[0] if later else self.matches[0]
        else:
            earlier = [m for m in self.matches if m < self.current]
            target = earlier[-1] if earlier else self.matches[-1]
        self._choose(target)

    def close_bar(self) -> None:
        self.hide()
        self.closed.emit()

    # -- inside --------------------------------------------------------------------------------

    def _find(self) -> list[SearchMatch]:
        if self._source is None:
            return []
        return find_matches(self._source(), self.edit.text())

    def _first_from(self, page: int) -> SearchMatch:
        return next((m for m in self.matches if m.page >= page), self.matches[0])

    def _query_changed(self) -> None:
        self.current = None
        self._search(choose=True)

    def _search(self, *, choose: bool) -> None:
        self.matches = self._find()
        if self.current not in self.matches:
            self.current = None
        if choose and self.matches:
            self._choose(self._first_from(self.current.page if self.current else self._page))
        else:
            self._update_label()

    def _choose(self, match: SearchMatch) -> None:
        self.current = match
        self._page = match.page
        self._update_label()
        self.matchChosen.emit(match.page, match.block)

    def _update_label(self) -> None:
        query = self.edit.text().strip()
        if not query:
            text = ""
        elif not self.matches:
            text = "No matches"
        elif self.current is None:
            text = f"{len(self.matches)} match" + ("es" if len(self.matches) > 1 else "")
        else:
            place = self.matches.index(self.current) + 1
            text = f"{place} of {len(self.matches)} (page {self.current.page})"
        self.count_label.setText(text)
        missing = bool(query) and not self.matches
        self.edit.setStyleSheet("QLineEdit { background: #fde2e1; }" if missing else "")
