"""The window's documents: the queue (`DocItem`s and their pages), earlier sessions' exports read
back (history), and exporting results to a folder.

Opening files and rendering pages happen in worker threads (asyncio.to_thread), never on the GUI
thread. A page that streams keeps the engine's own `StreamParser` (`PageState.stream`): its
blocks, and so the index every drawn box links to, are the parser's, exactly as the final parse
will give them; nothing here parses or guesses again.

A file is queued once (a second drop of it is refused with a message). What outlives a session
is in `QueueState`: the unfinished documents are queued again at the next start (`queued_paths`,
`load_history(..., queued)`), and a removed document's export folder is left out of history (its
files are never deleted). An encrypted PDF asks for its password (`passwordNeeded`, `unlock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from ocrdesk.engine import (
    DEFAULT_DPI,
    Block,
    Document,
    DocumentExport,
    ExportFailed,
    JobSpec,
    OCRDeskError,
    PageResult,
    PageStatus,
    PasswordRequiredError,
    Rotation,
    RotationStore,
    StreamParser,
    atomic_write,
    export_folder,
    find_documents,
    open_document,
    page_markdown,
    read_exports,
    render_turned,
)
from ocrdesk.gui.qimage import pil_to_qimage
from ocrdesk.gui.settings import QueueState

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass
class ExportOutcome:
    """What an export of documents did: the folders written, and one line for each file or
    folder that could not be (the other formats and documents were written)."""

    folders: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class PageState:
    """One page as the window sees it: its status, its result, or while it streams the
    parser that has read what the model said so far."""

    number: int
    status: PageStatus = PageStatus.WAITING
    width: int = 0
    height: int = 0
    result: PageResult | None = None
    stream: StreamParser | None = None

    @property
    def raw_text(self) -> str:
        if self.result is not None:
            return self.result.raw
        # Held back: an incomplete tag at the end shows once it is complete (or the page ends).
        return self.stream.settled_text if self.stream is not None else ""

    def blocks(self) -> list[Block]:
        """The page's blocks, index for index as its final parse gives them: the result's, or
        the stream's so far."""
        if self.result is not None:
            return self.result.blocks
        return self.stream.snapshot().blocks if self.stream is not None else []

    def boxed(self) -> list[tuple[int, Block]]:
        """(index, block) of the blocks that have boxes."""
        return [(k, b) for k, b in enumerate(self.blocks()) if b.boxes]

    def feed(self, text: str) -> list[tuple[int, Block]]:
        """More streamed text: the (index, block) of the blocks whose boxes it completed."""
        return self.stream.feed_indexed(text) if self.stream is not None else []


@dataclass
class DocItem:
    """One document in the queue."""

    id: int
    name: str
    source: str | bytes
    pages: dict[int, PageState] = field(default_factory=dict)
    page_count: int = 0
    error: str | None = None
    document: Document | None = None  # the window's own handle, for showing pages
    dpi: int = DEFAULT_DPI
    export: DocumentExport | None = None
    from_history: bool = False
    opened: asyncio.Future[None] | None = None
    run_started: float | None = None
    run_done: int = 0
    job: JobSpec | None = None  # set while the document is part of the running pipeline
    paused: bool = False
    password: str | None = None  # an encrypted PDF's, as the person gave it
    locked: bool = False  # an encrypted PDF waiting for its password
    home: Path | None = None  # the export folder chosen before the run (a pasted image's)

    @property
    def path(self) -> Path | None:
        """The file this document is, resolved (None for pasted bytes or a missing source)."""
        if isinstance(self.source, bytes) or not self.source:
            return None
        return Path(self.source).resolve()

    @property
    def complete(self) -> bool:
        """Opened, not in a run, and every page has a result to keep."""
        return bool(self.pages) and self.job is None and self.done == len(self.pages)

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "document"

    def count(self, *statuses: PageStatus) -> int:
        return sum(1 for p in self.pages.values() if p.status in statuses)

    @property
    def finished(self) -> int:
        """Pages that will not change any more in this run, failed ones included."""
        return self.count(PageStatus.DONE, PageStatus.TRUNCATED, PageStatus.FAILED)

    @property
    def done(self) -> int:
        """Pages with a result to keep (failed ones are not done)."""
        return self.count(PageStatus.DONE, PageStatus.TRUNCATED)

    def eta(self) -> float | None:
        """Seconds left at this document's pace in the current run, or None."""
        if self.run_started is None or self.run_done == 0:
            return None
        left = len(self.pages) - self.finished
        if left <= 0:
            return 0.0
        rate = self.run_done / max(1e-6, time.monotonic() - self.run_started)
        return left / rate

    def markdown(self) -> str:
        """The document's markdown as the export writes it (failed pages flagged)."""
        results = [self.pages[n].result for n in sorted(self.pages)]
        return "\n\n".join(page_markdown(r) for r in results if r is not None)


