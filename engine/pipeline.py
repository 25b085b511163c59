"""The OCR pipeline: documents in, an async stream of events out.

    events = Pipeline(pool, options).run(jobs)
    async for event in events: ...   # DocumentOpened, PageStarted, PageDelta, PageFinished, ...

Pages of all documents share one bound: at most `options.concurrency` pages (by default a count
found from the server's load, engine/concurrency.py) are rendered, sent or
waiting for the consumer at any moment, so a 2,000-page PDF costs no more memory than a 20-page
one, and many one-page documents still keep the server busy. A page's slot is released only after
the consumer has taken its PageFinished (or PageFailed) event, so a slow consumer (the exporter
writing files) slows the pipeline down instead of letting page images pile up.

Each document can be paused, resumed or cancelled while the run goes on (`job.control`), and a
run fed from a `JobFeed` takes more documents until the feed is closed or runs dry:

    feed = JobFeed([DocumentJob("a.pdf")])
    events = Pipeline(pool).run(feed)
    feed.add(DocumentJob("b.pdf"))      # joins the run (False once the run has ended)
    job.control.pause() / .resume() / .cancel()

Pages start in document order; a paused document's pages wait while later documents go on.
Control calls must be made on the pipeline's event loop (`loop.call_soon_threadsafe` from
another thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from . import concurrency, regions, retry, triage
from .client import ModelClient, ServerPool
from .documents import Document, open_document
from .errors import DocumentError, OCRDeskError
from .images import model_size
from .pagerange import parse_page_range
from .parser import StreamParser
from .request import LOOP_FINISH, image_data_url, stream_watched
from .results import (
    Attempt,
    Block,
    BlockSource,
    Box,
    Flag,
    FlagKind,
    PageResult,
    PageStatus,
    Strategy,
)
from .rotation import Rotation, render_turned
from .tasks import DEFAULT_DPI, ModelFamily, Sampling, Task, prompt_text


@dataclass
class ConvertOptions:
    """How documents are converted. Defaults follow the official DeepSeek-OCR pipeline."""

    task: Task = Task.MARKDOWN
    family: ModelFamily | None = None  # None: guessed from the served model's name
    prompt: str | None = None  # the custom prompt, or the text to locate
    sampling: Sampling = field(default_factory=Sampling)
    dpi: int = DEFAULT_DPI
    # Pages in flight at once; None (the default): found while the run goes, from the server's
    # load (engine/concurrency.py), between 1 and concurrency.MAX_LIMIT.
    concurrency: int | None = None
    # Until the first page of the run finishes, at most this many pages are in flight; then
    # `concurrency`. The server decodes every page in flight in lockstep, so with all pages sent
    # at once the first one finishes only with the whole batch (15-18 s for 64 pages on an H100,
    # against 2.3-3.2 s for one page alone). One page first brought it to 2.4-3.4 s at the same
    # throughput within run-to-run noise (benchmarks/results/gpu-e2e.md). None: `concurrency`
    # from the start.
    first_window: int | None = 1
    image_format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = 92
    # The most seconds one page may take to render; None: engine.mupdf.RENDER_SECONDS.
    render_timeout: float | None = None
    # A page the triage flags is tried again where a retry can mend it (engine/retry.py).
    retry: bool = True
    # PageDelta events: the text and boxes as they stream, for a window to draw. Without them
    # (the CLI, which shows pages, not text) each page is parsed once when its answer is in,
    # not delta by delta, and no event is made per token: 9 % of the client's time at its
    # ceiling (benchmarks/results/engine-cpu.md).
    deltas: bool = True


__all__ = [
    "LOOP_FINISH",
    "ConvertOptions",
    "DocumentFailed",
    "DocumentFinished",
    "DocumentJob",
    "DocumentOpened",
    "Event",
    "JobControl",
    "JobFeed",
    "PageCancelled",
    "PageDelta",
    "PageFailed",
    "PageFinished",
    "PageRestarted",
    "PageStarted",
    "Pipeline",
    "image_data_url",
    "image_prefix",
]


class JobControl:
    """Pause, resume or cancel one document of a running pipeline.

    Pausing stops new pages of the document from starting (pages already sent finish);
    cancelling also stops the pages in flight, which come back as PageCancelled."""

    def __init__(self) -> None:
        self.paused = False
        self.cancelled = False
        self._listeners: list[Callable[[], None]] = []

    def pause(self) -> None:
        self.paused = True
        self._notify()

    def resume(self) -> None:
        self.paused = False
        self._notify()

    def cancel(self) -> None:
        self.cancelled = True
        self._notify()

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()


@dataclass
class DocumentJob:
    """One document to convert: a path or raw bytes, with its page range and password."""

    source: str | Path | bytes
    name: str | None = None  # for bytes: the name shown and used for the export folder
    pages: str | None = None  # "1-3,7,10-"; None means all
    password: str | None = None
    skip: dict[int, PageResult] = field(default_factory=dict)  # pages already done (resume)
    # Pages turned before they are OCRed (engine/rotation.py); pages not named are sent as is.
    rotations: dict[int, Rotation] = field(default_factory=dict)
    control: JobControl = field(default_factory=JobControl, compare=False, repr=False)

    @property
    def label(self) -> str:
        if isinstance(self.source, bytes):
            return self.name or "pasted image"
        return str(self.source)


@dataclass(frozen=True)
class DocumentOpened:
    job: DocumentJob
    document: Document
    pages: list[int]  # the pages that will be converted, resumed ones included


@dataclass(frozen=True)
class DocumentFailed:
    job: DocumentJob
    error: OCRDeskError


@dataclass(frozen=True)
class PageStarted:
    job: DocumentJob
    number: int
    width: int
    height: int
    server: str


@dataclass(frozen=True)
class PageDelta:
    job: DocumentJob
    number: int
    text: str
    blocks: list[Block]  # blocks whose box became known with this delta


@dataclass(frozen=True)
class PageRestarted:
    """A retry threw the page's streamed text away; the text starts again from nothing."""

    job: DocumentJob
    number: int


