"""A conversion run in a child process, for a host (the GUI) that must keep its own thread free.

The pipeline reads thousands of stream deltas a second: HTTP, SSE, JSON, the stream parser, page
rendering and export writes. In a thread of the GUI's process all that shares one GIL (and one
garbage collector) with the GUI thread, and on a busy machine the GUI thread waited up to
100-200 ms for it (benchmarks/bench_gui_latency.py). Here the run has a process of its own; the
host only unpickles a batch of small messages every few tens of milliseconds.

Host side, from one thread (the GUI's), never blocking:

    worker = RunWorker.spawn()                    # starts `python -m engine.run_worker`
    worker.run(ClientSpec(url, key, model), options, [JobSpec(...), ...])
    worker.add([JobSpec(...)], token) / .pause(key) / .resume(key) / .cancel(key) / .stop()
    for message in worker.receive():              # whatever has arrived; [] when nothing has
        ...                                       # tuples, see "Messages" below
    worker.close()

Messages from the worker (first item names it; `key` is the JobSpec's key):

    ("opened", key, page_count)          ("doc_failed", key, reason)
    ("started", key, number, w, h)       ("delta", key, number, text, blocks)
    ("restarted", key, number)           ("page_cancelled", key, number)
    ("page", key, number, PageResult)    ("doc_finished", key, cancelled)
    ("added", token, ok)                 ("message", text)
    ("reconnect",)                       ("end", error or None)

Deltas of one page that arrive within one batch are sent as one. A page's result is sent only
after its export files are written, as in the CLI. "reconnect" asks the host to bring a crashed
local server back; the worker's requests wait until the host answers with `target(url, key)`.

The child is a plain interpreter that runs `engine.run_worker.main(FD)` (or, in the frozen
bundle, the bundle's own executable with `--ocrdesk-run-worker FD`), not multiprocessing's spawn:
spawn re-imports the host's `__main__`, which for the GUI pulls Qt and Chromium into the child.
The child ends when the host's end of the socket closes, so it never outlives the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .client import ModelClient, ServerPool, restarting
from .errors import OCRDeskError, ServerUnavailableError
from .export import DocumentExport
from .pipeline import (
    ConvertOptions,
    DocumentFailed,
    DocumentFinished,
    DocumentJob,
    DocumentOpened,
    Event,
    JobFeed,
    PageCancelled,
    PageDelta,
    PageFailed,
    PageFinished,
    PageRestarted,
    PageStarted,
    Pipeline,
)
from .results import PageResult

#: How long the worker collects messages before it sends them as one batch.
BATCH_S = 0.02
FROZEN_FLAG = "--ocrdesk-run-worker"
# SIGINT is ignored before the (slow) import: Ctrl+C in a terminal reaches the whole process
# group, and the host decides when the worker stops.
_CHILD_MAIN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from ocrdesk.engine.run_worker import main; sys.exit(main())"
)

Message = tuple[Any, ...]


@dataclass(frozen=True)
class ClientSpec:
    """The server the worker talks to. `supervised`: a local server the host restarts."""

    url: str
    api_key: str | None = None
    model: str | None = None
    timeout: float = 300.0
    supervised: bool = False


@dataclass
class JobSpec:
    """One document of a run and where its export goes."""

    key: int
    source: str | bytes
    name: str | None
    export_folder: Path
    export_source: str
    model: str
    task: str
    skip: dict[int, PageResult] = field(default_factory=dict)
    paused: bool = False
    pages: str | None = None  # a page range ("3,7-9"); None: all pages not in `skip`


class RunWorker:
    """The host's handle on one worker process. Every method returns at once: messages to the
    worker go out from a thread of their own, because a run's message can carry a pasted image
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

    def _send(self, message: Message) -> None:
        self._sends.put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _send_all(self) -> None:
        while (data := self._sends.get()) is not None:
            try:
                self._conn.send_bytes(data)
            except OSError:
                return  # the worker is gone; `receive` finds out and says so

    def run(self, client: ClientSpec, options: ConvertOptions, jobs: list[JobSpec]) -> None:
        self._send(("run", client, options, jobs))

    def add(self, jobs: list[JobSpec], token: int) -> None:
        """Add documents to the run; answered by ("added", token, ok)."""
        self._send(("add", token, jobs))

    def pause(self, key: int) -> None:
        self._send(("pause", key))

    def resume(self, key: int) -> None:
        self._send(("resume", key))

    def cancel(self, key: int) -> None:
        self._send(("cancel", key))

    def stop(self) -> None:
        """End the run: pages in flight are dropped, the files so far written; then "end"."""
        self._send(("stop",))

    def target(self, url: str, api_key: str | None) -> None:
        """Answer a "reconnect": the server is back at `url`."""
        self._send(("target", url, api_key))

    def no_target(self, reason: str) -> None:
        """Answer a "reconnect": the server is not coming back; its requests fail with `reason`."""
        self._send(("target", None, reason))

    # -- from the worker -------------------------------------------------------------------------

    def receive(self) -> list[Message]:
        """The messages that have arrived, without waiting. Sets `gone` when the worker ended."""
        messages: list[Message] = []
        if self.gone:
            return messages
        try:
            while self._conn.poll(0):
                messages.extend(pickle.loads(self._conn.recv_bytes()))
        except (EOFError, OSError):
            self.gone = True
        return messages

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
    """Messages for the host, sent in batches every BATCH_S from a thread (never blocking the
    loop), one page's consecutive deltas merged."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._batch: list[Message] = []
        self._open_delta: dict[tuple[int, int], list[Any]] = {}  # page -> its delta in _batch
        self._wake = asyncio.Event()
        self.closed = False

    def put(self, message: Message) -> None:
        if message[0] == "delta":
            page = (message[1], message[2])
            merged = self._open_delta.get(page)
            if merged is not None:
                merged[3] += message[3]
                merged[4].extend(message[4])  # a list of its own (see _message)
                return
            entry = list(message)
            self._open_delta[page] = entry
            self._batch.append(entry)  # type: ignore[arg-type]  # made a tuple when sent
        else:
            if message[0] in ("started", "restarted", "page_cancelled", "page"):
                self._open_delta.pop((message[1], message[2]), None)
            self._batch.append(message)
        self._wake.set()

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
        batch = [tuple(m) if isinstance(m, list) else m for m in self._batch]
        self._batch, self._open_delta = [], {}
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)

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


class _Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.outbox = _Outbox(conn)
        self.jobs: dict[int, DocumentJob] = {}
        self.keys: dict[int, int] = {}  # id(job) -> key
        self.exports: dict[int, DocumentExport] = {}  # key -> export
        self.feed: JobFeed | None = None
        self.run_task: asyncio.Task[str | None] | None = None
        self.stopping = False
        self.target: asyncio.Future[tuple[str | None, str | None]] | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Message | None] = asyncio.Queue()

        def readable() -> None:
            try:
                while self.conn.poll(0):
                    inbox.put_nowait(pickle.loads(self.conn.recv_bytes()))
            except (EOFError, OSError):
                loop.remove_reader(self.conn.fileno())
                inbox.put_nowait(None)

        loop.add_reader(self.conn.fileno(), readable)
        pump = asyncio.create_task(self.outbox.pump())
        try:
            while (message := await inbox.get()) is not None:
                self.handle(message)
        finally:  # the host is gone: end the run as a stop would, files so far written
            if self.run_task is not None:
                self.stop()
                with contextlib.suppress(BaseException):
                    await self.run_task
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump

    def handle(self, message: Message) -> None:
        op = message[0]
        if op == "run":
            if self.run_task is None or self.run_task.done():
                _, client, options, specs = message
                # The jobs exist before the next message is read: a pause right after the run
                # must find its document.
                self.jobs.clear()
                self.keys.clear()
                self.exports.clear()
                self.feed = JobFeed([self.job(s) for s in specs])
                self.stopping = False
                self.run_task = asyncio.create_task(self.run(client, options, self.feed))
                self.run_task.add_done_callback(self.ended)
        elif op == "add":
            _, token, specs = message
            ok = self.feed is not None and all(self.feed.add(self.job(s)) for s in specs)
            self.outbox.put(("added", token, ok))
        elif op in ("pause", "resume", "cancel"):
            job = self.jobs.get(message[1])
            if job is not None:
                getattr(job.control, op)()
        elif op == "stop":
            self.stop()
        elif op == "target" and self.target is not None and not self.target.done():
            self.target.set_result((message[1], message[2]))

    def stop(self) -> None:
        # Once: a second cancel would cut short the cleanup that writes the files so far.
        if self.run_task is not None and not self.run_task.done() and not self.stopping:
            self.stopping = True
            self.run_task.cancel()

    def ended(self, task: asyncio.Task[str | None]) -> None:
        """The run's last message, "end", however the run ended."""
        self.feed = None
        error: str | None = None
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                traceback.print_exception(exc)
                error = f"unexpected error in the conversion process: {exc!r}"
            else:
                error = task.result()
        self.outbox.put(("end", error))

    def job(self, spec: JobSpec) -> DocumentJob:
        job = DocumentJob(
            source=spec.source, name=spec.name, pages=spec.pages, skip=dict(spec.skip)
        )
        if spec.paused:
            job.control.pause()
        export = DocumentExport(
            spec.export_folder, source=spec.export_source, model=spec.model, task=spec.task
        )
        export.results.update(spec.skip)
        self.jobs[spec.key] = job
        self.keys[id(job)] = spec.key
        self.exports[spec.key] = export
        return job

    def make_client(self, spec: ClientSpec) -> ModelClient:
        client = ModelClient(spec.url, api_key=spec.api_key, model=spec.model, timeout=spec.timeout)
        return restarting(client, self.ask_host_to_restart) if spec.supervised else client

    async def ask_host_to_restart(self) -> tuple[str, str | None]:
        """The local server is gone: the host restarts it and answers with its address."""
        self.target = asyncio.get_running_loop().create_future()
        self.outbox.put(("reconnect",))
        url, key = await self.target
        if url is None:  # the host could not bring it back; `key` says why
            raise ServerUnavailableError(key or "the local server is not running")
        return url, key

    async def run(self, spec: ClientSpec, options: ConvertOptions, feed: JobFeed) -> str | None:
        """The pipeline over `feed`; returns the error that ended it, None if none did."""
        pool = ServerPool([self.make_client(spec)])
        written: set[int] = set()
        events = Pipeline(pool, options).run(feed)
        delivering: asyncio.Future[None] | None = None
        try:
            async for event in events:
                key = self.keys[id(event.job)]
                if not isinstance(event, (PageFinished, PageFailed, DocumentFinished)):
                    self.outbox.put(_message(key, event))  # most events: deltas, thousands a second
                    continue
                # Shielded: a page whose files are being written when a stop comes is still
                # finished and announced (before "end"), so the host and the disk agree.
                delivering = asyncio.ensure_future(self.deliver(key, event, written))
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
            for key in written:  # documents stopped part-way: their layout and files so far
                export = self.exports[key]
                if export.results:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(export.finish)
            with contextlib.suppress(Exception):
                await pool.close()
        return None

    async def deliver(
        self, key: int, event: PageFinished | PageFailed | DocumentFinished, written: set[int]
    ) -> None:
        """Write the export's files for a finished page or document, then tell the host.

        Before the host hears of the page, and before the pipeline releases the page's slot:
        a slow disk slows the run instead of letting page images pile up."""
        export = self.exports[key]
        try:
            if isinstance(event, (PageFinished, PageFailed)):
                image = event.image if isinstance(event, PageFinished) else None
                await asyncio.to_thread(export.add_page, event.result, image)
                written.add(key)
            elif isinstance(event, DocumentFinished):
                written.discard(key)
                await asyncio.to_thread(export.finish)
        except Exception as exc:  # a full disk, a page image PIL cannot draw on: the run goes on
            self.outbox.put(("message", f"cannot write {export.folder}: {exc}"))
        self.outbox.put(_message(key, event))


def _message(key: int, event: Event) -> Message:
    if isinstance(event, DocumentOpened):
        return ("opened", key, event.document.page_count)
    if isinstance(event, DocumentFailed):
        return ("doc_failed", key, getattr(event.error, "reason", None) or str(event.error))
    if isinstance(event, PageStarted):
        return ("started", key, event.number, event.width, event.height)
    if isinstance(event, PageDelta):
        return ("delta", key, event.number, event.text, list(event.blocks))
    if isinstance(event, PageRestarted):
        return ("restarted", key, event.number)
    if isinstance(event, PageCancelled):
        return ("page_cancelled", key, event.number)
    if isinstance(event, (PageFinished, PageFailed)):
        return ("page", key, event.result.number, event.result)
    if isinstance(event, DocumentFinished):
        return ("doc_finished", key, event.cancelled)
    raise TypeError(f"unknown event {event!r}")


def main(argv: list[str] | None = None) -> int:
    """The worker process: serve the host on the socket whose descriptor is the argument."""
    args = sys.argv[1:] if argv is None else argv
    # Ctrl+C in a terminal reaches the whole process group; the host decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(args[0]))
    try:
        asyncio.run(_Worker(conn).serve())
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
