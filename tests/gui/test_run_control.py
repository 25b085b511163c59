"""Per-document run control in the real window, against the loopback OpenAI server: pause and
resume a document, cancel one, a document dropped during a run joins it, and a conversion process
that dies. The pipeline runs in that process (engine.run_worker); the window sees it only
through the controller."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from ocrdesk.engine import PageStatus
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose
from tests.gui.conftest import arun, wait_until
from tests.gui.test_window import drop

# The box covers the "Page N" line of make_pdf (a box below it would leave it uncovered, and
# the retry would OCR that region again: more requests than pages).
TEXT = "<|ref|>text<|/ref|><|det|>[[100, 50, 900, 300]]<|/det|>\n" + prose(160)


@pytest.fixture
def app(qloop: Any, qtbot: Any, settings: Any) -> Any:
    from ocrdesk.gui.app import build

    with FakeOpenAIServer([TEXT], token_delay=0.004) as server:
        settings.set("engine/concurrency", 2)
        controller, window = build([], server=server.url, settings=settings, history=False)
        qtbot.addWidget(window)
        window.show()
        arun(qtbot, wait_until(lambda: controller.state == "ready", what="engine ready"))
        yield controller, window, server
        arun(qtbot, controller.close())


def add(qtbot: Any, controller: Any, window: Any, path: Path) -> Any:
    before = len(controller.order)
    drop(window, [path])
    arun(qtbot, wait_until(lambda: len(controller.order) > before, what="queued"))
    item = controller.docs[controller.order[-1]]
    arun(qtbot, wait_until(lambda: item.page_count or item.error, what="opened"))
    assert item.error is None, f"{path.name} did not open: {item.error}"
    return item


def done(item: Any) -> int:
    return item.count(PageStatus.DONE, PageStatus.TRUNCATED)


def test_pause_resume_and_cancel_a_document(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window, server = app
    first = add(qtbot, controller, window, make_pdf(tmp_path / "first.pdf", 6))
    second = add(qtbot, controller, window, make_pdf(tmp_path / "second.pdf", 6))
    window.queue.select_doc(first.id)
    window.run()
    arun(qtbot, wait_until(lambda: first.job is not None, what="running"))
    assert window.pause_action.isEnabled() and window.cancel_doc_action.isEnabled()

    # Pause the first document from the keyboard: its unstarted pages wait, the second goes on.
    QTest.keyClick(
        window,
        Qt.Key.Key_P,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert first.paused and window.pause_action.text() == "&Resume document"
    arun(qtbot, wait_until(lambda: done(second) == 6, timeout=60, what="second document done"))
    assert done(first) < 6 and first.count(PageStatus.RUNNING) == 0
    from ocrdesk.gui.queue_view import progress_text

    assert progress_text(first).endswith("paused")
    held = done(first)
    arun(qtbot, wait_until(lambda: done(first) == held, timeout=1))

    # Resume it (the same shortcut) and it finishes.
    window.pause_selected()
    assert not first.paused
    arun(qtbot, wait_until(lambda: done(first) == 6, timeout=60, what="first document done"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert len(server.requests) == 12  # nothing was sent twice

    # Cancel a document in the middle: pages in flight go back to waiting, done pages stay.
    third = add(qtbot, controller, window, make_pdf(tmp_path / "third.pdf", 8))
    window.queue.select_doc(third.id)
    window.run()
    arun(qtbot, wait_until(lambda: done(third) >= 1, timeout=30, what="a page of the third"))
    window.cancel_selected()
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="run over"))
    kept = done(third)
    assert 1 <= kept < 8
    assert third.count(PageStatus.WAITING) == 8 - kept
    assert third.count(PageStatus.RUNNING) == 0
    assert third.job is None and not window.cancel_doc_action.isEnabled()
    exported = sorted((third.export.folder / "pages").glob("*.json"))
    assert len(exported) == kept  # finished pages were written before the cancel


def test_a_document_dropped_during_a_run_joins_it(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window, _ = app
    first = add(qtbot, controller, window, make_pdf(tmp_path / "first.pdf", 4))
    window.run()
    arun(qtbot, wait_until(lambda: first.count(PageStatus.RUNNING), what="running"))
    from ocrdesk.gui.queue_view import progress_text

    # the row's progress gets an ETA once a page is done and others are running
    arun(qtbot, wait_until(lambda: "ETA" in progress_text(first), timeout=30, what="an ETA"))
    late = add(qtbot, controller, window, make_pdf(tmp_path / "late.pdf", 2))
    arun(qtbot, wait_until(lambda: done(late) == 2, timeout=60, what="late document done"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert done(first) == 4
    assert progress_text(first) == "4 of 4 pages"
    # the status bar: pages per second, and pages done of all queued
    assert re.fullmatch(r"\d+\.\d\d pages/s · 6 of 6 pages done", window.stats_label.text())


def test_a_dead_conversion_process_ends_the_run_and_loses_nothing(
    app: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window, _ = app
    item = add(qtbot, controller, window, make_pdf(tmp_path / "doc.pdf", 10))
    messages: list[str] = []
    controller.message.connect(messages.append)
    window.run()
    arun(qtbot, wait_until(lambda: done(item) >= 2, timeout=60, what="two pages done"))
    controller.session.worker.process.kill()  # the worker process dies (OOM killer, a crash)
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="run over"))
    kept = done(item)
    assert 2 <= kept < 10
    assert item.count(PageStatus.RUNNING) == 0 and item.job is None
    assert any("conversion process stopped unexpectedly" in m for m in messages)
    assert "exit code -9" in " ".join(messages)
    # The next run starts a new worker and does only what is left.
    window.run()
    arun(qtbot, wait_until(lambda: done(item) == 10, timeout=60, what="document done"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    exported = sorted((item.export.folder / "pages").glob("*.json"))
    assert len(exported) == 10


def test_documents_left_for_the_next_run_get_it(app: Any, qtbot: Any, tmp_path: Path) -> None:
    """A document that reached a run as it ended (the worker refused the join) is run right
    after it, not left waiting."""
    controller, window, _ = app
    first = add(qtbot, controller, window, make_pdf(tmp_path / "first.pdf", 2))
    second = add(qtbot, controller, window, make_pdf(tmp_path / "second.pdf", 2))
    assert controller.start(window.options(), [first.id])
    arun(qtbot, wait_until(lambda: first.job is not None, what="running"))
    controller.session._rerun = True  # what a join refused by the ending run leaves behind
    arun(qtbot, wait_until(lambda: done(second) == 2, timeout=60, what="second document done"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert done(first) == 2


def test_retry_failed_pages_converts_only_those(app: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window, server = app
    item = add(qtbot, controller, window, make_pdf(tmp_path / "doc.pdf", 10))
    server.fail_next("400")  # the first page's request is refused: that page fails
    window.queue.select_doc(item.id)
    window.run()
    arun(qtbot, wait_until(lambda: done(item) >= 3, timeout=60, what="three pages done"))
    window.cancel_selected()  # leaves pages waiting, which a retry must not touch
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="run over"))
    assert item.pages[1].status is PageStatus.FAILED
    waiting = item.count(PageStatus.WAITING)
    assert waiting > 0
    sent = len(server.requests)
    window.queue.select_doc(item.id)
    assert window.retry_action.isEnabled()
    QTest.keyClick(
        window,
        Qt.Key.Key_R,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    page_one_done = lambda: item.pages[1].status is PageStatus.DONE  # noqa: E731
    arun(qtbot, wait_until(page_one_done, timeout=30, what="page 1 retried"))
    arun(qtbot, wait_until(lambda: not controller.running, timeout=30, what="retry over"))
    assert item.count(PageStatus.WAITING) == waiting
    assert len(server.requests) == sent + 1


def test_the_status_bar_counts_what_it_says(app: Any, qtbot: Any, tmp_path: Path) -> None:
    """Failed pages are not done; the run's page count is there from its start; a pace only
    once a page of the run was converted (a failed one is no pace)."""
    controller, window, server = app
    item = add(qtbot, controller, window, make_pdf(tmp_path / "doc.pdf", 5))
    seen: list[tuple[str, int, bool]] = []
    controller.statsChanged.connect(lambda text: seen.append((text, item.done, controller.running)))
    server.fail_next("400")  # the first page's request is refused: that page fails
    window.run()
    arun(qtbot, wait_until(lambda: item.finished == 5, timeout=60, what="all pages finished"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert item.count(PageStatus.FAILED) == 1
    assert re.fullmatch(r"\d+\.\d\d pages/s · 4 of 5 pages done · 1 failed", seen[-1][0])
    assert window.stats_label.text() == seen[-1][0]
    assert seen[0][2] and seen[0][0] == "0 of 5 pages done"  # the run's first line
    for text, done, _running in seen:
        assert "of 5 pages done" in text
        assert ("pages/s" in text) == (done > 0), text


def test_the_engine_light_turns_red_when_the_server_dies(
    app: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window, server = app
    item = add(qtbot, controller, window, make_pdf(tmp_path / "doc.pdf", 2))
    server.stop()  # the remote server goes away
    window.run()
    arun(qtbot, wait_until(lambda: item.finished == 2, timeout=60, what="pages failed"))
    arun(qtbot, wait_until(lambda: controller.state == "error", timeout=30, what="red light"))
    assert "stopped answering" in controller.detail
    assert "error:" in window.engine_label.text()
    assert not window.run_action.isEnabled()
