"""`ExportSink`, the one consumer of pipeline events that writes them, as the worker uses it."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ocrdesk.engine import export
from ocrdesk.engine.documents import open_document
from ocrdesk.engine.export import DocumentExport, read_export
from ocrdesk.engine.pipeline import DocumentJob, DocumentOpened, PageFailed, PageFinished
from ocrdesk.engine.results import PageResult, PageStatus
from ocrdesk.engine.sink import ExportSink
from tests.engine.helpers import make_png


def page(n: int, status: PageStatus = PageStatus.DONE) -> PageResult:
    return PageResult(n, 600, 400, status, raw=f"raw {n}", markdown=f"text {n}")


def test_a_page_is_done_only_once_its_journal_entry_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = make_png(tmp_path / "a.png")
    job = DocumentJob(png)
    sink = ExportSink(model="m", task="markdown")
    folder = tmp_path / "out" / "a"
    sink.add(job, DocumentExport(folder, source=str(png), model="m", task="markdown"))
    with open_document(png) as document:
        assert sink.handle(DocumentOpened(job, document, [1, 2, 3])) is None
    assert sink.handle(PageFinished(job, page(1), None)) is None

    real = export.atomic_write

    def full(path: Path, data: bytes | str) -> None:
        if path.name == "0002.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(export, "atomic_write", full)
    failure = sink.handle(PageFinished(job, page(2), None))
    assert failure is not None and failure.page == 2
    failed = failure.page_result()
    assert failed.status is PageStatus.FAILED and failed.number == 2
    assert (
        failed.error == f"could not write {folder / 'pages' / '0002.json'}: No space left on device"
    )
    assert str(failure).startswith(f"page 2 of {png}: could not write")
    assert sink.handle(PageFailed(job, page(3, PageStatus.FAILED))) is None

    # the run stops before DocumentFinished: close writes what was written
    assert sink.close() == []
    saved = read_export(folder)
    assert saved is not None and [r.number for r in saved.results] == [1, 3]
    assert saved.source_id is None
    assert "<!-- page 3 -->" in (folder / "a.md").read_text(encoding="utf-8")


def test_open_resumes_only_the_same_document(tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    out = tmp_path / "out"
    first = DocumentJob(png)
    sink = ExportSink(model="m", task="markdown")
    assert sink.open(first, out, set(), resume=True) == []
    assert sink.handle(PageFinished(first, page(1), None)) is None
    assert sink.close() == []

    again = DocumentJob(png)
    assert ExportSink(model="m", task="markdown").open(again, out, set(), resume=True) == []
    assert list(again.skip) == [1]

    other_model = DocumentJob(png)
    notes = ExportSink(model="n", task="markdown").open(other_model, out, set(), resume=True)
    assert other_model.skip == {}
    assert notes == [f"{out / 'a'}: 1 page(s) not reused: made with model 'm', task 'markdown'"]