@dataclass(frozen=True)
class PageCancelled:
    """The page was in flight when its document was cancelled; it is not done."""

    job: DocumentJob
    number: int


@dataclass(frozen=True)
class PageFinished:
    job: DocumentJob
    result: PageResult
    image: Image.Image | None  # the page image that was sent (None for resumed pages)


@dataclass(frozen=True)
class PageFailed:
    job: DocumentJob
    result: PageResult  # status FAILED, `error` says why


@dataclass(frozen=True)
class DocumentFinished:
    job: DocumentJob
    # The status of every finished page (resumed ones included), in page order. The results
    # themselves came with each page's PageFinished / PageFailed, and are in the journal: the
    # pipeline holds none once its event is taken, so a long document's memory stays flat.
    statuses: dict[int, PageStatus]
    cancelled: bool = False  # the document was cancelled: pages are missing from `statuses`


Event = (
    DocumentOpened
    | DocumentFailed
    | PageStarted
    | PageDelta
    | PageRestarted
    | PageCancelled
    | PageFinished
    | PageFailed
    | DocumentFinished
)


def image_prefix(number: int) -> str:
    """Figure crops of page N are named images/{prefix}{k}.png."""
    return f"p{number:04d}_"


class JobFeed:
    """The documents of a run, in order; more can be added while the run goes on.

    The run ends when every document is done and the feed is empty and closed, or empty
    when `close_when_empty` (the default for a plain list of jobs). After that, `add`
    returns False."""

    def __init__(self, jobs: Iterable[DocumentJob] = (), *, close_when_empty: bool = True) -> None:
        self._jobs: deque[DocumentJob] = deque(jobs)
        self.closed = False
        self.ended = False
        self.close_when_empty = close_when_empty
        self._wake: Callable[[], None] | None = None

    def add(self, job: DocumentJob) -> bool:
        if self.ended or self.closed:
            return False
        self._jobs.append(job)
        if self._wake is not None:
            self._wake()
        return True

    def close(self) -> None:
        self.closed = True
        if self._wake is not None:
            self._wake()

    def next(self) -> DocumentJob | None:
        return self._jobs.popleft() if self._jobs else None

    @property
    def dry(self) -> bool:
        """Nothing queued and nothing more will come."""
        return not self._jobs and (self.closed or self.close_when_empty)


