"""The conversion worker process (engine.run_worker): a real child process driven over its
socket, against the loopback OpenAI test server. What the host sees (engine.protocol's reports),
what lands on disk (the export), run control, a lost server brought back, either side dying,
and a message that is not one of the protocol's."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ocrdesk.engine import ConvertOptions, PageResult, PageStatus, protocol
from ocrdesk.engine.protocol import (
    Added,
    Delta,
    DocumentDone,
    Ended,
    Notice,
    Opened,
    PageDone,
    ProtocolError,
    Reconnect,
    Report,
    Started,
)
from ocrdesk.engine.run_worker import ClientSpec, JobSpec, RunWorker, report_of
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose

TEXT = (
    "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# A heading\n\n"
    "<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\n" + prose(120)
)
OPTIONS = ConvertOptions(concurrency=2)


def client_of(server: FakeOpenAIServer) -> ClientSpec:
    return ClientSpec(server.url, api_key=server.api_key)


def spec(key: int, pdf: Path, out: Path, **kw: Any) -> JobSpec:
    return JobSpec(
        key=key,
        source=str(pdf),
        name=pdf.name,
        export_folder=out / pdf.stem,
        export_source=str(pdf),
        model="test-model",
        task="markdown",
        **kw,
    )


async def collect(
    worker: RunWorker,
    until: Any,
    seen: list[Report] | None = None,
    timeout: float = 60.0,
) -> list[Report]:
    """Receive messages until `until(message)` holds for one of them (that one is included)."""
    messages = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in worker.receive():
            messages.append(message)
            if until(message):
                return messages
        if worker.gone:
            raise AssertionError(f"worker gone (exit {worker.exit_code()}); got {messages[-5:]}")
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out; last messages {messages[-5:]}")


R = TypeVar("R")


def of(messages: list[Report], kind: type[R], key: int | None = None) -> list[R]:
    """The reports of class `kind` (of document `key`)."""
    return [
        m
        for m in messages
        if isinstance(m, kind) and (key is None or getattr(m, "key", None) == key)
    ]


def ended(m: Report) -> bool:
    return isinstance(m, Ended)


@pytest.fixture
def worker() -> Any:
    handle = RunWorker.spawn()
    yield handle
    handle.close()


async def test_a_run_streams_pages_and_writes_the_export(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 3)
    with FakeOpenAIServer([TEXT], token_delay=0.001) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, ended)
    assert messages[-1] == Ended(None)
    assert of(messages, Opened) == [Opened(1, 3)]
    assert sorted(m.number for m in of(messages, Started)) == [1, 2, 3]
    pages = {m.result.number: m.result for m in of(messages, PageDone)}
    assert sorted(pages) == [1, 2, 3]
    assert all(r.status is PageStatus.DONE for r in pages.values())
    for number, result in pages.items():
        # The deltas (merged within a batch) add up to the page's text.
        deltas = [m for m in of(messages, Delta) if m.number == number]
        assert "".join(m.text for m in deltas) == result.raw
    assert of(messages, DocumentDone) == [DocumentDone(1, False)]
    # The result reaches the host only once its files are written.
    folder = tmp_path / "doc"
    data = json.loads((folder / "doc.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == [1, 2, 3]
    assert (folder / "doc.layout.pdf").stat().st_size > 0
    assert "# A heading" in (folder / "doc.md").read_text(encoding="utf-8")
    # Every journal entry says which document it was made from, as the CLI's do: resume and a
    # rebuild from the journal (an edit in the window) check it and find the file by it.
    entry = json.loads((folder / "pages" / "0001.json").read_text(encoding="utf-8"))
    assert entry["source"]["path"] == str(pdf) and entry["source"]["size"] == pdf.stat().st_size


async def test_deltas_come_in_batches_not_one_message_each(
    worker: RunWorker, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, ended)
        streamed = server.requests
    tokens_sent = len(streamed) * len(TEXT.split())  # a lower bound on the server's deltas
    assert len(of(messages, Delta)) < tokens_sent / 4


async def test_pause_add_resume_and_cancel(worker: RunWorker, tmp_path: Path) -> None:
    first = make_pdf(tmp_path / "first.pdf", 6)
    second = make_pdf(tmp_path / "second.pdf", 3)
    third = make_pdf(tmp_path / "third.pdf", 4)
    with FakeOpenAIServer([TEXT], token_delay=0.003) as server:
        client = client_of(server)
        worker.run(client, OPTIONS, [spec(1, first, tmp_path, paused=True)])
        worker.add([spec(2, second, tmp_path)], token=7)
        messages = await collect(worker, lambda m: isinstance(m, DocumentDone) and m.key == 2)
        assert Added(7, True) in messages
        assert of(messages, Started, 1) == []  # paused from the start: nothing of it ran
        worker.add([spec(3, third, tmp_path)], token=8)
        worker.resume(1)
        await collect(worker, lambda m: isinstance(m, Started) and m.key == 3, messages)
        worker.cancel(3)
        await collect(worker, ended, messages)
    assert DocumentDone(1, False) in messages
    assert DocumentDone(3, True) in messages
    assert len(of(messages, PageDone, 1)) == 6
    assert len(of(messages, PageDone, 3)) < 4
    assert messages[-1] == Ended(None)


async def test_an_add_after_the_run_ended_is_refused(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        await collect(worker, ended)
        worker.add([spec(2, make_pdf(tmp_path / "late.pdf", 1), tmp_path)], token=3)
        messages = await collect(worker, lambda m: isinstance(m, Added))
    assert messages[-1] == Added(3, False)


async def test_stop_ends_the_run_and_keeps_the_finished_pages(
    worker: RunWorker, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", 12)
    with FakeOpenAIServer([TEXT], token_delay=0.01) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, lambda m: isinstance(m, PageDone))
        worker.stop()
        await collect(worker, ended, messages)
    assert messages[-1] == Ended(None)
    finished = sorted(m.result.number for m in of(messages, PageDone))
    assert 1 <= len(finished) < 12
    # Every page on disk was announced (a page being written when the stop came too).
    journal = sorted(int(p.stem) for p in (tmp_path / "long" / "pages").glob("*.json"))
    assert journal == finished
    data = json.loads((tmp_path / "long" / "long.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == finished


async def test_resumed_pages_are_kept_in_the_export(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 3)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        client = client_of(server)
        worker.run(client, OPTIONS, [spec(1, pdf, tmp_path)])
        first = await collect(worker, ended)
        done = {m.result.number: m.result for m in of(first, PageDone)}
        worker.run(client, OPTIONS, [spec(1, pdf, tmp_path, skip={1: done[1], 3: done[3]})])
        second = await collect(worker, ended)
    assert sorted(m.number for m in of(second, Started)) == [2]
    data = json.loads((tmp_path / "doc" / "doc.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == [1, 2, 3]


async def test_an_unreachable_server_fails_the_page_with_its_reason(
    worker: RunWorker, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    worker.run(ClientSpec(url, model="m"), ConvertOptions(), [spec(1, pdf, tmp_path)])
    messages = await collect(worker, ended)
    failed = of(messages, PageDone)
    assert failed and failed[0].result.status is PageStatus.FAILED
    assert failed[0].result.error


async def test_a_supervised_client_asks_the_host_to_bring_the_server_back(
    worker: RunWorker, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        client = ClientSpec(dead, api_key=server.api_key, model=server.model, supervised=True)
        worker.run(client, OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, lambda m: isinstance(m, Reconnect))
        worker.target(server.url, server.api_key)  # "restarted" at a new address
        await collect(worker, ended, messages)
    pages = of(messages, PageDone)
    assert len(pages) == 2 and all(m.result.status is PageStatus.DONE for m in pages)


async def test_the_host_sees_a_worker_that_died(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    with FakeOpenAIServer([TEXT], token_delay=0.01) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        await collect(worker, lambda m: isinstance(m, Started))
        worker.process.kill()
        deadline = time.monotonic() + 10
        while not worker.gone and time.monotonic() < deadline:
            worker.receive()
            await asyncio.sleep(0.01)
    assert worker.gone
    assert worker.process.wait(5) == -9
    worker.pause(1)  # sending to a dead worker is not an error


def test_the_worker_exits_when_the_host_goes() -> None:
    worker = RunWorker.spawn()
    time.sleep(0.2)
    assert worker.exit_code() is None
    started = time.monotonic()
    worker.close(timeout=20)  # closes the socket: what the host's death does too
    assert worker.exit_code() == 0
    assert time.monotonic() - started < 20


async def test_a_stop_right_after_the_run_still_ends_it(worker: RunWorker, tmp_path: Path) -> None:
    """Run and stop can reach the worker in one read (a stop while it is still importing)."""
    pdf = make_pdf(tmp_path / "doc.pdf", 4)
    with FakeOpenAIServer([TEXT], token_delay=0.01) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        worker.stop()
        worker.stop()  # twice, as Stop then closing the window does
        messages = await collect(worker, ended)
    assert messages[-1] == Ended(None)
    assert len(of(messages, PageDone)) < 4


async def test_a_server_the_host_cannot_bring_back_fails_the_pages(
    worker: RunWorker, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    worker.run(ClientSpec(dead, model="m", supervised=True), OPTIONS, [spec(1, pdf, tmp_path)])
    messages = await collect(worker, lambda m: isinstance(m, Reconnect))
    worker.no_target("the local vLLM did not start again")
    await collect(worker, ended, messages)
    result = of(messages, PageDone)[0].result
    assert result.status is PageStatus.FAILED
    assert "did not start again" in (result.error or "")


# -- the protocol ---------------------------------------------------------------------------------


def test_what_is_not_a_message_is_an_error_on_both_ends() -> None:
    with pytest.raises(ProtocolError):
        protocol.encode([("opened", 1, 3)])  # type: ignore[list-item]  # the old tuple form
    with pytest.raises(ProtocolError):
        protocol.decode_reports(pickle.dumps([("delta", 1, 1, "text", [])]))
    with pytest.raises(ProtocolError):
        protocol.decode_reports(pickle.dumps(Ended(None)))  # not a batch
    with pytest.raises(ProtocolError):
        protocol.decode_reports(b"not a pickle")
    with pytest.raises(ProtocolError):
        protocol.decode_reports(protocol.encode([protocol.Stop()]))  # a command
    with pytest.raises(ProtocolError):
        protocol.decode_commands(protocol.encode([Ended(None)]))  # a report
    batch = [Ended(None), Notice("x")]
    assert protocol.decode_reports(protocol.encode(batch)) == batch


def test_every_pipeline_event_has_a_report() -> None:
    with pytest.raises(ProtocolError):
        report_of(1, object())  # type: ignore[arg-type]


async def test_the_worker_reports_a_command_it_does_not_know(worker: RunWorker) -> None:
    worker.send(Ended(None))  # type: ignore[arg-type]  # a report, not a command
    messages = await collect(worker, lambda m: isinstance(m, Notice))
    assert "not a command" in of(messages, Notice)[0].text
    assert worker.exit_code() is None  # it goes on serving


async def test_the_host_refuses_what_is_not_a_report(worker: RunWorker) -> None:
    worker._conn.close()
    a, b = socket.socketpair()
    from multiprocessing.connection import Connection

    worker._conn, child = Connection(a.detach()), Connection(b.detach())
    child.send_bytes(pickle.dumps([("end", None)]))
    deadline = time.monotonic() + 30
    with pytest.raises(ProtocolError):
        while time.monotonic() < deadline:
            worker.receive()
            await asyncio.sleep(0.01)
    child.close()


async def test_a_page_that_cannot_be_written_is_reported_failed_with_why(
    worker: RunWorker, tmp_path: Path
) -> None:
    """The worker writes through the CLI's ExportSink: a page is done only once its journal
    entry is on disk."""
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export folder should go", encoding="utf-8")
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, blocker)])
        messages = await collect(worker, ended)
    assert messages[-1] == Ended(None)  # the run went on to its end
    pages = of(messages, PageDone)
    assert len(pages) == 2
    for report in pages:
        assert report.result.status is PageStatus.FAILED
        assert "could not write" in (report.result.error or "")
    assert any("could not write" in m.text for m in of(messages, Notice))


def test_a_batch_merges_a_page_s_deltas_and_loses_none() -> None:
    from multiprocessing.connection import Connection

    from ocrdesk.engine.run_worker import _Outbox

    a, b = socket.socketpair()
    host, child = Connection(a.detach()), Connection(b.detach())
    outbox = _Outbox(child)
    done = PageDone(1, PageResult(1, 10, 10, PageStatus.DONE, raw="ab"))
    for report in (
        Started(1, 1, 10, 10),
        Delta(1, 1, "a"),
        Delta(1, 2, "x"),
        Delta(1, 1, "b"),
        done,  # closes page 1's delta: what came before it stays in it
        Delta(1, 2, "y"),
        Delta(1, 1, "late"),
    ):
        outbox.put(report)
    outbox._send_now()
    assert protocol.decode_reports(host.recv_bytes()) == [
        Started(1, 1, 10, 10),
        Delta(1, 1, "ab"),
        Delta(1, 2, "xy"),
        done,
        Delta(1, 1, "late"),
    ]
    host.close()
    child.close()
