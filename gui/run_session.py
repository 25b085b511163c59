"""The run: the worker process that converts, its reports taken on the GUI thread, and the pages'
streaming state.

The run's pipeline (client, stream parsing, export writes) goes on in a child process, the
worker (`engine.RunWorker`): in a thread of this process its stream reading shared the GIL and
the garbage collector with the GUI thread and stalled it for up to 100-200 ms. The worker's
reports (engine.protocol) are taken every DRAIN_MS by the GUI thread, which spends at most
DRAIN_BUDGET_S per turn on them, and applied by class (`apply`; anything else is a
ProtocolError); those about a document go to `RunPages` (gui.run_pages), which keeps each
streaming page's parser.

Documents can join a running run, and each can be paused, resumed or cancelled on its own. A
worker that dies ends the run: finished pages are kept (they are on disk too), pages in flight go
back to waiting.

A page a person corrected (its edits are in the document's `EditStore`, gui/editing.py) is never
requested again by a run, failed or not; only Run again, which the person asks for, starts such
pages over (and clears their edits).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal

from ocrdesk.engine import (
    ConvertOptions,
    DocumentExport,
    EditStore,
    JobSpec,
    PageStatus,
    RotationStore,
    RunWorker,
    export_folder,
    protocol,
)
from ocrdesk.engine.protocol import ProtocolError, Report
from ocrdesk.gui.engine_link import EngineLink, EngineState
from ocrdesk.gui.library import DocItem, Library, Spawn
from ocrdesk.gui.run_pages import RunPages

log = logging.getLogger(__name__)

DRAIN_MS = 30  # how often the GUI thread takes the worker's reports
DRAIN_BUDGET_S = 0.015  # the most one turn spends on them; the rest waits for the next turn
CLOSE_WAIT_S = 30.0  # how long closing waits for the worker to write its files and stop
_KEEP = (PageStatus.DONE, PageStatus.TRUNCATED)


def stats_text(docs: list[DocItem], run_pages: int, elapsed: float) -> str:
    """The status bar's run line: pages done of all queued, failed ones apart, and the pace once
    a page of this run was converted (`RunPages.converted`: a failed page is no pace)."""
    total = sum(len(d.pages) for d in docs)
    done = sum(d.done for d in docs)
    failed = sum(d.count(PageStatus.FAILED) for d in docs)
    text = f"{done} of {total} pages done"
    if failed:
        text += f" · {failed} failed"
    if run_pages and elapsed > 0:
        text = f"{run_pages / elapsed:.2f} pages/s · {text}"
    return text


class RunSession(QObject):
    """The run over the library's documents, through the worker process."""

    runningChanged = Signal(bool)
    statsChanged = Signal(str)
    message = Signal(str)

    def __init__(
        self, library: Library, link: EngineLink, spawn: Spawn, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.library = library
        self.link = link
        self.spawn = spawn
        self.worker: RunWorker | None = None
        self.options = ConvertOptions()
        self.run_started = 0.0
        self.run_ended: float | None = None  # when the last run ended: its pace stays put
        self._run_task: asyncio.Task[None] | None = None
        self._run_end: asyncio.Future[str | None] | None = None  # set by the worker's Ended
        self.pages = RunPages(library, self)
        self._added: dict[int, asyncio.Future[bool]] = {}  # token -> answer to a join
        self._tokens = itertools.count(1)
        self._inbox: deque[Report] = deque()  # the worker's reports, not yet applied
        self._rerun = False
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_MS)
        self._drain_timer.timeout.connect(self.drain)
        self.pages.message.connect(self.message)
        self.pages.pageFailed.connect(link.lost)
        link.changed.connect(self._engine_changed)
        library.opened.connect(self._opened)
        library.removedFromRun.connect(self.cancel)
        library.docAdded.connect(lambda _: self.emit_stats())
        library.docRemoved.connect(lambda _: self.emit_stats())

    def _engine_changed(self, state: EngineState, _detail: str) -> None:
        if state is EngineState.READY and self._run_end is None:
            # Started ahead: the worker takes a second or two to import the engine, which the
            # first Run would otherwise wait for. (Never during a run: a dead worker is
            # replaced only once its run has been ended.)
            self._ensure_worker()

    def _opened(self, doc_id: int) -> None:
        self.emit_stats()
        item = self.library.docs.get(doc_id)
        if item is not None and self.running:
            self.spawn(self._join([item]))

    # -- control ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    def start(
        self, options: ConvertOptions, doc_ids: list[int] | None = None, only_failed: bool = False
    ) -> bool:
        """Convert the waiting and failed pages of the queued documents. False if nothing to do.

        While a run goes on, the documents join it (with the run's options)."""
        if not self.link.ready:
            self.message.emit(f"the engine is not ready: {self.link.detail}")
            return False
        docs = self.library.docs
        ids = doc_ids if doc_ids is not None else list(self.library.order)
        items = [
            docs[i] for i in ids if i in docs and docs[i].error is None and not docs[i].from_history
        ]
        items = [item for item in items if item.job is None]
        if self.running:
            self.spawn(self._join(items, only_failed))
            return True
        self.options = options
        locked = [docs[i].name for i in ids if i in docs and docs[i].locked]
        self._run_task = self.spawn(self._run(items, only_failed, locked))
        return True

    def run_again(self, options: ConvertOptions, doc_ids: list[int]) -> bool:
        """Convert every page of these documents again (finished ones, or an earlier
        session's), into their export folders. False if none of them can run."""
        ids = []
        for doc_id in doc_ids:
            item = self.library.docs.get(doc_id)
            if item is None or item.job is not None:
                continue
            folder = item.export.folder if item.export is not None else None
            if item.export is not None and item.document is not None and item.job is None:
                store = EditStore(item.export.folder)
                for number in store.edited_pages():  # the person asked for the model's pages
                    store.clear(number)
            if not self.library.reset(doc_id):
                continue
            task = (self.options if self.running else options).task
            item.export = (
                None
                if folder is None
                else DocumentExport(
                    folder,
                    source=item.source if isinstance(item.source, str) else item.name,
                    model=self.link.model,
                    task=task.value,
                )
            )
            ids.append(doc_id)
        if not ids:
            self.message.emit("nothing to run again")
            return False
        return self.start(options, ids)

    def stop(self) -> None:
        """Stop the whole run; pages in flight go back to waiting."""
        if self.worker is not None and self._run_end is not None and not self._run_end.done():
            self.worker.stop()  # the worker writes the files so far and reports Ended
        elif self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()

    async def wait_stopped(self) -> None:
        if self._run_task is not None:
            with contextlib.suppress(BaseException):
                await self._run_task

    def pause(self, doc_id: int) -> None:
        """Start no more pages of the document (pages in flight finish)."""
        item = self.library.docs.get(doc_id)
        if item is not None and item.job is not None and not item.paused:
            item.paused = True
            self._tell(lambda worker: worker.pause(doc_id))
            self.library.docChanged.emit(doc_id)

    def resume(self, doc_id: int) -> None:
        item = self.library.docs.get(doc_id)
        if item is not None and item.paused:
            item.paused = False
            if item.job is not None:
                self._tell(lambda worker: worker.resume(doc_id))
            self.library.docChanged.emit(doc_id)

    def cancel(self, doc_id: int) -> None:
        """Stop the document's pages, those in flight too; finished pages are kept."""
        if doc_id in self.pages.docs:
            self._tell(lambda worker: worker.cancel(doc_id))

    def _tell(self, call: Callable[[RunWorker], None]) -> None:
        if self.worker is not None:
            call(self.worker)

    def _ensure_worker(self) -> RunWorker:
        """The worker process, started now if there is none or it has ended."""
        worker = self.worker
        if worker is None or worker.gone or worker.exit_code() is not None:
            if worker is not None:
                worker.close(0)
            worker = self.worker = RunWorker.spawn()
        return worker

    # -- jobs ------------------------------------------------------------------------------------

    def _job_for(
        self,
        item: DocItem,
        taken: set[str],
        only_failed: bool,
        edited_pages: set[int],
        stale: frozenset[int] = frozenset(),
    ) -> JobSpec | None:
        """The run's job for the document's unfinished pages, or with `only_failed` its failed
        pages only (None: nothing to do); `edited_pages` (a person's) are kept as they are."""
        if item.error is not None or not item.pages:
            return None

        def kept(number: int, status: PageStatus) -> bool:
            return (status in _KEEP and number not in stale) or number in edited_pages

        if all(kept(n, p.status) for n, p in item.pages.items()):
            return None
        pages = None
        if only_failed:
            failed = sorted(
                n
                for n, p in item.pages.items()
                if p.status is PageStatus.FAILED and not kept(n, p.status)
            )
            if not failed:
                return None
            pages = ",".join(map(str, failed))
        skip = {n: p.result for n, p in item.pages.items() if kept(n, p.status) and p.result}
        item.dpi = self.options.dpi
        if item.export is None:
            item.export = DocumentExport(
                item.home or export_folder(self.library.output_folder, item.stem, taken),
                source=item.source if isinstance(item.source, str) else item.name,
                model=self.link.model,
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
            password=item.password,
        )
        state = self.library.state
        if state is not None and state.is_removed(item.export.folder):
            state.restore([item.export.folder])  # written again: history shows it again
            state.save()
        item.run_started, item.run_done = time.monotonic(), 0
        item.job = job
        self.pages.join(item)
        return job

    async def _jobs(self, items: list[DocItem], only_failed: bool = False) -> list[JobSpec]:
        for item in items:
            if item.opened is not None:
                await item.opened
        # Folders other documents of the queue write already: two rows never share one.
        taken = {
            d.export.folder.name
            for d in self.library.docs.values()
            if d.export is not None and d.export.folder.parent == self.library.output_folder
        } | {d.home.name for d in self.library.docs.values() if d.home is not None}
        jobs = []
        for item in items:
            if item.job is None and item.id in self.library.docs:
                edited_pages: set[int] = set()
                stale: frozenset[int] = frozenset()
                if item.export is not None:
                    edited_pages = await asyncio.to_thread(
                        EditStore(item.export.folder).edited_pages
                    )
                    turns = RotationStore(item.export.folder, item.export.source)
                    stale = frozenset(await asyncio.to_thread(turns.stale))
                if item.job is not None or item.id not in self.library.docs:
                    continue  # joined or removed while the folder was read
                job = self._job_for(item, taken, only_failed, edited_pages, stale)
                if job is not None:
                    jobs.append(job)
        return jobs

    async def _join(self, items: list[DocItem], only_failed: bool = False) -> None:
        """Add documents to the running pipeline, or run them right after it."""
        jobs = await self._jobs(items, only_failed)
        if not jobs:
            return
        added = False
        if self.worker is not None and self._run_end is not None and not self._run_end.done():
            token = next(self._tokens)
            answer = self._added[token] = asyncio.get_running_loop().create_future()
            self.worker.add(jobs, token)
            added = await answer
        if not added:
            # The run was ending: these documents go in the next one.
            for job in jobs:
                self.pages.release(job.key)
            self._rerun = True
        else:
            for job in jobs:
                self.library.docChanged.emit(job.key)
        self.emit_stats()

    # -- the run ---------------------------------------------------------------------------------

    async def _run(
        self, items: list[DocItem], only_failed: bool = False, locked: Sequence[str] = ()
    ) -> None:
        """Convert `items`; `locked`: the documents left out for want of their password (said
        when nothing else is to do)."""
        self.pages.begin()
        jobs = await self._jobs(items, only_failed)
        if not jobs:
            if len(locked) == 1:
                why = f": {locked[0]} is locked (double-click its row to give its password)"
            elif locked:
                why = f": {len(locked)} documents are locked (double-click a row to unlock it)"
            else:
                why = ""
            self.message.emit(f"nothing to convert{why}")
            return
        self.run_started, self.run_ended = time.monotonic(), None
        self.runningChanged.emit(True)
        for job in jobs:
            self.library.docChanged.emit(job.key)
        self.emit_stats()
        end = self._run_end = asyncio.get_running_loop().create_future()
        worker: RunWorker | None = None
        error: str | None = None
        try:
            worker = self._ensure_worker()
            worker.run(self.link.client_specs(), self.options, jobs)
            self._drain_timer.start()
            error = await asyncio.shield(end)
        except asyncio.CancelledError:
            if worker is not None:
                worker.stop()
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
            self._end_run()
        if error:
            self.message.emit(f"the run stopped: {error}")
        if self._rerun:
            # Once this task is done: from inside it, `running` is still true and `start`
            # would try to join the run that is ending.
            self._rerun = False
            asyncio.get_running_loop().call_soon(self.start, self.options)

    def _end_run(self) -> None:
        self._run_end = None
        self.run_ended = time.monotonic()
        self.pages.end()
        self.runningChanged.emit(False)
        self.emit_stats()

    async def _reconnect(self, server: int) -> None:
        """The worker lost local server `server` (its index in the run's servers): bring that
        one back, and always answer."""
        worker = self.worker
        if worker is None:
            return
        try:
            url, api_key = await self.link.bring_back(server)
        except Exception as exc:
            worker.no_target(str(exc) or "the local server did not come back", server)
        else:
            worker.target(url, api_key, server)

    # -- reports, on the GUI thread --------------------------------------------------------------

    def drain(self, budget: float | None = DRAIN_BUDGET_S) -> None:
        """Apply the worker's reports that came in since the last turn, for at most `budget` s."""
        worker = self.worker
        if worker is not None:
            self._inbox.extend(worker.receive())
        deadline = None if budget is None else time.perf_counter() + budget
        while self._inbox:
            self.apply(self._inbox.popleft())
            if deadline is not None and time.perf_counter() > deadline:
                break
        if worker is not None and worker.gone and not self._inbox:
            self._worker_gone(worker)
        self.pages.end_turn()
        if self.pages.stats_dirty:
            self.pages.stats_dirty = False
            self.emit_stats()

    def _worker_gone(self, worker: RunWorker) -> None:
        """The worker process ended under a run: the run ends; finished pages stay."""
        if self._run_end is not None and not self._run_end.done():
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(0.5)  # its socket closes a moment before it can be reaped
            code = worker.exit_code()
            how = f"exit code {code}" if code is not None else "its connection closed"
            self._run_end.set_result(f"the conversion process stopped unexpectedly ({how})")
        self._answer_adds()

    def _answer_adds(self) -> None:
        added, self._added = self._added, {}
        for answer in added.values():
            if not answer.done():
                answer.set_result(False)

    def apply(self, report: Report) -> None:
        """Apply one report of the worker. Raises ProtocolError for anything else."""
        match report:
            case protocol.Ended(error=error):
                self._answer_adds()  # adds answered after the end came too late for the run
                if self._run_end is not None and not self._run_end.done():
                    self._run_end.set_result(error)
            case protocol.Added(token=token, ok=ok):
                answer = self._added.pop(token, None)
                if answer is not None and not answer.done():
                    answer.set_result(ok)
            case protocol.Notice(text=text):
                self.message.emit(text)
            case protocol.Reconnect(server=server):
                self.spawn(self._reconnect(server))
            case (
                protocol.Opened()
                | protocol.DocumentFailed()
                | protocol.Started()
                | protocol.Delta()
                | protocol.Restarted()
                | protocol.Cancelled()
                | protocol.PageDone()
                | protocol.DocumentDone()
            ):
                self.pages.apply(report)
            case _:
                raise ProtocolError(f"not a report of the worker: {report!r}")

    def emit_stats(self) -> None:
        docs = list(self.library.docs.values())
        now = self.run_ended if self.run_ended is not None else time.monotonic()
        elapsed = now - self.run_started if self.run_started else 0.0
        self.statsChanged.emit(stats_text(docs, self.pages.converted, elapsed))

    # -- closing ---------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the run (waiting for the worker to write its files), then the worker."""
        self.stop()
        if self._run_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._run_task), CLOSE_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("the conversion process did not stop in time; killing it")
                if self.worker is not None:
                    self.worker.close(0)
                self.drain(budget=None)  # sees it gone: the run ends
            except BaseException:
                pass
            await self.wait_stopped()

    async def close_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            await asyncio.to_thread(worker.close)
