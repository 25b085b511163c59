"""The one place where the GUI meets the engine: documents, the run, the server, exports.

`Controller` owns the queue's documents (`DocItem`), the model server (a remote URL or a local
vLLM the app starts) and the run. The run itself (client, pipeline, export writes) goes on in a
child process, `engine.RunWorker`: in a thread of this process its stream reading shared the GIL
and the garbage collector with the GUI thread and stalled it for up to 100-200 ms. The worker's
messages are taken every DRAIN_MS by the GUI thread, which spends at most DRAIN_BUDGET_S per turn
on them; they become Qt signals; widgets only read `DocItem`s and call controller methods.
Connecting to the server and running the local vLLM happen on the engine thread's asyncio loop
(`gui.engine_thread`); opening files and rendering pages for display in worker threads
(asyncio.to_thread), never on the GUI thread.

Documents dropped while a run goes on join it; each document can be paused, resumed or
cancelled on its own (`pause`, `resume`, `cancel`). A worker that dies ends the run: finished
pages are kept (they are on disk too), pages in flight go back to waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import subprocess
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, QTimer, Signal

from ocrdesk import engine
from ocrdesk.engine import (
    Block,
    ClientSpec,
    ConvertOptions,
    Document,
    DocumentExport,
    JobSpec,
    ModelClient,
    ModelFamily,
    OCRDeskError,
    PageResult,
    PageStatus,
    RunWorker,
    Task,
    export_folder,
    find_documents,
    open_document,
)
from ocrdesk.gui.engine_thread import EngineThread
from ocrdesk.gui.qimage import pil_to_qimage

log = logging.getLogger(__name__)

DRAIN_MS = 30  # how often the GUI thread takes the engine's events
DRAIN_BUDGET_S = 0.015  # the most one turn spends on them; the rest waits for the next turn


@dataclass
class PageState:
    """One page as the GUI sees it."""

    number: int
    status: PageStatus = PageStatus.WAITING
    width: int = 0
    height: int = 0
    raw: list[str] = field(default_factory=list)
    boxed: list[Block] = field(default_factory=list)  # blocks with boxes, as they closed
    result: PageResult | None = None

    @property
    def raw_text(self) -> str:
        if self.result is not None and self.result.raw:
            return self.result.raw
        if len(self.raw) > 1:
            self.raw[:] = ["".join(self.raw)]
        return self.raw[0] if self.raw else ""


@dataclass
class DocItem:
    """One document in the queue."""

    id: int
    name: str
    source: str | bytes
    pages: dict[int, PageState] = field(default_factory=dict)
    page_count: int = 0
    error: str | None = None
    document: Document | None = None  # the GUI's own handle, for showing pages
    dpi: int = 144
    export: DocumentExport | None = None
    from_history: bool = False
    opened: asyncio.Future[None] | None = None
    run_started: float | None = None
    run_done: int = 0
    job: JobSpec | None = None  # set while the document is part of the running pipeline
    paused: bool = False

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "document"

    def count(self, *statuses: PageStatus) -> int:
        return sum(1 for p in self.pages.values() if p.status in statuses)

    @property
    def finished(self) -> int:
        return self.count(PageStatus.DONE, PageStatus.TRUNCATED, PageStatus.FAILED)

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
        parts = []
        for number in sorted(self.pages):
            result = self.pages[number].result
            if result is not None and result.markdown:
                parts.append(f"<!-- page {number} -->\n\n{result.markdown}")
        return "\n\n".join(parts)


class Controller(QObject):
    """Documents, engine and run, exposed to the widgets through signals."""

    docAdded = Signal(int)  # doc id
    docChanged = Signal(int)  # doc id: page count, statuses, error
    docRemoved = Signal(int)
    pageChanged = Signal(int, int)  # doc id, page: status or result
    pageBoxes = Signal(int, int, list)  # doc id, page, [(index, Block)] newly closed
    pageText = Signal(int, int)  # doc id, page: streamed text grew
    engineStatus = Signal(
        str, str
    )  # state ("stopped", "starting", "ready", "error", "none"), detail
    runningChanged = Signal(bool)
    statsChanged = Signal(str)
    message = Signal(str)
    _inGui = Signal(object)  # a callable from the engine thread, to be called on the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.docs: dict[int, DocItem] = {}
        self.order: list[int] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[Any] | None = None  # the latest use_local/use_remote
        self._runner: RunWorker | None = None  # the process the run's pipeline runs in
        self._run_end: asyncio.Future[str | None] | None = None  # set by the worker's "end"
        self._client_spec: ClientSpec | None = None  # a remote server, as the worker reaches it
        self._in_run: dict[int, DocItem] = {}  # doc id -> document, while part of the run
        self._added: dict[int, asyncio.Future[bool]] = {}  # token -> answer to a join
        self._tokens = itertools.count(1)
        self._inbox: deque[tuple[Any, ...]] = deque()  # the worker's messages, not yet applied
        self._doc_dirty: dict[int, None] = {}  # signalled at the end of a drain turn, in order
        self._page_dirty: dict[tuple[int, int], None] = {}
        self._stats_dirty = False
        self._rerun = False
        self.worker = EngineThread()
        self._inGui.connect(lambda callback: callback())
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_MS)
        self._drain_timer.timeout.connect(self.drain)
        self.client: ModelClient | None = None
        self.local: Any = None  # engine.LocalServer when local mode runs
        self.model: str = ""
        self.state = "none"
        self.detail = "no engine configured"
        self.output_folder = Path.home() / "OCRDesk"
        self.options = ConvertOptions()
        self.run_started = 0.0
        self.run_pages = 0
        # Streamed text and boxes are signalled at most every FLUSH_MS, not per delta: a fast
        # server sends thousands of deltas a second and the GUI thread must not answer each.
        self._pending_text: set[tuple[int, int]] = set()
        self._pending_boxes: dict[tuple[int, int], list[tuple[int, Block]]] = {}
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_MS)
        self._flush_timer.timeout.connect(self.flush_deltas)

    # -- streamed deltas -----------------------------------------------------------------------

    def flush_deltas(self) -> None:
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

    # -- engine --------------------------------------------------------------------------------

    def _set_engine(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        self.engineStatus.emit(state, detail)
        if state == "ready" and self._run_end is None:
            # Started ahead: the worker takes a second or two to import the engine, which the
            # first Run would otherwise wait for. (Never during a run: a dead worker is
            # replaced only once its run has been ended.)
            self._ensure_runner()

    def local_available(self) -> bool:
        return hasattr(engine, "LocalServer") and hasattr(engine, "LocalServerConfig")

    def use_remote(self, url: str, api_key: str | None = None) -> asyncio.Task[Any]:
        """Point at a remote OpenAI-compatible server and check that it answers."""
        self._connecting = self.spawn(self._use_remote(url, api_key))
        return self._connecting

    async def _use_remote(self, url: str, api_key: str | None) -> None:
        await self._stop_local()
        await self._close_client()
        self.model = ""
        self._set_engine("starting", f"connecting to {url}")

        async def connect() -> tuple[ModelClient, str | OCRDeskError]:
            client = ModelClient(url, api_key=api_key or None)
            try:
                return client, await client.resolve_model()
            except OCRDeskError as exc:
                return client, exc

        self.client, model = await self.worker.run(connect())
        if isinstance(model, OCRDeskError):
            self._set_engine("error", str(model))
            return
        self.model = model
        self._client_spec = ClientSpec(self.client.url, api_key=api_key or None, model=model)
        self._set_engine("ready", f"{self.model} at {self.client.url}")

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        self._client_spec = None
        if client is not None:
            with contextlib.suppress(Exception):
                await self.worker.run(client.close())

    def use_local(self, config: dict[str, Any]) -> asyncio.Task[Any]:
        """Start a local vLLM with `config` (LocalServerConfig fields) and use it."""
        self._connecting = self.spawn(self._use_local(config))
        return self._connecting

    def _status_from_engine(self, text: str) -> None:
        """LocalServer's status callback; it runs on the engine thread."""
        self._inGui.emit(lambda: self._local_status(text))

    def _local_status(self, text: str) -> None:
        if self.local is None:
            return
        if text == "ready" and self.client is not None:  # up again after a restart
            self._set_engine("ready", f"local vLLM: {self.model}")
        elif text.startswith("failed"):
            self._set_engine("error", f"local vLLM {text}")
        elif text not in ("ready", "stopping", "stopped"):
            self._set_engine("starting", f"local vLLM: {text}")

    async def _use_local(self, config: dict[str, Any]) -> None:
        if not self.local_available():
            self._set_engine(
                "none",
                "this OCRDesk cannot start a local vLLM server; set a remote server in Settings",
            )
            return
        await self._stop_local()
        await self._close_client()
        cfg = engine.LocalServerConfig(**config)  # type: ignore[attr-defined]
        server = engine.LocalServer(cfg, on_status=self._status_from_engine)  # type: ignore[attr-defined]
        self.local = server
        self._set_engine("starting", "starting the local vLLM server")
        try:
            await self.worker.run(server.start())
        except engine.EngineStartError as exc:
            self.local = None
            fix = _in_window_terms(exc.fix)
            detail = exc.reason + (f" ({fix})" if fix else "")
            self.last_log = exc.log_tail
            self._set_engine("error", detail)
            return
        except OCRDeskError as exc:
            self.local = None
            self._set_engine("error", str(exc))
            return

        async def connect() -> ModelClient:
            # Pages never go through this client (the run's worker has its own, which asks for
            # a restart when the server dies under a page); it marks the engine as connected.
            return ModelClient(server.url, api_key=server.api_key, model=server.model)

        self.client = await self.worker.run(connect())
        self.model = server.model
        self._set_engine("ready", f"local vLLM: {self.model}")

    async def _stop_local(self) -> None:
        server, self.local = self.local, None
        if server is not None:
            with contextlib.suppress(Exception):
                await self.worker.run(server.stop())

    def stop_engine(self) -> asyncio.Task[Any]:
        """Stop the run, then the local vLLM (freeing the GPU) or the remote connection."""
        return self.spawn(self._stop_engine())

    async def _stop_engine(self) -> None:
        connecting = self._connecting
        if connecting is not None and not connecting.done():  # a start still going: abandon it
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        self.stop()
        if self._run_task is not None:
            with contextlib.suppress(BaseException):
                await self._run_task
        await self._stop_local()
        await self._close_client()
        self._set_engine("stopped", "Run > Start engine starts it again")

    def engine_log(self) -> str:
        """The engine's state and the last lines of the local server's log, for the Log button."""
        head = f"{self.state}: {self.detail}\n\n"
        if self.local is not None:
            with contextlib.suppress(Exception):
                return head + str(self.local.log_tail(200))
        return head + (getattr(self, "last_log", "") or "(no server log)")

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
        opens = [self._open(self._new_item(path.name, str(path))) for path in files]
        await asyncio.gather(*opens)

    def add_bytes(self, data: bytes, name: str) -> asyncio.Task[Any]:
        """Queue raw bytes (a pasted image) as a document called `name`."""
        return self.spawn(self._open(self._new_item(name, data)))

    def _new_item(self, name: str, source: str | bytes) -> DocItem:
        item = DocItem(next(self._ids), name, source)
        self.docs[item.id] = item
        self.order.append(item.id)
        self.docAdded.emit(item.id)
        return item

    async def _open(self, item: DocItem) -> None:
        loop = asyncio.get_running_loop()
        item.opened = loop.create_future()
        try:
            document = await asyncio.to_thread(open_document, item.source, name=item.name)
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
        if item.document is not None and self.running:
            self.spawn(self._join([item]))

    def remove(self, doc_id: int) -> None:
        item = self.docs.pop(doc_id, None)
        if item is None:
            return
        self.order.remove(doc_id)
        if item.job is not None:
            self._tell(lambda runner: runner.cancel(doc_id))
        if item.document is not None:
            document = item.document
            item.document = None
            self.spawn(asyncio.to_thread(document.close))
        self.docRemoved.emit(doc_id)

    async def render_page(self, doc_id: int, number: int) -> Image.Image | None:
        """The page image at the document's run DPI, rendered in a worker thread."""
        item = self.docs.get(doc_id)
        if item is None or item.document is None:
            return None
        if item.opened is not None:
            await item.opened
        try:
            return await asyncio.to_thread(item.document.render, number, item.dpi)
        except (OCRDeskError, ValueError, RuntimeError) as exc:
            log.warning("cannot render page %s of %s: %s", number, item.name, exc)
            return None

    async def render_thumbnail(self, doc_id: int, number: int, width: int = 120) -> Any:
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

    # -- the run -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    def _runnable(self, doc_ids: list[int] | None) -> list[DocItem]:
        ids = doc_ids if doc_ids is not None else list(self.order)
        return [
            self.docs[i]
            for i in ids
            if i in self.docs
            and self.docs[i].error is None
            and not self.docs[i].from_history
            and self.docs[i].job is None
        ]

    def start(
        self, options: ConvertOptions, doc_ids: list[int] | None = None, only_failed: bool = False
    ) -> bool:
        """Convert the waiting and failed pages of the queued documents. False if nothing to do.

        While a run goes on, the documents join it (with the run's options)."""
        if self.client is None or self.state != "ready":
            self.message.emit(f"the engine is not ready: {self.detail}")
            return False
        items = self._runnable(doc_ids)
        if self.running:
            self.spawn(self._join(items, only_failed))
            return True
        self.options = options
        self._run_task = self.spawn(self._run(items, only_failed))
        return True

    def stop(self) -> None:
        """Stop the whole run; pages in flight go back to waiting."""
        if self._runner is not None and self._run_end is not None and not self._run_end.done():
            self._runner.stop()  # the worker writes the files so far and answers "end"
        elif self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()

    def pause(self, doc_id: int) -> None:
        """Start no more pages of the document (pages in flight finish)."""
        item = self.docs.get(doc_id)
        if item is not None and item.job is not None and not item.paused:
            item.paused = True
            self._tell(lambda runner: runner.pause(doc_id))
            self.docChanged.emit(doc_id)

    def resume(self, doc_id: int) -> None:
        item = self.docs.get(doc_id)
        if item is not None and item.paused:
            item.paused = False
            if item.job is not None:
                self._tell(lambda runner: runner.resume(doc_id))
            self.docChanged.emit(doc_id)

    def cancel(self, doc_id: int) -> None:
        """Stop the document's pages, those in flight too; finished pages are kept."""
        item = self.docs.get(doc_id)
        if item is not None and item.job is not None:
            self._tell(lambda runner: runner.cancel(doc_id))

    def _tell(self, call: Callable[[RunWorker], None]) -> None:
        if self._runner is not None:
            call(self._runner)

    def _ensure_runner(self) -> RunWorker:
        """The run's worker process, started now if there is none or it has ended."""
        runner = self._runner
        if runner is None or runner.gone or runner.exit_code() is not None:
            if runner is not None:
                runner.close(0)
            runner = self._runner = RunWorker.spawn()
        return runner

    def _job_for(self, item: DocItem, taken: set[str], only_failed: bool) -> JobSpec | None:
        """The run's job for the document's unfinished pages, or with `only_failed` its failed
        pages only (None: nothing to do)."""
        if item.error is not None or not item.pages:
            return None
        if not any(p.status not in _KEEP for p in item.pages.values()):
            return None
        pages = None
        if only_failed:
            failed = sorted(n for n, p in item.pages.items() if p.status is PageStatus.FAILED)
            if not failed:
                return None
            pages = ",".join(map(str, failed))
        skip = {n: p.result for n, p in item.pages.items() if p.status in _KEEP and p.result}
        item.dpi = self.options.dpi
        if item.export is None:
            item.export = DocumentExport(
                export_folder(self.output_folder, item.stem, taken),
                source=item.source if isinstance(item.source, str) else item.name,
                model=self.model,
                task=self.options.task.value,
            )
        job = JobSpec(
            key=item.id,
            source=item.source,
            name=item.name,
            export_folder=item.export.folder,
            export_source=item.export.source,
            model=item.export.model,
            task=item.export.task,
            skip=skip,
            paused=item.paused,
            pages=pages,
        )
        item.run_started, item.run_done = time.monotonic(), 0
        item.job = job
        self._in_run[item.id] = item
        return job

    async def _jobs(self, items: list[DocItem], only_failed: bool = False) -> list[JobSpec]:
        for item in items:
            if item.opened is not None:
                await item.opened
        taken: set[str] = set()
        jobs = []
        for item in items:
            if item.job is None and item.id in self.docs:
                job = self._job_for(item, taken, only_failed)
                if job is not None:
                    jobs.append(job)
        return jobs

    async def _join(self, items: list[DocItem], only_failed: bool = False) -> None:
        """Add documents to the running pipeline, or run them right after it."""
        jobs = await self._jobs(items, only_failed)
        if not jobs:
            return
        added = False
        if self._runner is not None and self._run_end is not None and not self._run_end.done():
            token = next(self._tokens)
            answer = self._added[token] = asyncio.get_running_loop().create_future()
            self._runner.add(jobs, token)
            added = await answer
        if not added:
            # The run was ending: these documents go in the next one.
            for job in jobs:
                self._release(job.key)
            self._rerun = True
        else:
            for job in jobs:
                self.docChanged.emit(job.key)

    def _release(self, key: int) -> None:
        item = self._in_run.pop(key, None)
        if item is not None:
            item.job = None

    async def _run(self, items: list[DocItem], only_failed: bool = False) -> None:
        self._in_run.clear()
        jobs = await self._jobs(items, only_failed)
        if not jobs:
            self.message.emit("nothing to convert")
            return
        self.run_started = time.monotonic()
        self.run_pages = 0
        self.runningChanged.emit(True)
        for job in jobs:
            self.docChanged.emit(job.key)
        end = self._run_end = asyncio.get_running_loop().create_future()
        runner: RunWorker | None = None
        error: str | None = None
        try:
            runner = self._ensure_runner()
            runner.run(self._current_client_spec(), self.options, jobs)
            self._drain_timer.start()
            error = await asyncio.shield(end)
        except asyncio.CancelledError:
            if runner is not None:
                runner.stop()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(end), 30)
            raise
        except (OSError, ValueError, TypeError) as exc:  # no worker could start, or a bad job
            log.exception("the conversion process could not take the run")
            error = f"the conversion process could not start: {exc}"
        finally:
            self._drain_timer.stop()
            while self._inbox:
                self.drain(budget=None)
            self._run_end = None
            self._pending_boxes.clear()
            self._pending_text.clear()
            for item in list(self._in_run.values()):
                changed = False
                for page in item.pages.values():
                    if page.status is PageStatus.RUNNING:
                        page.status, page.raw = PageStatus.WAITING, []
                        page.boxed = []
                        changed = True
                        self.pageChanged.emit(item.id, page.number)
                item.job = None
                if changed or item.paused:
                    item.paused = False
                    self.docChanged.emit(item.id)
            self._in_run.clear()
            self.runningChanged.emit(False)
            self._emit_stats()
        if error:
            self.message.emit(f"the run stopped: {error}")
        if self._rerun:
            # Once this task is done: from inside it, `running` is still true and `start`
            # would try to join the run that is ending.
            self._rerun = False
            asyncio.get_running_loop().call_soon(self.start, self.options)

    def _current_client_spec(self) -> ClientSpec:
        """The server as the worker must reach it now: a restarted local server has a new port
        and key."""
        server = self.local
        if server is not None:
            return ClientSpec(
                server.url, api_key=server.api_key, model=server.model, supervised=True
            )
        assert self._client_spec is not None
        return self._client_spec

    async def _reconnect(self) -> None:
        """The worker lost the local server: bring it back, and always answer."""
        runner, server = self._runner, self.local
        if runner is None:
            return
        if server is None:
            runner.no_target("the local server was stopped")
            return
        try:
            await self.worker.run(server.ensure_running())
        except Exception as exc:
            runner.no_target(str(exc) or "the local server did not come back")
        else:
            runner.target(server.url, server.api_key)

    # -- events, on the GUI thread ---------------------------------------------------------------

    def drain(self, budget: float | None = DRAIN_BUDGET_S) -> None:
        """Apply the worker's messages that came in since the last turn, for at most `budget` s."""
        runner = self._runner
        if runner is not None:
            self._inbox.extend(runner.receive())
        deadline = None if budget is None else time.perf_counter() + budget
        while self._inbox:
            self._on_message(self._inbox.popleft())
            if deadline is not None and time.perf_counter() > deadline:
                break
        if runner is not None and runner.gone and not self._inbox:
            self._worker_gone(runner)
        # One signal per page and per document a turn, however many events touched them: each
        # docChanged repaints a queue row and its status strip.
        pages, self._page_dirty = self._page_dirty, {}
        docs, self._doc_dirty = self._doc_dirty, {}
        for doc_id, number in pages:
            if doc_id in self.docs:
                self.pageChanged.emit(doc_id, number)
        for doc_id in docs:
            if doc_id in self.docs:
                self.docChanged.emit(doc_id)
        if self._stats_dirty:
            self._stats_dirty = False
            self._emit_stats()

    def _worker_gone(self, runner: RunWorker) -> None:
        """The worker process ended under a run: the run ends; finished pages stay."""
        if self._run_end is not None and not self._run_end.done():
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.process.wait(0.5)  # its socket closes a moment before it can be reaped
            code = runner.exit_code()
            how = f"exit code {code}" if code is not None else "its connection closed"
            self._run_end.set_result(f"the conversion process stopped unexpectedly ({how})")
        self._answer_adds()

    def _answer_adds(self) -> None:
        added, self._added = self._added, {}
        for answer in added.values():
            if not answer.done():
                answer.set_result(False)

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "end":
            self._answer_adds()  # adds answered after the end came too late for the run
            if self._run_end is not None and not self._run_end.done():
                self._run_end.set_result(message[1])
            return
        if kind == "added":
            answer = self._added.pop(message[1], None)
            if answer is not None and not answer.done():
                answer.set_result(message[2])
            return
        if kind == "message":
            self.message.emit(message[1])
            return
        if kind == "reconnect":
            self.spawn(self._reconnect())
            return
        item = self._in_run.get(message[1])
        if item is None:
            return
        if kind == "opened":
            item.page_count = message[2]
            self._doc_dirty[item.id] = None
        elif kind == "doc_failed":
            item.error = message[2]
            self._release(item.id)
            self._doc_dirty[item.id] = None
        elif kind == "started":
            _, _, number, width, height = message
            page = item.pages.setdefault(number, PageState(number))
            page.status, page.width, page.height = PageStatus.RUNNING, width, height
            page.raw, page.boxed, page.result = [], [], None
            self._page_dirty[(item.id, number)] = None
            self._doc_dirty[item.id] = None
        elif kind == "delta":
            _, _, number, text, blocks = message
            page = item.pages[number]
            page.raw.append(text)
            if blocks:
                first = len(page.boxed) + (1 if _has_lead(page.raw_text) else 0)
                page.boxed.extend(blocks)
                pairs = [(first + k, b) for k, b in enumerate(blocks)]
                self._pending_boxes.setdefault((item.id, number), []).extend(pairs)
            self._pending_text.add((item.id, number))
            if not self._flush_timer.isActive():
                self._flush_timer.start()
        elif kind in ("restarted", "page_cancelled"):
            number = message[2]
            page = item.pages[number]
            page.raw, page.boxed = [], []
            if kind == "page_cancelled":
                page.status = PageStatus.WAITING
                self._doc_dirty[item.id] = None
            self._drop_pending(item.id, number)
            self._page_dirty[(item.id, number)] = None
        elif kind == "page":
            result: PageResult = message[3]
            page = item.pages.setdefault(result.number, PageState(result.number))
            page.status, page.result, page.raw = result.status, result, []
            self._drop_pending(item.id, result.number)
            page.width, page.height = result.width or page.width, result.height or page.height
            item.run_done += 1
            self.run_pages += 1
            self._page_dirty[(item.id, result.number)] = None
            self._doc_dirty[item.id] = None
            self._stats_dirty = True
        elif kind == "doc_finished":
            if message[2]:
                self.message.emit(f"cancelled {item.name}")
            self._release(item.id)
            item.paused = False
            self._doc_dirty[item.id] = None

    def _emit_stats(self) -> None:
        total_pages = sum(len(d.pages) for d in self.docs.values())
        done = sum(d.finished for d in self.docs.values())
        elapsed = max(1e-6, time.monotonic() - self.run_started) if self.run_started else 0
        rate = self.run_pages / elapsed if elapsed else 0.0
        self.statsChanged.emit(f"{rate:.2f} pages/s · {done} of {total_pages} pages done")

    def family(self) -> ModelFamily | None:
        return self.options.family

    # -- exports -------------------------------------------------------------------------------

    async def export(self, doc_ids: list[int], out_root: Path) -> list[Path]:
        """Write the documents' results to `out_root/<stem>/` in the engine's layout."""
        taken: set[str] = set()
        folders = []
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
                model=self.model or (item.export.model if item.export else ""),
                task=item.export.task if item.export else self.options.task.value,
            )
            await asyncio.to_thread(_write_export, export, item, results)
            folders.append(folder)
        return folders

    # -- history -------------------------------------------------------------------------------

    def load_history(self, folder: Path) -> asyncio.Task[Any]:
        """Show the documents exported to `folder` by earlier sessions."""
        return self.spawn(self._load_history(folder))

    async def _load_history(self, folder: Path) -> None:
        from ocrdesk.gui.history import read_exports  # a small reader, kept apart

        entries = await asyncio.to_thread(read_exports, folder)
        for entry in entries:
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

    async def close(self) -> None:
        """Stop the run and the local server, close documents."""
        self.stop()
        if self._run_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._run_task), CLOSE_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("the conversion process did not stop in time; killing it")
                if self._runner is not None:
                    self._runner.close(0)
                self.drain(budget=None)  # sees it gone: the run ends
            except BaseException:
                pass
            with contextlib.suppress(BaseException):
                await self._run_task
        # What the window and the queue started (page images, opening files, history) ends
        # here too, not later against widgets that are being deleted.
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._stop_local()
        await self._close_client()
        runner, self._runner = self._runner, None
        if runner is not None:
            await asyncio.to_thread(runner.close)
        self.worker.close()
        for item in self.docs.values():
            if item.document is not None:
                item.document.close()
                item.document = None


