"""The documents of the running run, and their pages as the worker's reports change them.

A streaming page's text goes into its own `StreamParser` (PageState.stream): the boxes it
completes are signalled with the index of their block in that parser, which is the index the
final parse gives it, at most every FLUSH_MS (a fast server sends thousands of deltas a second,
and the GUI thread must not answer each). Status changes are signalled once per page and per
document a drain turn (`end_turn`), however many reports touched them.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from ocrdesk.engine import Block, PageStatus, StreamParser, protocol
from ocrdesk.engine.protocol import DocumentReport
from ocrdesk.gui.library import DocItem, Library, PageState

log = logging.getLogger(__name__)

FLUSH_MS = 50  # how often streamed text and boxes are signalled


class RunPages(QObject):
    """The run's documents (by key, the doc id) and what their reports do to them."""

    pageChanged = Signal(int, int)  # doc id, page: status or result
    pageBoxes = Signal(int, int, list)  # doc id, page, [(index, Block)] newly boxed
    pageText = Signal(int, int)  # doc id, page: streamed text grew
    pageFailed = Signal(str)  # why (the engine link checks the server)
    message = Signal(str)

    def __init__(self, library: Library, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.docs: dict[int, DocItem] = {}  # doc id -> document, while part of the run
        self.converted = 0  # pages of this run with a result (a failed one is no pace: the CLI too)
        self.stats_dirty = False
        self._doc_dirty: dict[int, None] = {}  # signalled at the end of a drain turn, in order
        self._page_dirty: dict[tuple[int, int], None] = {}
        self._pending_text: set[tuple[int, int]] = set()
        self._pending_boxes: dict[tuple[int, int], list[tuple[int, Block]]] = {}
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self.flush)

    def join(self, item: DocItem) -> None:
        self.docs[item.id] = item

    def release(self, key: int) -> None:
        item = self.docs.pop(key, None)
        if item is not None:
            item.job = None

    def begin(self) -> None:
        self.docs.clear()
        self.converted = 0

    def end(self) -> None:
        """The run ended: pages in flight go back to waiting, the documents leave it."""
        self._pending_boxes.clear()
        self._pending_text.clear()
        for item in list(self.docs.values()):
            changed = False
            for page in item.pages.values():
                if page.status is PageStatus.RUNNING:
                    page.status, page.stream = PageStatus.WAITING, None
                    changed = True
                    self.pageChanged.emit(item.id, page.number)
            item.job = None
            if changed or item.paused:
                item.paused = False
                self.library.docChanged.emit(item.id)
        self.docs.clear()

    # -- signals -----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Signal the text and boxes that streamed in since the last flush."""
        self._flush_timer.stop()
        boxes, self._pending_boxes = self._pending_boxes, {}
        text, self._pending_text = self._pending_text, set()
        for (doc_id, number), pairs in boxes.items():
            self.pageBoxes.emit(doc_id, number, pairs)
        for doc_id, number in text:
            self.pageText.emit(doc_id, number)

    def _drop_pending(self, doc_id: int, number: int) -> None:
        self._pending_boxes.pop((doc_id, number), None)
        self._pending_text.discard((doc_id, number))

    def end_turn(self) -> None:
        """Signal each page and document the reports of this turn changed, once."""
        pages, self._page_dirty = self._page_dirty, {}
        docs, self._doc_dirty = self._doc_dirty, {}
        for doc_id, number in pages:
            if doc_id in self.library.docs:
                self.pageChanged.emit(doc_id, number)
        for doc_id in docs:
            if doc_id in self.library.docs:
                self.library.docChanged.emit(doc_id)

    # -- reports -----------------------------------------------------------------------------------

    def apply(self, report: DocumentReport) -> None:
        """Apply a report about a document of the run (one that left it is ignored)."""
        item = self.docs.get(report.key)
        if item is None:  # removed from the queue, or a report of an ended run
            return
        match report:
            case protocol.Opened(page_count=page_count):
                item.page_count = page_count
                self._doc_dirty[item.id] = None
            case protocol.DocumentFailed(reason=reason):
                item.error = reason
                self.release(item.id)
                self._doc_dirty[item.id] = None
            case protocol.Started(number=number, width=width, height=height):
                page = item.pages.setdefault(number, PageState(number))
                page.status, page.width, page.height = PageStatus.RUNNING, width, height
                page.stream, page.result = StreamParser(width, height), None
                self._drop_pending(item.id, number)
                self._page_dirty[(item.id, number)] = None
                self._doc_dirty[item.id] = None
            case protocol.Delta(number=number, text=text):
                page = item.pages[number]
                if page.stream is None:  # a delta of a page that is not streaming
                    log.warning("a delta for page %s of %s, not streaming", number, item.name)
                    return
                boxed = page.feed(text)
                if boxed:
                    self._pending_boxes.setdefault((item.id, number), []).extend(boxed)
                self._pending_text.add((item.id, number))
                if not self._flush_timer.isActive():
                    self._flush_timer.start()
            case protocol.Restarted(number=number):
                page = item.pages[number]
                page.stream = StreamParser(page.width, page.height)  # the text starts again
                self._drop_pending(item.id, number)
                self._page_dirty[(item.id, number)] = None
            case protocol.Cancelled(number=number):
                page = item.pages[number]
                page.status, page.stream = PageStatus.WAITING, None
                self._drop_pending(item.id, number)
                self._page_dirty[(item.id, number)] = None
                self._doc_dirty[item.id] = None
            case protocol.PageDone(result=result):
                number = result.number
                page = item.pages.setdefault(number, PageState(number))
                page.status, page.result, page.stream = result.status, result, None
                self._drop_pending(item.id, number)
                page.width, page.height = result.width or page.width, result.height or page.height
                item.run_done += 1
                self.converted += result.status is not PageStatus.FAILED
                self._page_dirty[(item.id, number)] = None
                self._doc_dirty[item.id] = None
                self.stats_dirty = True
                if result.status is PageStatus.FAILED:
                    self.pageFailed.emit(result.error or "a page failed")
            case protocol.DocumentDone(cancelled=cancelled):
                if cancelled:
                    self.message.emit(f"cancelled {item.name}")
                self.release(item.id)
                item.paused = False
                self._doc_dirty[item.id] = None
            case _:
                raise protocol.ProtocolError(f"not a report about a document: {report!r}")
