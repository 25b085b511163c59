"""The one consumer of the pipeline's events that writes them to disk: `ExportSink`.

The CLI and the window's worker both feed it every event they take from the pipeline; it keeps
one `DocumentExport` per document and does the journal and export writes, with one rule for a
write that fails (a full disk, a read-only folder, a file PIL cannot save, an export format whose
writer fails, e.g. pandoc missing: the other formats are still written): the write's error
comes back as a `WriteFailure` that names the page or the folder, nothing raises, and the run
goes on with the other pages and documents. A page counts as done only once its journal entry
is on disk: when `handle` returns a failure for a page, the caller reports the page as failed
with `failure.page_result()` (whose error reads "could not write ...").

    sink = ExportSink(model="deepseek-ai/DeepSeek-OCR", task="markdown")
    notes = sink.open(job, out_root, taken, resume=True)   # or sink.add(job, DocumentExport(...))
    for line in notes: print(line)                          # what resume skipped, and why
    async for event in Pipeline(pool, options).run(jobs):
        if not isinstance(event, HANDLED_EVENTS):
            continue                                   # deltas: nothing to write, no thread hop
        failure = await asyncio.to_thread(sink.handle, event)   # blocking file writes
        if failure is not None:
            print(failure)          # "page 3 of a.pdf: could not write OUT/a/pages: ..."
    for failure in await asyncio.to_thread(sink.close):     # documents stopped part-way
        print(failure)

`handle` must be called from one thread at a time, in the order the events came.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .export import (
    DocumentExport,
    ExportFailed,
    MathStyle,
    SourceId,
    export_folder,
    folder_source,
    safe_name,
    source_id,
)
from .pipeline import DocumentFinished, DocumentJob, DocumentOpened, Event, PageFailed, PageFinished
from .results import PageResult, PageStatus
from .rotation import RotationStore

#: What a page read again ends as when its answer is kept.
_READ = frozenset({PageStatus.DONE, PageStatus.TRUNCATED})

#: The events `ExportSink.handle` does anything for. Callers hand only these to a thread for the
#: blocking writes: a page streams hundreds of deltas, and a thread hop each cost the CLI two
#: thirds of its throughput (benchmarks/bench_client.py).
HANDLED_EVENTS = (DocumentOpened, PageFinished, PageFailed, DocumentFinished)

__all__ = ["HANDLED_EVENTS", "ExportSink", "WriteFailure"]


@dataclass(frozen=True)
class WriteFailure:
    """A write that failed: of page `page` (None: the document's combined files) of `label`."""

    label: str
    folder: Path
    page: int | None
    reason: str  # "could not write <path>: <why>"
    result: PageResult | None = None  # the page that was not written

    def __str__(self) -> str:
        where = f"page {self.page} of {self.label}" if self.page is not None else self.label
        return f"{where}: {self.reason}"

    def page_result(self) -> PageResult:
        """The page as failed, with this failure as its error (for the caller to report)."""
        number = self.page if self.page is not None else 0
        base = self.result or PageResult(number, 0, 0, PageStatus.FAILED)
        return replace(base, status=PageStatus.FAILED, error=self.reason)


def describe_write_error(exc: BaseException, fallback: Path) -> str:
    """ "could not write PATH: why" for an exception raised by a write."""
    if isinstance(exc, OSError):
        path = exc.filename if isinstance(exc.filename, str) else str(fallback)
        why = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else None)
        return f"could not write {path}: {why or exc}"
    return f"could not write {fallback}: {type(exc).__name__}: {exc}"