_KEEP = (PageStatus.DONE, PageStatus.TRUNCATED)
CLOSE_WAIT_S = 30.0  # how long closing waits for the worker to write its files and stop
FLUSH_MS = 50


# The engine's fixes name the CLI's options; the window has its Settings dialog instead.
_CLI_TERMS = (
    ("OCRDESK_VLLM/--vllm/settings", "Settings"),
    ("a remote server with --server", "a remote server (Settings)"),
    ("--server", "a remote server in Settings"),
    ("--gpu-memory-utilization", "GPU memory utilisation in Settings"),
)


def _in_window_terms(fix: str) -> str:
    for cli, window in _CLI_TERMS:
        fix = fix.replace(cli, window)
    return fix


def _has_lead(raw: str) -> bool:
    head = raw.split("<|", 1)[0]
    return bool(head.strip())


def _thumbnail(document: Document, number: int, width: int) -> Image.Image:
    """Worker thread: the page at a low resolution, scaled to `width` px wide."""
    image = document.render(number, 24)  # an A4 page is ~200 px wide at 24 dpi
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))))
    return image


def _write_export(export: DocumentExport, item: DocItem, results: list[PageResult]) -> None:
    """Worker thread: render each finished page again (for crops and layout) and write it all."""
    for result in results:
        image = None
        if item.document is not None and result.status is not PageStatus.FAILED:
            with contextlib.suppress(Exception):
                image = item.document.render(result.number, item.dpi)
                if result.width and image.size != (result.width, result.height):
                    image = image.resize((result.width, result.height))
        export.add_page(result, image)
    export.finish()


__all__ = ["Controller", "DocItem", "PageState", "Task"]
