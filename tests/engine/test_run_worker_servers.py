"""The conversion worker over several servers (the local engine's one vLLM per GPU): the pages
of a run spread over them, and a supervised server that is gone is brought back on its own (the
worker's `Reconnect` names it, the host's `Target` answers for it) while the others serve."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from ocrdesk.engine import ConvertOptions, PageStatus, protocol
from ocrdesk.engine.protocol import PageDone, Reconnect, Report, Target
from ocrdesk.engine.run_worker import ClientSpec, RunWorker
from tests.engine.helpers import make_pdf
from tests.engine.test_run_worker import TEXT, collect, ended, of, spec, worker
from tests.fakes.openai_server import FakeOpenAIServer

__all__ = ["worker"]  # the fixture

OPTIONS = ConvertOptions(concurrency=4)


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def test_the_servers_and_their_restart_index_cross_the_boundary() -> None:
    run = protocol.Run((ClientSpec("http://a/v1"), ClientSpec("http://b/v1")), OPTIONS, ())
    data = protocol.encode([run, Target("http://c/v1", "k", server=1)])
    assert protocol.decode_commands(data) == [run, Target("http://c/v1", "k", None, 1)]
    assert protocol.decode_reports(protocol.encode([Reconnect(1)])) == [Reconnect(server=1)]


async def test_a_run_spreads_its_pages_over_every_server(worker: RunWorker, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    with (
        FakeOpenAIServer([TEXT], token_delay=0.003) as first,
        FakeOpenAIServer([TEXT], token_delay=0.003) as second,
    ):
        servers = [ClientSpec(s.url, api_key=s.api_key) for s in (first, second)]
        worker.run(servers, OPTIONS, [spec(1, pdf, tmp_path)])
        messages = await collect(worker, ended)
        counts = first.completed, second.completed
    pages = of(messages, PageDone)
    assert len(pages) == 8 and all(m.result.status is PageStatus.DONE for m in pages)
    assert sum(counts) == 8 and min(counts) >= 2, counts


async def test_the_server_that_is_gone_is_the_one_brought_back(
    worker: RunWorker, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 6)
    messages: list[Report] = []
    with (
        FakeOpenAIServer([TEXT], token_delay=0.003) as alive,
        FakeOpenAIServer([TEXT], token_delay=0.003) as restarted,
    ):
        servers = [
            ClientSpec(alive.url, api_key=alive.api_key, model=alive.model, supervised=True),
            ClientSpec(dead_url(), api_key="old", model=restarted.model, supervised=True),
        ]
        worker.run(servers, OPTIONS, [spec(1, pdf, tmp_path)])
        # Each page that found the server gone asks (one at a time); each ask is answered.
        deadline = time.monotonic() + 60
        while not messages or not ended(messages[-1]):
            assert time.monotonic() < deadline and not worker.gone, messages[-5:]
            for message in worker.receive():
                messages.append(message)
                if isinstance(message, Reconnect):
                    # Another server's restart answers nothing: server 1's requests wait on.
                    worker.target(dead_url(), "wrong", server=0)
                    worker.target(restarted.url, restarted.api_key, server=1)  # a new address
            await asyncio.sleep(0.01)
        counts = alive.completed, restarted.completed
    asked = of(messages, Reconnect)
    assert asked and all(m.server == 1 for m in asked), asked
    pages = of(messages, PageDone)
    assert len(pages) == 6 and all(m.result.status is PageStatus.DONE for m in pages)
    assert counts[0] >= 1 and counts[1] >= 1, counts
