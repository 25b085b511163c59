"""A conversion run in a child process, for a host (the GUI) that must keep its own thread free.

The pipeline reads thousands of stream deltas a second: HTTP, SSE, JSON, the stream parser, page
rendering and export writes. In a thread of the GUI's process all that shares one GIL (and one
garbage collector) with the GUI thread, and on a busy machine the GUI thread waited up to
100-200 ms for it (benchmarks/bench_gui_latency.py). Here the run has a process of its own; the
host only decodes a batch of small messages every few tens of milliseconds.

Host side, from one thread (the GUI's), never blocking:

    worker = RunWorker.spawn()                    # starts the worker process
    worker.run(ClientSpec(url, key, model), options, [JobSpec(...), ...])  # or several servers
    worker.add([JobSpec(...)], token) / .pause(key) / .resume(key) / .cancel(key) / .stop()
    for report in worker.receive():               # whatever has arrived; [] when nothing has
        match report: ...                         # engine.protocol's report classes
    worker.close()

A run over several servers (the local engine's one vLLM per GPU) spreads its pages over them
with one `ServerPool`; a supervised server that dies under a page is restarted on its own (the
worker asks the host with `Reconnect(index)`), while the others go on.

What crosses the socket, and how it is encoded, is `engine.protocol`'s alone. The pipeline's
events become reports here (`report_of`); deltas of one page within one batch are sent as one.
The pipeline's events are written by the same `ExportSink` as the CLI's, with its error rule: a
page's `PageDone` is sent only once its journal entry is on disk, and a page whose write failed
is reported FAILED with the write's reason (and a `Notice` names the folder).

The child is a plain interpreter that runs `engine.run_worker.main(FD)` (or, in the frozen
bundle, the bundle's own executable with `--ocrdesk-run-worker FD`), not multiprocessing's spawn:
spawn re-imports the host's `__main__`, which for the GUI pulls Qt and Chromium into the child.
The child ends when the host's end of the socket closes, so it never outlives the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from . import pipeline as pl
from . import protocol as p
from .client import ModelClient, ServerPool, restarting
from .errors import OCRDeskError, ServerUnavailableError
from .export import DocumentExport, SourceId, source_id
from .pipeline import ConvertOptions, DocumentJob, JobFeed, Pipeline
from .protocol import ClientSpec, JobSpec
from .rotation import RotationStore
from .sink import ExportSink

__all__ = ["BATCH_S", "FROZEN_FLAG", "ClientSpec", "JobSpec", "RunWorker", "main", "report_of"]

#: How long the worker collects reports before it sends them as one batch.
BATCH_S = 0.02
FROZEN_FLAG = "--ocrdesk-run-worker"
# SIGINT is ignored before the (slow) import: Ctrl+C in a terminal reaches the whole process
# group, and the host decides when the worker stops.
_CHILD_MAIN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from ocrdesk.engine.run_worker import main; sys.exit(main())"
)


class RunWorker:
    """The host's handle on one worker process. Every method returns at once: commands to the
    worker go out from a thread of their own, because a run's command can carry a pasted image
    or many finished pages and the worker may still be importing the engine."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.gone = False  # the worker's end is closed: nothing more will be received
        self._conn = conn
        self._sends: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, name="ocrdesk-worker-send")
        self._sender.daemon = True
        self._sender.start()

    @classmethod
    def spawn(cls, program: list[str] | None = None) -> RunWorker:
        """Start a worker: `program` followed by the socket's descriptor (default: this
        interpreter, or in a frozen bundle the bundle's executable with FROZEN_FLAG)."""
        host, child = socket.socketpair()
        child_fd = child.fileno()
        if program is None and getattr(sys, "frozen", False):
            program = [sys.executable, FROZEN_FLAG]
        elif program is None:
            # Not `-m engine.run_worker`: the package imports this module first, and runpy warns.
            program = [sys.executable, "-c", _CHILD_MAIN]
        command = [*program, str(child_fd)]
        env = dict(os.environ)
        root = Path(__file__).resolve().parent.parent
        if (root / "pyproject.toml").is_file():
            # A source checkout run without installing (the tests and benchmarks): the child
            # must import this engine. Not for an installed one: site-packages ahead of the
            # standard library could shadow it.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
        try:
            process = subprocess.Popen(
                command, pass_fds=(child_fd,), stdin=subprocess.DEVNULL, env=env
            )
        except BaseException:
            host.close()
            raise
        finally:
            child.close()
        return cls(process, Connection(host.detach()))

    # -- to the worker ---------------------------------------------------------------------------

    def send(self, command: p.Command) -> None:
        """Send one command (engine.protocol); the methods below name the usual ones."""
        self._sends.put(p.encode([command]))

    def _send_all(self) -> None:
        while (data := self._sends.get()) is not None:
            try:
                self._conn.send_bytes(data)
            except OSError:
                return  # the worker is gone; `receive` finds out and says so

    def run(
        self,
        servers: ClientSpec | Sequence[ClientSpec],
        options: ConvertOptions,
        jobs: list[JobSpec],
    ) -> None:
        """Convert `jobs` through one server or several (the pages spread over them)."""
        specs = (servers,) if isinstance(servers, ClientSpec) else tuple(servers)
        if not specs:
            raise ValueError("a run needs at least one server")
        self.send(p.Run(specs, options, tuple(jobs)))

    def add(self, jobs: list[JobSpec], token: int) -> None:
        """Add documents to the run; answered by `Added(token, ok)`."""
        self.send(p.Add(token, tuple(jobs)))

    def pause(self, key: int) -> None:
        self.send(p.Pause(key))

    def resume(self, key: int) -> None:
        self.send(p.Resume(key))

    def cancel(self, key: int) -> None:
        self.send(p.Cancel(key))

    def stop(self) -> None:
        """End the run: pages in flight are dropped, the files so far written; then `Ended`."""
        self.send(p.Stop())

    def target(self, url: str, api_key: str | None, server: int = 0) -> None:
        """Answer a `Reconnect(server)`: that server is back at `url`."""
        self.send(p.Target(url, api_key, server=server))

    def no_target(self, reason: str, server: int = 0) -> None:
        """Answer a `Reconnect(server)`: that server is not coming back; its requests fail with
        `reason`."""
        self.send(p.Target(None, reason=reason, server=server))

    # -- from the worker -------------------------------------------------------------------------

    def receive(self) -> list[p.Report]:
        """The reports that have arrived, without waiting. Sets `gone` when the worker ended.

        Raises ProtocolError for anything the worker sent that is not a report."""
        reports: list[p.Report] = []
        if self.gone:
            return reports
        try:
            while self._conn.poll(0):
                reports.extend(p.decode_reports(self._conn.recv_bytes()))
        except (EOFError, OSError):
            self.gone = True
        return reports

    def exit_code(self) -> int | None:
        return self.process.poll()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (a run in it ends as `stop` would) and wait for it."""
        self.gone = True
        self._sends.put(None)
        self._sender.join(timeout)
        with contextlib.suppress(OSError):
            self._conn.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the worker process ------------------------------------------------------------------------


class _Outbox:
    """Reports for the host, sent in batches every BATCH_S from a thread (never blocking the
    loop), one page's consecutive deltas merged."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._batch: list[p.Report] = []
        # A page's open delta: its place in _batch and its text so far, joined when sent.
        self._open: dict[tuple[int, int], tuple[int, list[str]]] = {}
        self._wake = asyncio.Event()
        self.closed = False

    def put(self, report: p.Report) -> None:
        match report:
            case p.Delta(key=key, number=number, text=text):
                merged = self._open.get((key, number))
                if merged is not None:
                    merged[1].append(text)
                    return
                self._open[(key, number)] = (len(self._batch), [text])
            case p.Started() | p.Restarted() | p.Cancelled():
                self._close_delta(report.key, report.number)
            case p.PageDone(key=key, result=result):
                self._close_delta(key, result.number)
        self._batch.append(report)
        self._wake.set()

    def _close_delta(self, key: int, number: int) -> None:
        """The page's open delta takes no more text: it is put in the batch as merged."""
        merged = self._open.pop((key, number), None)
        if merged is not None and len(merged[1]) > 1:
            self._batch[merged[0]] = p.Delta(key, number, "".join(merged[1]))

    async def pump(self) -> None:
        """Send batches until cancelled; then send what is left."""
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(BATCH_S)
                await self._flush()
        finally:
            self._send_now()

    def _take(self) -> bytes | None:
        self._wake.clear()
        if not self._batch:
            return None
        for key, number in list(self._open):
            self._close_delta(key, number)
        batch, self._batch = self._batch, []
        return p.encode(batch)

    async def _flush(self) -> None:
        data = self._take()
        if data is not None and not self.closed:
            try:
                await asyncio.to_thread(self._conn.send_bytes, data)
            except OSError:
                self.closed = True

    def _send_now(self) -> None:
        data = self._take()
        if data is not None and not self.closed:
            with contextlib.suppress(OSError):
                self._conn.send_bytes(data)