class Library(QObject):
    """The queue's documents, history and export."""

    docAdded = Signal(int)  # doc id
    docChanged = Signal(int)  # doc id: page count, statuses, error
    docRemoved = Signal(int)
    # A document left the queue while it was part of the run: the run must cancel it.
    removedFromRun = Signal(int)
    opened = Signal(int)  # doc id: opened and its pages known (it may join a running run)
    # doc id, whether a password was given and was wrong: the document waits for `unlock`.
    passwordNeeded = Signal(int, bool)
    message = Signal(str)

    def __init__(self, spawn: Spawn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spawn = spawn
        self.docs: dict[int, DocItem] = {}
        self.order: list[int] = []
        self.output_folder = Path.home() / "OCRDesk"  # where a run's exports go
        self.state: QueueState | None = None  # what outlives the session (set by the app)
        self._ids = itertools.count(1)

    # -- documents -----------------------------------------------------------------------------

    def add_paths(self, paths: list[str]) -> asyncio.Task[Any]:
        """Queue files and folders (folders are searched for documents)."""
        return self.spawn(self._add_paths(paths))

    async def _add_paths(self, paths: list[str]) -> None:
        files, errors = await asyncio.to_thread(find_documents, paths)
        for error in errors:
            item = self._new_item(Path(error.source).name or error.source, error.source)
            item.error = error.reason
            self.docChanged.emit(item.id)
        queued = {item.path for item in self.docs.values()}
        fresh: list[Path] = []
        again: list[Path] = []
        for path in files:
            resolved = path.resolve()
            (again if resolved in queued else fresh).append(path)
            queued.add(resolved)
        if again:
            # Two rows of one file would write one export folder; Run again re-runs a file.
            self.message.emit(
                f"{again[0].name} is already in the queue"
                if len(again) == 1
                else f"{len(again)} files already in the queue were not added again"
            )
        opens = [self._open(self._new_item(path.name, str(path))) for path in fresh]
        await asyncio.gather(*opens)

    def add_bytes(self, data: bytes, name: str) -> asyncio.Task[Any]:
        """Queue raw bytes (a pasted image) as a document called `name`.

        The image is kept as a file of its own document, in the folder its export is written
        to (OUT/<stem>/<name>), so that history, export and a re-run have it after a restart;
        where that folder cannot be written, the bytes are queued as they are (and said so)."""
        return self.spawn(self._add_pasted(data, name))

    async def _add_pasted(self, data: bytes, name: str) -> None:
        taken = {d.home.name for d in self.docs.values() if d.home is not None} | {
            d.export.folder.name for d in self.docs.values() if d.export is not None
        }
        folder = await asyncio.to_thread(_free_folder, self.output_folder, Path(name).stem, taken)
        path = folder / Path(name).name
        try:
            await asyncio.to_thread(_keep_file, path, data)
        except OSError as exc:
            self.message.emit(
                f"the pasted image is not kept on disk ({exc.strerror}: {folder}); "
                "it is lost when OCRDesk closes"
            )
            await self._open(self._new_item(name, data))
            return
        item = self._new_item(name, str(path))
        item.home = folder
        await self._open(item)

    def _new_item(self, name: str, source: str | bytes) -> DocItem:
        item = DocItem(next(self._ids), name, source)
        self.docs[item.id] = item
        self.order.append(item.id)
        self.docAdded.emit(item.id)
        return item

    async def _open(self, item: DocItem) -> None:
        item.opened = asyncio.get_running_loop().create_future()
        try:
            document = await asyncio.to_thread(
                open_document, item.source, name=item.name, password=item.password
            )
        except PasswordRequiredError:
            wrong = item.password is not None
            item.error = "wrong password" if wrong else "encrypted: needs its password"
            item.locked = True
            self.passwordNeeded.emit(item.id, wrong)
        except OCRDeskError as exc:
            item.error = getattr(exc, "reason", None) or str(exc)
        else:
            item.document = document
            item.page_count = document.page_count
            for n in range(1, document.page_count + 1):
                item.pages.setdefault(n, PageState(n))
        finally:
            item.opened.set_result(None)
        self.docChanged.emit(item.id)
        if item.document is not None:
            self.opened.emit(item.id)

    def unlock(self, doc_id: int, password: str) -> asyncio.Task[Any] | None:
        """Open the encrypted document again with `password` (a wrong one asks again)."""
        item = self.docs.get(doc_id)
        if item is None or not item.locked:
            return None
        item.password, item.error, item.locked = password, None, False
        self.docChanged.emit(doc_id)
        return self.spawn(self._open(item))

    def remove(self, doc_id: int) -> None:
        """Take the document out of the queue, and out of history at the next start (its
        export folder is left as it is)."""
        item = self.docs.pop(doc_id, None)
        if item is None:
            return
        if item.export is not None and self.state is not None:
            self.state.remove([item.export.folder])
            self.state.save()
        self.order.remove(doc_id)
        if item.job is not None:
            self.removedFromRun.emit(doc_id)
        if item.document is not None:
            document, item.document = item.document, None
            self.spawn(asyncio.to_thread(document.close))
        self.docRemoved.emit(doc_id)

    def clear_finished(self) -> int:
        """Remove the documents whose every page is done, from the queue and from history
        (their exports stay on disk). Returns how many."""
        ids = [doc_id for doc_id in self.order if self.docs[doc_id].complete]
        for doc_id in ids:
            self.remove(doc_id)
        return len(ids)

    def reset(self, doc_id: int) -> bool:
        """Put every page of a finished (or earlier session's) document back to waiting, for
        Run again. False when it cannot run (not opened, or part of the run)."""
        item = self.docs.get(doc_id)
        if item is None or item.document is None or item.job is not None or item.error:
            return False
        item.pages = {n: PageState(n) for n in range(1, item.document.page_count + 1)}
        item.from_history = False
        item.run_started, item.run_done = None, 0
        self.docChanged.emit(doc_id)
        return True

    def queued_paths(self) -> list[str]:
        """The files of the queued documents that are not finished, in queue order."""
        paths = []
        for doc_id in self.order:
            item = self.docs[doc_id]
            if item.path is None or item.error or item.from_history:
                continue
            if not item.pages or item.done < len(item.pages):
                paths.append(str(item.path))
        return paths

    async def render_page(self, doc_id: int, number: int) -> Image.Image | None:
        """The page image at the document's run DPI, rendered in a worker thread."""
        item = self.docs.get(doc_id)
        if item is None or item.document is None:
            return None
        if item.opened is not None:
            await item.opened
        document = item.document
        if document is None:
            return None
        try:
            return await asyncio.to_thread(document.render, number, item.dpi)
        except (OCRDeskError, ValueError, RuntimeError) as exc:
            if item.document is document:  # else it was removed (and closed) meanwhile
                log.warning("cannot render page %s of %s: %s", number, item.name, exc)
            return None

    async def render_thumbnail(self, doc_id: int, number: int, width: int = 120) -> QImage | None:
        """A QImage of the page about `width` px wide, rendered in a worker thread, or None."""
        item = self.docs.get(doc_id)
        if item is None or item.document is None:
            return None
        if item.opened is not None:
            await item.opened
        document = item.document
        try:
            return await asyncio.to_thread(
                lambda: pil_to_qimage(_thumbnail(document, number, width))
            )
        except (OCRDeskError, ValueError, RuntimeError) as exc:
            log.info("no thumbnail for page %s of %s: %s", number, item.name, exc)
            return None

    # -- exports -------------------------------------------------------------------------------

    async def export(
        self,
        doc_ids: list[int],
        out_root: Path,
        model: str,
        task: str,
        formats: Sequence[str] | None = None,
    ) -> ExportOutcome:
        """Write the documents' results to `out_root/<stem>/` in the engine's layout, in the
        `formats` named (the engine's `FORMATS`; None: its defaults); `model` and `task` name
        what made results that have no export of their own yet."""
        taken: set[str] = set()
        outcome = ExportOutcome()
        for doc_id in doc_ids:
            item = self.docs.get(doc_id)
            if item is None:
                continue
            results = [p.result for _, p in sorted(item.pages.items()) if p.result is not None]
            if not results:
                continue
            folder = export_folder(out_root, item.stem, taken)
            export = DocumentExport(
                folder,
                source=item.source if isinstance(item.source, str) else item.name,
                model=model or (item.export.model if item.export else ""),
                task=item.export.task if item.export else task,
                origin=item.source or None,  # a path, or a pasted image's bytes
                formats=formats,
            )
            try:
                await asyncio.to_thread(_write_export, export, item, results)
            except ExportFailed as exc:
                outcome.problems.extend(f"{item.name}: {reason}" for reason in exc.reasons)
            except OSError as exc:
                outcome.problems.append(f"{item.name}: could not write {folder}: {exc.strerror}")
                continue
            outcome.folders.append(folder)
        if self.state is not None and outcome.folders:
            self.state.restore(outcome.folders)
            self.state.save()
        return outcome

    # -- history -------------------------------------------------------------------------------

    def load_history(self, folder: Path, queued: Sequence[str] = ()) -> asyncio.Task[Any]:
        """Show the documents exported to `folder` by earlier sessions (not those removed),
        then queue again the `queued` files that are still there: one with an export of its
        own goes on from it (its finished pages are kept)."""
        return self.spawn(self._load_history(folder, list(queued)))

    async def _load_history(self, folder: Path, queued: list[str]) -> None:
        entries = await asyncio.to_thread(read_exports, folder)
        state = self.state
        for entry in entries:
            if state is not None and state.is_removed(entry.folder):
                continue
            source = entry.source if Path(entry.source).is_file() else None
            item = self._new_item(Path(entry.source).name or entry.folder.name, source or "")
            item.from_history = True
            item.export = DocumentExport(
                entry.folder, source=entry.source, model=entry.model, task=entry.task
            )
            item.export.results.update({r.number: r for r in entry.results})
            for result in entry.results:
                item.pages[result.number] = PageState(
                    result.number, result.status, result.width, result.height, result=result
                )
            item.page_count = max(item.pages, default=0)
            if source is not None:
                await self._open_history_source(item, source, entry.results)
            self.docChanged.emit(item.id)
        await self._requeue(queued)

    async def _requeue(self, paths: list[str]) -> None:
        present = [p for p in paths if Path(p).is_file()]  # a file that is gone stays gone
        by_path = {item.path: item for item in self.docs.values() if item.path is not None}
        new = []
        for path in present:
            item = by_path.get(Path(path).resolve())
            if item is None:
                new.append(path)
            elif item.from_history and item.document is not None:
                item.from_history = False  # its run goes on into its export folder
                self.docChanged.emit(item.id)
                self.opened.emit(item.id)
        if new:
            await self._add_paths(new)

    async def _open_history_source(
        self, item: DocItem, source: str, results: list[PageResult]
    ) -> None:
        try:
            document = await asyncio.to_thread(open_document, source)
        except OCRDeskError:
            return
        item.document = document
        item.page_count = document.page_count
        for n in range(1, document.page_count + 1):
            item.pages.setdefault(n, PageState(n))
        # The DPI the results were made at: their width against the page's width at 72 dpi.
        first = next((r for r in results if r.width), None)
        if first is not None:
            with contextlib.suppress(Exception):
                base = await asyncio.to_thread(document.render, first.number, 72)
                item.dpi = max(36, round(72 * first.width / max(1, base.width)))

    def close(self) -> None:
        for item in self.docs.values():
            if item.document is not None:
                item.document.close()
                item.document = None


def _thumbnail(document: Document, number: int, width: int) -> Image.Image:
    """Worker thread: the page at a low resolution, scaled to `width` px wide."""
    image = document.render(number, 24)  # an A4 page is ~200 px wide at 24 dpi
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))))
    return image


def _write_export(export: DocumentExport, item: DocItem, results: list[PageResult]) -> None:
    """Worker thread: render each finished page again (for crops and layout), turned as it was
    when it was read, and write it all; the turns go with the copy (its searchable PDF and a
    window opening it turn the pages as the results were read)."""
    turns: dict[int, Rotation] = {}
    if item.export is not None:
        turns = RotationStore(item.export.folder, item.export.source).read_turns()
        if export.folder != item.export.folder:
            RotationStore(export.folder, export.source).keep_read(turns)
    for result in results:
        image = None
        if item.document is not None and result.status is not PageStatus.FAILED:
            turn = turns.get(result.number, Rotation.NONE)
            with contextlib.suppress(Exception):
                image = render_turned(item.document, result.number, item.dpi, turn)
                if result.width and image.size != (result.width, result.height):
                    image = image.resize((result.width, result.height))
        export.add_page(result, image)
    export.finish()


def _free_folder(out_root: Path, stem: str, taken: set[str]) -> Path:
    """An export folder for a new document: not used in this session nor on disk."""
    on_disk = {p.name for p in out_root.iterdir()} if out_root.is_dir() else set()
    return export_folder(out_root, stem, taken | on_disk)


def _keep_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