class ExportSink:
    """Writes each document's pages as their events arrive; see the module docstring."""

    def __init__(
        self,
        *,
        model: str,
        task: str,
        math: MathStyle = MathStyle.DOLLARS,
        formats: Sequence[str] | None = None,
        text_layer: str = "skip",
    ) -> None:
        self.model = model
        self.task = task
        # How the folders `open` chooses are written: the .md's formulas, the formats (None:
        # `formats.DEFAULT_FORMATS`), what the searchable PDF does with pages that have text.
        self.math = math
        self.formats = formats
        self.text_layer = text_layer
        self.exports: dict[int, DocumentExport] = {}  # id(job) -> export
        self._open: set[int] = set()  # documents with pages written and no finish yet
        self._stale: dict[int, tuple[RotationStore, set[int]]] = {}  # turned since read

    def add(self, job: DocumentJob, export: DocumentExport) -> None:
        """Write `job`'s events into `export` (a folder the caller chose)."""
        self.exports[id(job)] = export

    def open(self, job: DocumentJob, out_root: Path, taken: set[str], *, resume: bool) -> list[str]:
        """Choose `job`'s folder under `out_root` (never another document's: see
        `export_folder`), and with `resume` put the pages already done into `job.skip`.
        Returns lines that say where the document goes when that is not its plain name, and
        what resume did not reuse and why."""
        notes: list[str] = []
        ident: SourceId | None
        try:
            if isinstance(job.source, bytes):
                ident = source_id(job.source, job.name)
            else:
                ident = source_id(job.source)
        except OSError:
            ident = None  # the pipeline says why it cannot be read
        stem = Path(job.label).stem
        folder = export_folder(out_root, stem, taken, ident)
        plain = out_root / safe_name(stem)
        owner = folder_source(plain) if folder != plain else None
        if owner is not None and ident is not None:
            made = owner.path if isinstance(owner, SourceId) else "an unknown document"
            notes.append(
                f"{plain} holds the pages of another document ({made}); "
                f"{job.label} goes to {folder}"
            )
        export = DocumentExport(
            folder,
            source=job.label,
            model=self.model,
            task=self.task,
            source_id=ident,
            math=self.math,
            formats=self.formats,
            origin=job.source,
            text_layer=self.text_layer,
            password=job.password,
        )
        if resume:
            report = export.resume()
            job.skip = report.reused
            notes += report.lines(folder)
        self.add(job, export)
        return notes

    def handle(self, event: Event) -> WriteFailure | None:
        """Write what `event` finished; a failed write comes back, it does not raise."""
        export = self.exports.get(id(event.job))
        if export is None:
            return None
        key = id(event.job)
        if isinstance(event, DocumentOpened):
            export.set_page_count(event.document.page_count)
            return None
        if isinstance(event, (PageFinished, PageFailed)):
            image = event.image if isinstance(event, PageFinished) else None
            try:
                export.add_page(event.result, image)
            except Exception as exc:  # OSError, or an image PIL cannot draw or save
                target = export.pages_dir
                return WriteFailure(
                    event.job.label,
                    export.folder,
                    event.result.number,
                    describe_write_error(exc, target),
                    event.result,
                )
            self._open.add(key)
            if isinstance(event, PageFinished) and event.result.status in _READ:
                self._note_read(key, export, event)
            return None
        if isinstance(event, DocumentFinished):
            self._open.discard(key)
            return self._finish(event.job.label, export)
        return None

    def _note_read(self, key: int, export: DocumentExport, event: PageFinished) -> None:
        """A page turned since its kept result was read (engine/rotation.py) has been read
        again at its turn, and written: it is not stale any more. Before the combined files
        are written, so that its searchable PDF page takes the turn it was read at."""
        if key not in self._stale:
            store = RotationStore(export.folder, export.source)
            self._stale[key] = (store, set(store.stale()))
        store, stale = self._stale[key]
        number = event.result.number
        if number not in stale:
            return None
        stale.discard(number)
        # Not written: the page stays stale, and the next run reads it once more. Nothing lost.
        with contextlib.suppress(OSError):
            store.fresh(number)
        return None

    def close(self) -> list[WriteFailure]:
        """Write the combined files of documents that stopped part-way (a cancelled run)."""
        failures = []
        for key in sorted(self._open):
            export = self.exports[key]
            failure = self._finish(export.source, export)
            if failure is not None:
                failures.append(failure)
        self._open.clear()
        return failures

    @staticmethod
    def _finish(label: str, export: DocumentExport) -> WriteFailure | None:
        try:
            export.finish()
        except ExportFailed as exc:  # some formats were written, these were not
            return WriteFailure(label, export.folder, None, str(exc))
        except Exception as exc:
            return WriteFailure(
                label, export.folder, None, describe_write_error(exc, export.folder)
            )
        return None