class _WorkerMain:
    """The worker process's side: takes the host's commands, runs the pipeline, reports."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.outbox = _Outbox(conn)
        self.jobs: dict[int, DocumentJob] = {}
        self.keys: dict[int, int] = {}  # id(job) -> key
        self.sink = ExportSink(model="", task="")  # each job's export names its model and task
        self.feed: JobFeed | None = None
        self.run_task: asyncio.Task[str | None] | None = None
        self.stopping = False
        self.targets: dict[int, asyncio.Future[p.Target]] = {}  # server index -> its restart

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[p.Command | None] = asyncio.Queue()

        def readable() -> None:
            try:
                while self.conn.poll(0):
                    for command in p.decode_commands(self.conn.recv_bytes()):
                        inbox.put_nowait(command)
            except (EOFError, OSError):
                loop.remove_reader(self.conn.fileno())
                inbox.put_nowait(None)
            except p.ProtocolError as exc:  # the host sent garbage: say so, keep serving
                self.outbox.put(p.Notice(f"conversion process: {exc}"))

        loop.add_reader(self.conn.fileno(), readable)
        pump = asyncio.create_task(self.outbox.pump())
        try:
            while (message := await inbox.get()) is not None:
                try:
                    self.handle(message)
                except p.ProtocolError as exc:
                    self.outbox.put(p.Notice(f"conversion process: {exc}"))
        finally:  # the host is gone: end the run as a stop would, files so far written
            if self.run_task is not None:
                self.stop()
                with contextlib.suppress(BaseException):
                    await self.run_task
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump

    def handle(self, message: p.Command) -> None:
        """Carry out one command. Raises ProtocolError for anything that is not a command."""
        match message:
            case p.Run(servers=servers, options=options, jobs=specs):
                if self.run_task is None or self.run_task.done():
                    # The jobs exist before the next command is read: a pause right after the
                    # run must find its document.
                    self.jobs.clear()
                    self.keys.clear()
                    self.sink = ExportSink(model="", task="")
                    self.feed = JobFeed([self.job(s) for s in specs])
                    self.stopping = False
                    self.run_task = asyncio.create_task(self.run(servers, options, self.feed))
                    self.run_task.add_done_callback(self.ended)
            case p.Add(token=token, jobs=specs):
                feed = self.feed
                ok = feed is not None and all(feed.add(self.job(s)) for s in specs)
                self.outbox.put(p.Added(token, ok))
            case p.Pause(key=key):
                if (job := self.jobs.get(key)) is not None:
                    job.control.pause()
            case p.Resume(key=key):
                if (job := self.jobs.get(key)) is not None:
                    job.control.resume()
            case p.Cancel(key=key):
                if (job := self.jobs.get(key)) is not None:
                    job.control.cancel()
            case p.Stop():
                self.stop()
            case p.Target(server=index):
                target = self.targets.pop(index, None)
                if target is not None and not target.done():
                    target.set_result(message)
            case _:
                raise p.ProtocolError(f"not a command: {message!r}")

    def stop(self) -> None:
        # Once: a second cancel would cut short the cleanup that writes the files so far.
        if self.run_task is not None and not self.run_task.done() and not self.stopping:
            self.stopping = True
            self.run_task.cancel()

    def ended(self, task: asyncio.Task[str | None]) -> None:
        """The run's last report, `Ended`, however the run ended."""
        self.feed = None
        error: str | None = None
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                traceback.print_exception(exc)
                error = f"unexpected error in the conversion process: {exc!r}"
            else:
                error = task.result()
        self.outbox.put(p.Ended(error))

    def job(self, spec: JobSpec) -> DocumentJob:
        job = DocumentJob(
            source=spec.source,
            name=spec.name,
            pages=spec.pages,
            password=spec.password,
            skip=dict(spec.skip),
            # The turns a person gave the pages in the window (engine/rotation.py).
            rotations=RotationStore(spec.export_folder, spec.export_source).load(),
        )
        if spec.paused:
            job.control.pause()
        try:  # which document this is, in every journal entry (as the CLI's sink records it)
            ident: SourceId | None = source_id(spec.source, spec.name)
        except OSError:
            ident = None  # the pipeline says why it cannot be read
        export = DocumentExport(
            spec.export_folder,
            source=spec.export_source,
            model=spec.model,
            task=spec.task,
            source_id=ident,
            origin=spec.source,  # the searchable PDF and a pasted image's copy are made from it
        )
        export.results.update(spec.skip)
        self.jobs[spec.key] = job
        self.keys[id(job)] = spec.key
        self.sink.add(job, export)
        return job

    def make_client(self, spec: ClientSpec, index: int = 0) -> ModelClient:
        """The client of the run's server `index`; a supervised one asks for its restart."""
        client = ModelClient(spec.url, api_key=spec.api_key, model=spec.model, timeout=spec.timeout)
        if not spec.supervised:
            return client

        async def restart() -> tuple[str, str | None]:
            return await self.ask_host_to_restart(index)

        return restarting(client, restart)

    async def ask_host_to_restart(self, index: int = 0) -> tuple[str, str | None]:
        """The local server `index` is gone: the host restarts that one and answers with its
        address. (One request per server at a time: `restarting` holds a lock per client.)"""
        target = self.targets[index] = asyncio.get_running_loop().create_future()
        self.outbox.put(p.Reconnect(index))
        answer = await target
        if answer.url is None:  # the host could not bring it back
            raise ServerUnavailableError(answer.reason or "the local server is not running")
        return answer.url, answer.api_key

    async def run(
        self, servers: Sequence[ClientSpec], options: ConvertOptions, feed: JobFeed
    ) -> str | None:
        """The pipeline over `feed`, its pages spread over `servers`; returns the error that
        ended it, None if none did."""
        pool = ServerPool([self.make_client(spec, i) for i, spec in enumerate(servers)])
        events = Pipeline(pool, options).run(feed)
        delivering: asyncio.Future[None] | None = None
        try:
            async for event in events:
                key = self.keys[id(event.job)]
                if isinstance(event, pl.DocumentOpened):
                    self.sink.handle(event)  # no file is written for it
                if not isinstance(event, (pl.PageFinished, pl.PageFailed, pl.DocumentFinished)):
                    self.outbox.put(report_of(key, event))  # deltas, thousands a second
                    continue
                # Shielded: a page whose files are being written when a stop comes is still
                # finished and announced (before `Ended`), so the host and the disk agree.
                delivering = asyncio.ensure_future(self.deliver(key, event))
                await asyncio.shield(delivering)
        except asyncio.CancelledError:
            pass
        except OCRDeskError as exc:
            return str(exc)
        finally:
            if delivering is not None:
                with contextlib.suppress(Exception):
                    await delivering
            with contextlib.suppress(Exception):
                await events.aclose()  # the pipeline's pages in flight are cancelled
            # Documents stopped part-way: their layout and combined files of the pages so far.
            for failure in await asyncio.to_thread(self.sink.close):
                self.outbox.put(p.Notice(str(failure)))
            with contextlib.suppress(Exception):
                await pool.close()
        return None

    async def deliver(
        self, key: int, event: pl.PageFinished | pl.PageFailed | pl.DocumentFinished
    ) -> None:
        """Write the export's files for a finished page or document, then tell the host.

        Before the host hears of the page, and before the pipeline releases the page's slot:
        a slow disk slows the run instead of letting page images pile up. A page whose
        journal entry could not be written is not done: it is reported failed, with why."""
        failure = await asyncio.to_thread(self.sink.handle, event)
        report = report_of(key, event)
        if failure is not None:
            self.outbox.put(p.Notice(str(failure)))
            if failure.page is not None:
                report = p.PageDone(key, failure.page_result())
        self.outbox.put(report)