class _DocState:
    def __init__(self, job: DocumentJob, document: Document, pages: list[int]) -> None:
        self.job = job
        self.document = document
        # Only the status of a finished page, not its result (see DocumentFinished).
        self.statuses = {n: job.skip[n].status for n in pages if n in job.skip}
        self.pending = len(pages) - len(self.statuses)
        self.pages = pages
        self.todo: deque[int] = deque(n for n in pages if n not in job.skip)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.finished = False

    @property
    def startable(self) -> bool:
        control = self.job.control
        return bool(self.todo) and not control.paused and not control.cancelled


class _SendWindow:
    """At most `opening` requests in flight until the first one ends, then `concurrency`.

    The window counts requests, not pages: a page that is slow to render (or never renders)
    does not hold the others back, and one that fails to render does not open the window."""

    def __init__(self, opening: int, concurrency: int) -> None:
        self._free = asyncio.Semaphore(opening)
        self._held = concurrency - opening
        self.opened = False  # a request has ended: the window is `concurrency` wide now

    async def __aenter__(self) -> None:
        await self._free.acquire()

    async def __aexit__(self, *exc: object) -> None:
        for _ in range(1 + self._held):
            self._free.release()
        self._held = 0
        self.opened = True


class Pipeline:
    """Converts documents through a pool of servers, yielding events as pages progress."""

    def __init__(self, pool: ServerPool, options: ConvertOptions | None = None) -> None:
        self.pool = pool
        self.options = options or ConvertOptions()
        if self.options.concurrency is not None and self.options.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        #: The in-flight limits the run went through, in order (one entry for a fixed one).
        self.limits: list[int] = []
        #: Characters of answer text streamed so far: the output the tuner sees without metrics.
        self.streamed = 0
        if self.options.first_window is not None and self.options.first_window < 1:
            raise ValueError("first_window must be at least 1")

    async def _prompt(self) -> str:
        family = self.options.family
        if family is None:
            model = await self.pool.clients[0].resolve_model()
            family = ModelFamily.from_model_name(model)
        return prompt_text(self.options.task, family, custom=self.options.prompt)

    async def run(self, jobs: Iterable[DocumentJob] | JobFeed) -> AsyncGenerator[Event, None]:
        """Convert `jobs` in order, pages of several documents overlapping; yield every event."""
        feed = jobs if isinstance(jobs, JobFeed) else JobFeed(jobs)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        fixed = self.options.concurrency
        ceiling = fixed or concurrency.MAX_LIMIT
        opening = min(self.options.first_window or ceiling, ceiling)
        slots = concurrency.AdaptiveLimit(fixed or concurrency.AUTO_START)
        self.limits = [slots.limit]
        window = _SendWindow(opening, ceiling)
        tasks: set[asyncio.Task[None]] = set()
        states: dict[int, _DocState] = {}
        active: list[_DocState] = []  # opened documents with pages not started yet
        wake = asyncio.Event()
        feed._wake = wake.set
        prompt = await self._prompt()

        def finish_page(state: _DocState) -> None:
            state.pending -= 1
            if state.pending == 0:
                done(state)

        def done(state: _DocState) -> None:
            if state.finished:
                return
            state.finished = True
            statuses = {n: state.statuses[n] for n in state.pages if n in state.statuses}
            cancelled = state.job.control.cancelled and len(statuses) < len(state.pages)
            queue.put_nowait(DocumentFinished(state.job, statuses, cancelled))
            state.document.close()
            states.pop(id(state.job), None)
            if state in active:
                active.remove(state)

        def on_control(state: _DocState) -> None:
            if state.job.control.cancelled and not state.finished:
                state.pending -= len(state.todo)
                state.todo.clear()
                for task in list(state.tasks.values()):
                    task.cancel()
                if state.pending == 0:
                    done(state)
            wake.set()

        async def page(state: _DocState, number: int) -> None:
            try:
                result, image = await self._page(state, number, prompt, queue, window)
            except Exception as exc:  # a bug must fail the page, never the run
                result = PageResult(
                    number, 0, 0, PageStatus.FAILED, error=f"internal error: {exc!r}"
                )
                image = None
            state.tasks.pop(number, None)
            event: Event
            if result.status is PageStatus.FAILED:
                event = PageFailed(state.job, result)
            else:
                event = PageFinished(state.job, result, image)
            queue.put_nowait(event)
            state.statuses[result.number] = result.status
            finish_page(state)

        def page_ended(state: _DocState, number: int, task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            wake.set()
            # A page of a cancelled document (not a cancelled run): hand its slot back through
            # the consumer, like a finished page. Done here, not in `page`, because a task
            # cancelled before it first ran never enters its coroutine's try block.
            tracked = state.tasks.pop(number, None) is not None
            if task.cancelled() and tracked and state.job.control.cancelled:
                queue.put_nowait(PageCancelled(state.job, number))
                finish_page(state)

        async def open_next() -> bool:
            """Open the feed's next document; False when the feed has none now."""
            job = feed.next()
            if job is None:
                return False
            if job.control.cancelled:
                skipped = {n: job.skip[n].status for n in sorted(job.skip)}
                queue.put_nowait(DocumentFinished(job, skipped, True))
                return True
            try:
                document = await asyncio.to_thread(
                    open_document, job.source, password=job.password, name=job.name
                )
                pages = parse_page_range(job.pages, document.page_count)
            except OCRDeskError as exc:
                queue.put_nowait(DocumentFailed(job, exc))
                return True
            state = _DocState(job, document, pages)
            states[id(job)] = state
            queue.put_nowait(DocumentOpened(job, document, pages))
            job.control.listen(lambda: on_control(state))
            if job.control.cancelled:
                on_control(state)  # finishes the document: nothing of it is in flight
            elif state.pending == 0:
                done(state)
            else:
                active.append(state)
            return True

        async def produce() -> None:
            try:
                while True:
                    await slots.acquire()
                    while True:
                        wake.clear()
                        state = next((s for s in active if s.startable), None)
                        if state is not None or not await open_next():
                            break
                    if state is None:
                        slots.release()
                        waiting = any(s.todo and not s.job.control.cancelled for s in active)
                        if not waiting and not tasks and feed.dry:
                            break
                        await wake.wait()  # a page ended, a document was resumed or added
                        continue
                    number = state.todo.popleft()
                    task = asyncio.create_task(page(state, number))
                    state.tasks[number] = task
                    tasks.add(task)
                    task.add_done_callback(functools.partial(page_ended, state, number))
            finally:
                feed.ended = True
                queue.put_nowait(None)

        climb = concurrency.Climb()

        async def tune() -> None:
            while True:
                await asyncio.sleep(concurrency.TICK)
                if not window.opened:
                    continue
                load = await self.pool.load()
                in_flight, now = self.pool.in_flight, time.monotonic()
                limit = climb.step(slots.limit, in_flight, load, now, self.streamed)
                if limit != slots.limit:
                    slots.set_limit(limit)
                    self.limits.append(limit)

        producer = asyncio.create_task(produce())
        tuner = asyncio.create_task(tune()) if fixed is None else None
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
                if isinstance(event, (PageFinished, PageFailed, PageCancelled)):
                    slots.release()
            await producer
        finally:
            producer.cancel()
            if tuner is not None:
                tuner.cancel()
            for task in list(tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(producer, *tasks, return_exceptions=True)
            for state in list(states.values()):
                state.document.close()

    def _render(self, document: Document, number: int, rotation: Rotation) -> Image.Image:
        """The page image to send: rendered, turned as the person turned it, then capped at
        what the model uses (boxes come back relative to it, so the result's width and height
        are this image's)."""
        opts = self.options
        return render_turned(
            document, number, opts.dpi, rotation, timeout=opts.render_timeout, fit=model_size
        )

    async def _page(
        self,
        state: _DocState,
        number: int,
        prompt: str,
        queue: asyncio.Queue[Event | None],
        window: _SendWindow,
    ) -> tuple[PageResult, Image.Image | None]:
        job = state.job
        started = time.monotonic()
        opts = self.options
        try:
            rotation = job.rotations.get(number, Rotation.NONE)
            image = await asyncio.to_thread(self._render, state.document, number, rotation)
        except DocumentError as exc:
            return PageResult(number, 0, 0, PageStatus.FAILED, error=exc.reason), None
        url = await asyncio.to_thread(image_data_url, image, opts.image_format, opts.jpeg_quality)
        async with window:
            return await self._send(job, number, image, url, prompt, queue, started)

    async def _send(
        self,
        job: DocumentJob,
        number: int,
        image: Image.Image,
        url: str,
        prompt: str,
        queue: asyncio.Queue[Event | None],
        started: float,
    ) -> tuple[PageResult, Image.Image | None]:
        """The page's attempts (engine/retry.py): the first, then those that fit its flags, one
        after another in the page's place of the send window."""
        opts = self.options
        client = self.pool.pick()
        queue.put_nowait(PageStarted(job, number, image.width, image.height, client.url))
        tries: list[_Try] = []
        strategy: Strategy | None = Strategy.FIRST
        dense: bool | None = None  # measured when a retry would cut the page into parts
        while strategy is not None:
            best = self._best(tries)
            sampling = retry.sampling_for(strategy, opts.sampling)
            if strategy is Strategy.PARTS:
                tried = await self._parts(client, number, image, prompt, sampling)
            elif strategy is Strategy.REGION:
                assert best is not None  # a region retry is chosen from the best one's flags
                tried = await self._regions(client, best, image, prompt, sampling)
            else:
                if tries:
                    queue.put_nowait(PageRestarted(job, number))  # the retry streams from nothing
                result, loop = await self._attempt(
                    client, job, number, image, url, prompt, sampling, queue
                )
                if strategy is not Strategy.FIRST:
                    result.blocks = [
                        dataclasses.replace(b, source=BlockSource.RETRY) for b in result.blocks
                    ]
                tried = _Try(strategy, result, result.raw, result.finish_reason, loop)
            if (
                tried.result.status is PageStatus.FAILED
                and client.gone is not None
                and self.pool.any_there
            ):
                # Its server is gone (not restarted) while another is there: the same attempt
                # there, streaming from nothing, instead of a failed page.
                client = self.pool.pick()
                queue.put_nowait(PageRestarted(job, number))
                continue
            if tried.result.status is not PageStatus.FAILED:
                tried.result.flags = await asyncio.to_thread(self._check, tried, image)
            tries.append(tried)
            if tried.result.status is PageStatus.FAILED or not opts.retry:
                break
            best = self._best(tries)
            flags = best.result.flags if best is not None else []
            done = [t.strategy for t in tries]
            if dense is None and retry.wants_density(done, flags):
                dense = await asyncio.to_thread(triage.ink_share, image) >= retry.DENSE_INK_SHARE
            strategy = retry.next_strategy(done, flags, dense=bool(dense))
        kept = self._keep(tries)
        kept.seconds = time.monotonic() - started
        return kept, image

    def _check(self, tried: _Try, image: Image.Image) -> list[Flag]:
        """The triage's flags of an attempt, given the stream's own loop verdict so that the raw
        text is not scanned for loops again. A page put together from several requests (parts,
        regions) is checked on the answers as received (`_Try.checked`, without the marker
        lines of its raw), for loops only where a request was closed at its loop."""
        result = tried.result
        loop = tried.loop
        if tried.checked is not None:
            result = dataclasses.replace(result, raw=tried.checked)
        if loop is None:
            loop = next((v for raw in tried.looped if (v := triage.find_loop(raw))), None)
        confidences = [b.confidence for b in result.blocks]
        known = confidences if any(c is not None for c in confidences) else None
        return triage.check_page(result, image, self.options.task, confidences=known, loop=loop)

    @staticmethod
    def _best(tries: list[_Try]) -> _Try | None:
        """The best attempt so far that did not fail (retry.best_attempt)."""
        usable = [t for t in tries if t.result.status is not PageStatus.FAILED]
        if not usable:
            return None
        return usable[retry.best_attempt([t.result for t in usable])]

    @staticmethod
    def _keep(tries: list[_Try]) -> PageResult:
        """The best attempt that did not fail (the last one if all failed), with every attempt
        recorded on it when there was more than one."""
        best = Pipeline._best(tries)
        kept = best.result if best is not None else tries[-1].result
        if len(tries) > 1:
            kept.attempts = [
                Attempt(t.strategy, t.received, t.finish_reason, tuple(t.result.flags))
                for t in tries
            ]
        return kept

    async def _read(
        self,
        client: ModelClient,
        image: Image.Image,
        boxes: list[Box],
        prompt: str,
        sampling: Sampling,
        margin: float = regions.CROP_MARGIN,
    ) -> tuple[list[_Read], str | None]:
        """Each of `boxes` of the page OCRed alone (regions.ocr_region), one after another: the
        reads, and why the requests stopped short (None: all of them were answered)."""
        reads: list[_Read] = []
        for box in boxes:
            try:
                blocks, raw, finish = await regions.ocr_region(
                    client,
                    image,
                    box,
                    prompt,
                    sampling,
                    image_format=self.options.image_format,
                    jpeg_quality=self.options.jpeg_quality,
                    margin=margin,
                )
            except OCRDeskError as exc:
                return reads, str(exc)
            reads.append(_Read(box, blocks, raw, finish))
        return reads, None

    async def _parts(
        self,
        client: ModelClient,
        number: int,
        image: Image.Image,
        prompt: str,
        sampling: Sampling,
    ) -> _Try:
        """The page cut into overlapping parts (regions.parts, no margin: they overlap), each
        OCRed alone; their blocks merged in reading order (source RETRY: the whole page was
        read again), the markdown made from them, the raw their answers as received."""
        width, height = image.size
        started = time.monotonic()
        boxes = regions.parts(width, height)
        reads, error = await self._read(client, image, boxes, prompt, sampling, margin=0.0)
        received = regions.joined_raw(
            [(f"Part {k} of {len(boxes)}", r.box, r.raw) for k, r in enumerate(reads, 1)]
        )
        if error is not None:
            failed = PageResult(
                number,
                width,
                height,
                PageStatus.FAILED,
                raw=received,
                error=error,
                seconds=time.monotonic() - started,
            )
            return _Try(Strategy.PARTS, failed, received, None)
        together = await asyncio.to_thread(regions.merge_parts, [(r.box, r.blocks) for r in reads])
        finish = _combined_finish([r.finish_reason for r in reads])
        result = PageResult(
            number=number,
            width=width,
            height=height,
            status=PageStatus.TRUNCATED if finish == "length" else PageStatus.DONE,
            raw=received,
            blocks=[dataclasses.replace(b, source=BlockSource.RETRY) for b in together],
            finish_reason=finish,
            seconds=time.monotonic() - started,
        )
        result.markdown = await asyncio.to_thread(_markdown, result)
        return _Try(
            Strategy.PARTS,
            result,
            received,
            finish,
            checked="\n".join(r.raw for r in reads),
            looped=tuple(r.raw for r in reads if r.finish_reason == LOOP_FINISH),
        )

    async def _regions(
        self,
        client: ModelClient,
        base: _Try,
        image: Image.Image,
        prompt: str,
        sampling: Sampling,
    ) -> _Try:
        """The best attempt so far (`base`) with each of its uncovered regions OCRed alone, the
        largest first (at most retry.MAX_REGIONS), with the run's grounding prompt: the blocks
        read that the page does not already hold (regions.drop_covered) are placed at their
        region (source REGION). The page's raw is base's followed by the regions' answers."""
        started = time.monotonic()
        page = base.result
        wanted = [f.box for f in page.flags if f.kind is FlagKind.UNCOVERED and f.box]
        reads, error = await self._read(
            client, image, wanted[: retry.MAX_REGIONS], prompt, sampling
        )
        received = regions.joined_raw([("Region", r.box, r.raw) for r in reads])
        if error is not None:
            failed = dataclasses.replace(
                page,
                status=PageStatus.FAILED,
                error=error,
                flags=[],
                attempts=[],
                seconds=time.monotonic() - started,
            )
            return _Try(Strategy.REGION, failed, received, None)
        blocks = list(page.blocks)
        for read in reads:
            fresh = await asyncio.to_thread(regions.drop_covered, read.blocks, blocks)
            blocks = regions.place_blocks(blocks, fresh, read.box, replace=False)
        result = dataclasses.replace(
            page,
            raw=f"{page.raw}\n{received}" if page.raw else received,
            blocks=blocks,
            flags=[],
            attempts=[],
            seconds=time.monotonic() - started,
        )
        result.markdown = await asyncio.to_thread(_markdown, result)
        return _Try(
            Strategy.REGION,
            result,
            received,
            _combined_finish([r.finish_reason for r in reads]),
            loop=base.loop,
            checked="\n".join([base.checked or page.raw, *(r.raw for r in reads)]),
            looped=base.looped + tuple(r.raw for r in reads if r.finish_reason == LOOP_FINISH),
        )

    async def _attempt(
        self,
        client: ModelClient,
        job: DocumentJob,
        number: int,
        image: Image.Image,
        url: str,
        prompt: str,
        sampling: Sampling,
        queue: asyncio.Queue[Event | None],
    ) -> tuple[PageResult, triage.LoopVerdict | None]:
        """One request for the whole page, streamed to the window and closed early when it
        loops (request.stream_watched): the text before the loop is the result, the raw text as
        received is kept whole. Where the server sends token logprobs, each block gets its
        confidence (`triage.block_confidences`). Returns the loop verdict with the result."""
        width, height = image.size
        started = time.monotonic()
        parser = StreamParser(width, height, image_prefix(number))
        deltas = self.options.deltas
        pieces: list[str] = []  # without deltas: the text so far, parsed once it is all in

        def on_delta(text: str) -> None:
            self.streamed += len(text)
            if deltas:
                queue.put_nowait(PageDelta(job, number, text, parser.feed(text)))
            else:
                pieces.append(text)

        def on_restart() -> None:
            nonlocal parser
            parser = StreamParser(width, height, image_prefix(number))
            pieces.clear()
            if deltas:
                queue.put_nowait(PageRestarted(job, number))

        try:
            streamed = await stream_watched(
                client, url, prompt, sampling, on_delta=on_delta, on_restart=on_restart
            )
        except OCRDeskError as exc:
            failed = PageResult(
                number,
                width,
                height,
                PageStatus.FAILED,
                raw=parser.text if deltas else "".join(pieces),
                error=str(exc),
                seconds=time.monotonic() - started,
            )
            return failed, None
        if streamed.closed_at_loop:
            cut = StreamParser(width, height, image_prefix(number))
            cut.feed(streamed.kept)
            parsed = cut.finish()
            tokens = None
        else:
            assert streamed.completion is not None
            if not deltas:
                parser.feed("".join(pieces))
            parsed = parser.finish()
            tokens = streamed.completion.output_tokens
        logprobs = streamed.logprobs
        if logprobs:
            confidences = await asyncio.to_thread(
                triage.block_confidences, logprobs, width, height, streamed.end
            )
            if len(confidences) == len(parsed.blocks):  # the same text parsed twice agrees
                parsed.blocks = [
                    dataclasses.replace(block, confidence=confidence)
                    for block, confidence in zip(parsed.blocks, confidences, strict=True)
                ]
        finish = streamed.finish_reason
        status = PageStatus.TRUNCATED if finish == "length" else PageStatus.DONE
        result = PageResult(
            number=number,
            width=width,
            height=height,
            status=status,
            raw=streamed.text,
            markdown=parsed.markdown,
            blocks=parsed.blocks,
            finish_reason=finish,
            seconds=time.monotonic() - started,
            output_tokens=tokens,
        )
        return result, streamed.loop


@dataclass
class _Try:
    """One attempt at a page: its result, what its requests answered as received (the raw its
    `Attempt` records) and their finish. `loop`: the loop its stream was closed at, or the one
    of the page a region attempt builds on. A parts or region attempt has the text the triage
    reads (`checked`: the answers one after another) and the answers closed at a loop."""

    strategy: Strategy
    result: PageResult
    received: str
    finish_reason: str | None
    loop: triage.LoopVerdict | None = None
    checked: str | None = None
    looped: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Read:
    """One region of a page OCRed alone: where, its blocks in page pixels, its answer."""

    box: Box
    blocks: list[Block]
    raw: str
    finish_reason: str | None


def _markdown(result: PageResult) -> str:
    """The markdown of a page put together from several requests, made from its blocks."""
    from .edits import page_markdown_from_blocks  # edits imports this module (image_prefix)

    return page_markdown_from_blocks(result, result.blocks)


def _combined_finish(finishes: list[str | None]) -> str | None:
    """The finish of several requests: `length` if one hit the token limit, else `loop` if one
    looped, else the last one's."""
    for worst in ("length", LOOP_FINISH):
        if worst in finishes:
            return worst
    return finishes[-1] if finishes else None
