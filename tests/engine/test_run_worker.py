"""The conversion worker process (engine.run_worker): a real child process driven over its
socket, against the loopback OpenAI test server. What the host sees (messages), what lands on
disk (the export), run control, a lost server brought back, and either side dying."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import ConvertOptions, PageStatus
from ocrdesk.engine.run_worker import ClientSpec, JobSpec, Message, RunWorker
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer

TEXT = (
    "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# A heading\n\n"
    "<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\n" + "Words of a page. " * 30
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
    seen: list[Message] | None = None,
    timeout: float = 60.0,
) -> list[Message]:
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


def of(messages: list[Message], kind: str, key: int | None = None) -> list[Message]:
    return [m for m in messages if m[0] == kind and (key is None or m[1] == key)]


@pytest.fixture
def worker() -> Any:
    handle = RunWorker.spawn()
    yield handle
    handle.close()


async def test_a_run_streams_pages_and_writes_the_export(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 3)
    with FakeOpenAIServer([TEXT], token_delay=0.001) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, lambda m: m[0] == "end")
    assert messages[-1] == ("end", None)
    assert of(messages, "opened") == [("opened", 1, 3)]
    assert sorted(m[2] for m in of(messages, "started")) == [1, 2, 3]
    pages = {m[2]: m[3] for m in of(messages, "page")}
    assert sorted(pages) == [1, 2, 3]
    assert all(r.status is PageStatus.DONE for r in pages.values())
    for number, result in pages.items():
        # The deltas (merged within a batch) add up to the page's text, and their blocks are
        # the page's boxed blocks in order.
        deltas = [m for m in of(messages, "delta") if m[2] == number]
        assert "".join(m[3] for m in deltas) == result.raw
        blocks = [b for m in deltas for b in m[4]]
        assert [b.label for b in blocks] == ["title", "text"]
        assert [b.box for b in blocks] == [b.box for b in result.blocks if b.box]
    assert of(messages, "doc_finished") == [("doc_finished", 1, False)]
    # The result reaches the host only once its files are written.
    folder = tmp_path / "doc"
    data = json.loads((folder / "doc.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == [1, 2, 3]
    assert (folder / "doc.layout.pdf").stat().st_size > 0
    assert "# A heading" in (folder / "doc.md").read_text(encoding="utf-8")


async def test_deltas_come_in_batches_not_one_message_each(
    worker: RunWorker, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, lambda m: m[0] == "end")
        streamed = server.requests
    tokens_sent = len(streamed) * len(TEXT.split())  # a lower bound on the server's deltas
    assert len(of(messages, "delta")) < tokens_sent / 4


async def test_pause_add_resume_and_cancel(worker: RunWorker, tmp_path: Path) -> None:
    first = make_pdf(tmp_path / "first.pdf", 6)
    second = make_pdf(tmp_path / "second.pdf", 3)
    third = make_pdf(tmp_path / "third.pdf", 4)
    with FakeOpenAIServer([TEXT], token_delay=0.003) as server:
        client = client_of(server)
        worker.run(client, OPTIONS, [spec(1, first, tmp_path, paused=True)])
        worker.add([spec(2, second, tmp_path)], token=7)
        messages = await collect(worker, lambda m: m[:2] == ("doc_finished", 2))
        assert ("added", 7, True) in messages
        assert of(messages, "started", 1) == []  # paused from the start: nothing of it ran
        worker.add([spec(3, third, tmp_path)], token=8)
        worker.resume(1)
        await collect(worker, lambda m: m[:2] == ("started", 3), messages)
        worker.cancel(3)
        await collect(worker, lambda m: m[0] == "end", messages)
    assert ("doc_finished", 1, False) in messages
    assert ("doc_finished", 3, True) in messages
    assert len(of(messages, "page", 1)) == 6
    assert len(of(messages, "page", 3)) < 4
    assert messages[-1] == ("end", None)


async def test_an_add_after_the_run_ended_is_refused(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    with FakeOpenAIServer([TEXT], token_delay=0) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        await collect(worker, lambda m: m[0] == "end")
        worker.add([spec(2, make_pdf(tmp_path / "late.pdf", 1), tmp_path)], token=3)
        messages = await collect(worker, lambda m: m[0] == "added")
    assert messages[-1] == ("added", 3, False)


async def test_stop_ends_the_run_and_keeps_the_finished_pages(
    worker: RunWorker, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", 12)
    with FakeOpenAIServer([TEXT], token_delay=0.01) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, lambda m: m[0] == "page")
        worker.stop()
        await collect(worker, lambda m: m[0] == "end", messages)
    assert messages[-1] == ("end", None)
    finished = sorted(m[2] for m in of(messages, "page"))
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
        first = await collect(worker, lambda m: m[0] == "end")
        done = {m[2]: m[3] for m in of(first, "page")}
        worker.run(client, OPTIONS, [spec(1, pdf, tmp_path, skip={1: done[1], 3: done[3]})])
        second = await collect(worker, lambda m: m[0] == "end")
    assert sorted(m[2] for m in of(second, "started")) == [2]
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
    messages = await collect(worker, lambda m: m[0] == "end")
    failed = of(messages, "page")
    assert failed and failed[0][3].status is PageStatus.FAILED
    assert failed[0][3].error


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
        messages = await collect(worker, lambda m: m[0] == "reconnect")
        worker.target(server.url, server.api_key)  # "restarted" at a new address
        await collect(worker, lambda m: m[0] == "end", messages)
    pages = of(messages, "page")
    assert len(pages) == 2 and all(m[3].status is PageStatus.DONE for m in pages)


async def test_the_host_sees_a_worker_that_died(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    with FakeOpenAIServer([TEXT], token_delay=0.01) as server:
        worker.run(client_of(server), OPTIONS, [spec(1, pdf, tmp_path)])
        await collect(worker, lambda m: m[0] == "started")
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
        messages = await collect(worker, lambda m: m[0] == "end")
    assert messages[-1] == ("end", None)
    assert len(of(messages, "page")) < 4


async def test_a_server_the_host_cannot_bring_back_fails_the_pages(
    worker: RunWorker, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    worker.run(ClientSpec(dead, model="m", supervised=True), OPTIONS, [spec(1, pdf, tmp_path)])
    messages = await collect(worker, lambda m: m[0] == "reconnect")
    worker.no_target("the local vLLM did not start again")
    await collect(worker, lambda m: m[0] == "end", messages)
    result = of(messages, "page")[0][3]
    assert result.status is PageStatus.FAILED
    assert "did not start again" in (result.error or "")