def report_of(key: int, event: pl.Event) -> p.Report:
    """The report that tells the host of a pipeline event of document `key`."""
    match event:
        case pl.DocumentOpened(document=document):
            return p.Opened(key, document.page_count)
        case pl.DocumentFailed(error=error):
            return p.DocumentFailed(key, getattr(error, "reason", None) or str(error))
        case pl.PageStarted(number=number, width=width, height=height):
            return p.Started(key, number, width, height)
        case pl.PageDelta(number=number, text=text):
            return p.Delta(key, number, text)
        case pl.PageRestarted(number=number):
            return p.Restarted(key, number)
        case pl.PageCancelled(number=number):
            return p.Cancelled(key, number)
        case pl.PageFinished(result=result) | pl.PageFailed(result=result):
            return p.PageDone(key, result)
        case pl.DocumentFinished(cancelled=cancelled):
            return p.DocumentDone(key, cancelled)
    raise p.ProtocolError(f"not a pipeline event: {event!r}")


def main(argv: list[str] | None = None) -> int:
    """The worker process: serve the host on the socket whose descriptor is the argument."""
    args = sys.argv[1:] if argv is None else argv
    # Ctrl+C in a terminal reaches the whole process group; the host decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(args[0]))
    try:
        asyncio.run(_WorkerMain(conn).serve())
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
