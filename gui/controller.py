"""The one place where the GUI meets the engine, made of three parts with one job each:

- `link` (gui.engine_link.EngineLink): the model server, remote or a local vLLM, and its state;
- `library` (gui.library.Library): the queue's documents, history and export;
- `session` (gui.run_session.RunSession): the run in the worker process, its reports, and the
  pages' streaming state.

`Controller` owns the three and the asyncio tasks they start, and gives the widgets one object to
hold: their signals and the calls a widget makes, each passed to the part that owns it. Widgets
only read `DocItem`s and call these methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from ocrdesk.engine import ConvertOptions, LocalServer, Task
from ocrdesk.gui.engine_link import EngineLink, EngineState
from ocrdesk.gui.library import DocItem, ExportOutcome, Library, PageState
from ocrdesk.gui.run_session import RunSession
from ocrdesk.gui.settings import QueueState

log = logging.getLogger(__name__)


class Controller(QObject):
    """Documents, engine and run, exposed to the widgets through signals."""

    docAdded = Signal(int)  # doc id
    docChanged = Signal(int)  # doc id: page count, statuses, error
    docRemoved = Signal(int)
    pageChanged = Signal(int, int)  # doc id, page: status or result
    pageBoxes = Signal(int, int, list)  # doc id, page, [(index, Block)] newly boxed
    pageText = Signal(int, int)  # doc id, page: streamed text grew
    passwordNeeded = Signal(int, bool)  # doc id, whether the password given was wrong
    engineStatus = Signal(object, str)  # EngineState, detail
    runningChanged = Signal(bool)
    statsChanged = Signal(str)
    message = Signal(str)
    closing = Signal()  # close() began: what keeps timers for the loop stops them

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.link = EngineLink(self.spawn, self)
        self.library = Library(self.spawn, self)
        self.session = RunSession(self.library, self.link, self.spawn, self)
        for source, target in (
            (self.library.docAdded, self.docAdded),
            (self.library.docChanged, self.docChanged),
            (self.library.docRemoved, self.docRemoved),
            (self.library.passwordNeeded, self.passwordNeeded),
            (self.library.message, self.message),
            (self.session.pages.pageChanged, self.pageChanged),
            (self.session.pages.pageBoxes, self.pageBoxes),
            (self.session.pages.pageText, self.pageText),
            (self.session.runningChanged, self.runningChanged),
            (self.session.statsChanged, self.statsChanged),
            (self.session.message, self.message),
            (self.link.changed, self.engineStatus),
        ):
            source.connect(target)

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` on the loop, keep a reference, and log (never lose) its failure."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task failed", exc_info=t.exception())
                self.message.emit(f"error: {t.exception()}")

        task.add_done_callback(done)
        return task

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the engine ----------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self.link.state

    @property
    def detail(self) -> str:
        return self.link.detail

    @property
    def model(self) -> str:
        return self.link.model

    @property
    def local(self) -> LocalServer | None:
        return self.link.local

    def use_remote(self, url: str, api_key: str | None = None) -> asyncio.Task[Any]:
        return self.link.use_remote(url, api_key)

    def use_local(self, config: dict[str, Any]) -> asyncio.Task[Any]:
        return self.link.use_local(config)

    def no_engine(self, detail: str) -> None:
        """No engine can be used; `detail` says why."""
        self.link.unset(detail)

    def stop_engine(self) -> asyncio.Task[Any]:
        """Stop the run, then the local vLLM (freeing the GPU) or the remote connection."""
        return self.spawn(self._stop_engine())

    async def _stop_engine(self) -> None:
        await self.link.abandon_start()
        self.session.stop()
        await self.session.wait_stopped()
        await self.link.stop()

    def engine_log(self) -> str:
        return self.link.log()

    # -- documents -----------------------------------------------------------------------------

    @property
    def docs(self) -> dict[int, DocItem]:
        return self.library.docs

    @property
    def order(self) -> list[int]:
        return self.library.order

    @property
    def output_folder(self) -> Path:
        return self.library.output_folder

    @output_folder.setter
    def output_folder(self, folder: Path) -> None:
        self.library.output_folder = folder

    def add_paths(self, paths: list[str]) -> asyncio.Task[Any]:
        return self.library.add_paths(paths)

    def add_bytes(self, data: bytes, name: str) -> asyncio.Task[Any]:
        return self.library.add_bytes(data, name)

    def remove(self, doc_id: int) -> None:
        self.library.remove(doc_id)

    def clear_finished(self) -> int:
        return self.library.clear_finished()

    def unlock(self, doc_id: int, password: str) -> asyncio.Task[Any] | None:
        return self.library.unlock(doc_id, password)

    def keep_queue(self, state: QueueState) -> None:
        """From now on removals are kept in `state`; at `save_queue` the unfinished queue."""
        self.library.state = state

    def save_queue(self) -> None:
        """Keep the unfinished documents of the queue for the next start."""
        state = self.library.state
        if state is not None:
            state.queued = self.library.queued_paths()
            state.save()

    async def render_page(self, doc_id: int, number: int) -> Image.Image | None:
        return await self.library.render_page(doc_id, number)

    async def render_thumbnail(self, doc_id: int, number: int, width: int = 120) -> QImage | None:
        return await self.library.render_thumbnail(doc_id, number, width)

    async def export(
        self, doc_ids: list[int], out_root: Path, formats: Sequence[str] | None = None
    ) -> ExportOutcome:
        """Write the documents' results to `out_root/<stem>/` in the engine's layout, in the
        `formats` named (None: the engine's defaults)."""
        return await self.library.export(
            doc_ids, out_root, self.link.model, self.session.options.task.value, formats
        )

    def load_history(self, folder: Path, queued: Sequence[str] = ()) -> asyncio.Task[Any]:
        return self.library.load_history(folder, queued)

    # -- the run -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.session.running

    @property
    def options(self) -> ConvertOptions:
        return self.session.options

    def start(
        self, options: ConvertOptions, doc_ids: list[int] | None = None, only_failed: bool = False
    ) -> bool:
        return self.session.start(options, doc_ids, only_failed)

    def run_again(self, options: ConvertOptions, doc_ids: list[int]) -> bool:
        return self.session.run_again(options, doc_ids)

    def stop(self) -> None:
        self.session.stop()

    def pause(self, doc_id: int) -> None:
        self.session.pause(doc_id)

    def resume(self, doc_id: int) -> None:
        self.session.resume(doc_id)

    def cancel(self, doc_id: int) -> None:
        self.session.cancel(doc_id)

    def flush_deltas(self) -> None:
        """Signal now the streamed text and boxes not yet signalled."""
        self.session.pages.flush()

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the run and the local server, close documents."""
        self.closing.emit()
        await self.session.close()
        # What the window and the queue started (page images, opening files, history) ends
        # here too, not later against widgets that are being deleted.
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.link.close()
        await self.session.close_worker()
        self.library.close()


__all__ = ["Controller", "DocItem", "EngineState", "PageState", "Task"]
