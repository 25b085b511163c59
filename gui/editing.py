"""A person's corrections of finished pages: one undo stack per document, every step on disk.

Every correction, from a retyped word to a page OCRed again, is one `PageCommand`: the page's
result before and after it (`engine.edits.edited` rebuilds the markdown from the blocks; the
model's raw output is never touched). Redo puts the after-result on the page, undo the before;
both save the page's blocks through the engine's `EditStore` (beside the journal, atomically, in
a worker thread and in the order they were made) and then rebuild the document's export files,
debounced (`REBUILD_MS`), off the GUI thread, unless the run's worker is writing them.

    editor = Editor(controller)             # the window's one; `group` holds the stacks
    editor.change(doc_id, number, blocks, "Delete block")
    editor.undo_group.activeStack().undo()

A page back to exactly the blocks it had when this session first changed it, and that had no
edits then, has its edits cleared (it is the model's page again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoGroup, QUndoStack

from ocrdesk.engine import Block, DocumentExport, EditStore, ExportFailed, PageResult, edited
from ocrdesk.gui.library import DocItem, Library, Spawn

log = logging.getLogger(__name__)

REBUILD_MS = 800  # the export files are rebuilt this long after the last edit


def editable(item: DocItem | None, number: int) -> bool:
    """Whether page `number` of `item` can be corrected: it has a result (a failed page too: a
    region or the page OCRed again gives it blocks) and an export folder to keep edits in."""
    if item is None or item.export is None:
        return False
    page = item.pages.get(number)
    return page is not None and page.result is not None


@dataclass
class _Origin:
    """A page as this session first found it: its blocks, and whether they were edits."""

    blocks: list[Block]
    was_edited: bool


class PageCommand(QUndoCommand):
    """One correction of one page: its result before and after."""

    def __init__(
        self, edits: DocumentEdits, number: int, before: PageResult, after: PageResult, text: str
    ) -> None:
        super().__init__(text)
        self.edits = edits
        self.number = number
        self.before = before
        self.after = after

    def redo(self) -> None:
        self.edits.put(self.number, self.after)

    def undo(self) -> None:
        self.edits.put(self.number, self.before)


@dataclass
class _Writes:
    """The edits of one document waiting to be written, newest per page; the lock and the
    generation numbers keep an older write from landing after a newer one."""

    pending: dict[int, tuple[int, list[Block] | None]] = field(default_factory=dict)
    written: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0


class DocumentEdits(QObject):
    """One document's undo stack, its EditStore and the writes and rebuilds they cause."""

    def __init__(self, editor: Editor, item: DocItem) -> None:
        super().__init__(editor)
        assert item.export is not None, "a document without an export folder has no edits"
        self.editor = editor
        self.item = item
        self.export = item.export  # a new one (Run again) starts a new history
        self.folder: Path = item.export.folder
        self.store = EditStore(self.folder)
        self.stack = QUndoStack(self)
        self.origins: dict[int, _Origin] = {}
        self.edited_pages: set[int] = set()  # pages with edits on disk (as last written)
        self._writes = _Writes()
        self._writer: asyncio.Task[None] | None = None
        self._rebuild_wanted = False
        self._rebuilding: asyncio.Task[None] | None = None
        self.in_run = item.job is not None  # its files are the run's worker's to write
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REBUILD_MS)
        self._timer.timeout.connect(self._rebuild_now)

    # -- changes -------------------------------------------------------------------------------

    def change(self, number: int, blocks: Sequence[Block], text: str) -> bool:
        """Put `blocks` on page `number` as one undoable step. False when nothing changes."""
        page = self.item.pages.get(number)
        if page is None or page.result is None:
            return False
        before = page.result
        if list(blocks) == list(before.blocks):
            return False
        # Whether the page came with edits: the result says so itself (history and resumed
        # pages are read with their edits applied), which does not wait for `edited_pages` to
        # be read from the disk; undoing to a page that had edits must not clear them.
        was_edited = before.edited or number in self.edited_pages
        self.origins.setdefault(number, _Origin(list(before.blocks), was_edited))
        self.stack.push(PageCommand(self, number, before, edited(before, blocks), text))
        return True

    def put(self, number: int, result: PageResult) -> None:
        """Show `result` on the page and keep it (the undo stack's commands call this)."""
        page = self.item.pages.get(number)
        if page is None:
            return
        page.result = result
        origin = self.origins.get(number)
        back = origin is not None and not origin.was_edited and origin.blocks == result.blocks
        self._write(number, None if back else list(result.blocks))
        self.editor.pageEdited.emit(self.item.id, number)

    # -- writing -------------------------------------------------------------------------------

    def _write(self, number: int, blocks: list[Block] | None) -> None:
        writes = self._writes
        writes.generation += 1
        writes.pending[number] = (writes.generation, blocks)
        if blocks is None:
            self.edited_pages.discard(number)
        else:
            self.edited_pages.add(number)
        if self._writer is None or self._writer.done():
            self._writer = self.editor.spawn(self._write_pending())

    async def _write_pending(self) -> None:
        while self._writes.pending:
            number = next(iter(self._writes.pending))
            generation, blocks = self._writes.pending.pop(number)
            try:
                await asyncio.to_thread(self._write_one, number, generation, blocks)
            except OSError as exc:
                self.editor.message.emit(
                    f"the edit of page {number} could not be saved: {exc.strerror or exc}"
                )
        self.want_rebuild()

    def _write_one(self, number: int, generation: int, blocks: list[Block] | None) -> None:
        """Any thread: write one page's edits unless a newer write of that page landed."""
        writes = self._writes
        with writes.lock:
            if writes.written.get(number, 0) > generation:
                return
            if blocks is None:
                self.store.clear(number)
            else:
                self.store.save(number, blocks)
            writes.written[number] = generation

    def flush(self) -> None:
        """The window is closing: write now, on this thread, what still waits, and start the
        rebuild still to come in a thread that the process waits for before it exits."""
        self._closed = True  # from now on a rebuild runs in a thread (`want_rebuild`)
        self._timer.stop()  # its rebuild would need the event loop, which is closing
        while self._writes.pending:
            number = next(iter(self._writes.pending))
            generation, blocks = self._writes.pending.pop(number)
            with contextlib.suppress(OSError):
                self._write_one(number, generation, blocks)
        if self._rebuild_wanted and self.item.job is None:
            self._rebuild_wanted = False
            origin = self.item.source or None
            threading.Thread(
                target=_rebuild_quietly, args=(self.folder, origin), name="ocrdesk-rebuild"
            ).start()

    # -- rebuilding the export files -----------------------------------------------------------

    def want_rebuild(self) -> None:
        """Rebuild the combined files soon (at once after a run that wrote them)."""
        self._rebuild_wanted = True
        if self._closed:  # the run ended as the window closed: no loop to rebuild on
            self.flush()
            return
        self._timer.start()

    def _rebuild_now(self) -> None:
        if not self._rebuild_wanted or self._closed:
            return
        if self.item.job is not None:
            return  # the run's worker writes them when the document ends: `run_ended` again
        if self._rebuilding is not None and not self._rebuilding.done():
            self._timer.start()  # one at a time: this one after it
            return
        self._rebuild_wanted = False
        self._rebuilding = self.editor.spawn(self._rebuild())

    def run_ended(self) -> None:
        """The document left the run: the worker wrote its files, perhaps before the edits
        made during the run reached the disk."""
        if self._rebuild_wanted:
            self.want_rebuild()

    async def _rebuild(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(BaseException):
                await self._writer
        origin = self.item.source or None
        try:
            await asyncio.to_thread(_rebuild_files, self.folder, origin)
        except ExportFailed as exc:
            self.editor.message.emit(f"{self.item.name}: {'; '.join(exc.reasons)}")
        except OSError as exc:
            self.editor.message.emit(
                f"{self.item.name}: the export files could not be rebuilt: {exc.strerror or exc}"
            )
        else:
            self.editor.rebuilt.emit(self.item.id)


#: One rebuild of a folder at a time, whichever thread asks (the debounced one on the loop's
#: worker thread, the one a closing window starts): two at once write the same temporary files.
_REBUILDING: dict[Path, threading.Lock] = {}
_REBUILDING_LOCK = threading.Lock()


def _rebuild_files(folder: Path, origin: str | bytes | None) -> None:
    """Worker thread: the document's combined files again, from its journal and edits."""
    with _REBUILDING_LOCK:
        lock = _REBUILDING.setdefault(folder, threading.Lock())
    with lock:
        _rebuild_files_now(folder, origin)


def _rebuild_files_now(folder: Path, origin: str | bytes | None) -> None:
    if isinstance(origin, str) and not Path(origin).is_file():
        # A history entry's name, or a file since moved: the journal's own record of the
        # source (its path and checksum) says where it is, or that the kept page images serve.
        origin = None
    DocumentExport.from_journal(folder, origin=origin).finish()


def _rebuild_quietly(folder: Path, origin: str | bytes | None) -> None:
    """`_rebuild_files` once the window is gone: what fails can only be logged."""
    try:
        _rebuild_files(folder, origin)
    except (ExportFailed, OSError) as exc:
        log.warning("the export files of %s could not be rebuilt: %s", folder, exc)


class Editor(QObject):
    """Every document's edits: the undo group (its active stack is the document shown)."""

    pageEdited = Signal(int, int)  # doc id, page: its result changed by an edit, undo or redo
    rebuilt = Signal(int)  # doc id: its export files were rebuilt with its edits
    message = Signal(str)

    def __init__(self, library: Library, spawn: Spawn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.spawn = spawn
        self.undo_group = QUndoGroup(self)
        self.docs: dict[int, DocumentEdits] = {}
        self._loaded: set[Path] = set()
        library.docRemoved.connect(self._removed)
        library.docChanged.connect(self._doc_changed)

    def edits(self, doc_id: int) -> DocumentEdits | None:
        """The document's edits (made on first use), or None when it cannot have any."""
        found = self.docs.get(doc_id)
        item = self.library.docs.get(doc_id)
        if item is None or item.export is None:
            return None
        if found is not None and found.export is item.export:
            return found
        if found is not None:  # run again: the pages are the model's again, a new history
            found.flush()
            self.undo_group.removeStack(found.stack)
            found.deleteLater()
        found = self.docs[doc_id] = DocumentEdits(self, item)
        self.undo_group.addStack(found.stack)
        return found

    def change(self, doc_id: int, number: int, blocks: Sequence[Block], text: str) -> bool:
        """Put `blocks` on the page as one undoable step named `text`."""
        edits = self.edits(doc_id)
        return edits is not None and edits.change(number, blocks, text)

    def set_active(self, doc_id: int | None) -> None:
        """Undo and redo act on this document's history."""
        edits = self.edits(doc_id) if doc_id is not None else None
        # None (no document, or one without edits): undo and redo are off.
        self.undo_group.setActiveStack(edits.stack if edits is not None else None)  # type: ignore[arg-type]

    def is_edited(self, doc_id: int) -> bool:
        edits = self.docs.get(doc_id)
        return edits is not None and bool(edits.edited_pages)

    def flush(self) -> None:
        """Write every edit still waiting (the window closes)."""
        for edits in self.docs.values():
            edits.flush()

    # -- documents -----------------------------------------------------------------------------

    def _removed(self, doc_id: int) -> None:
        edits = self.docs.pop(doc_id, None)
        if edits is not None:
            edits.flush()
            self.undo_group.removeStack(edits.stack)
            edits.deleteLater()

    def _doc_changed(self, doc_id: int) -> None:
        item = self.library.docs.get(doc_id)
        if item is None or item.export is None:
            return
        edits = self.docs.get(doc_id)
        if edits is not None and edits.export is not item.export:
            self.edits(doc_id)  # Run again: the old history would put old pages back
        elif edits is not None:
            in_run = item.job is not None
            if edits.in_run and not in_run:
                edits.run_ended()
            edits.in_run = in_run
        folder = item.export.folder
        if folder not in self._loaded and item.job is None:
            self._loaded.add(folder)
            self.spawn(self._load(doc_id, folder))

    async def _load(self, doc_id: int, folder: Path) -> None:
        """Put the edits kept on disk on the document's pages (history, a run resumed)."""
        found = await asyncio.to_thread(_read_edits, folder)
        item = self.library.docs.get(doc_id)
        if item is None or item.export is None or item.export.folder != folder or not found:
            return
        edits = self.edits(doc_id)
        if edits is None:
            return
        for number, blocks in found.items():
            edits.edited_pages.add(number)
            page = item.pages.get(number)
            if page is None or page.result is None or page.result.blocks == blocks:
                continue
            page.result = edited(page.result, blocks)
            self.pageEdited.emit(doc_id, number)


def _read_edits(folder: Path) -> dict[int, list[Block]]:
    """Worker thread: page -> edited blocks of an export folder."""
    store = EditStore(folder)
    found = {}
    for number in sorted(store.edited_pages()):
        blocks = store.load(number)
        if blocks is not None:
            found[number] = list(blocks)
    return found
