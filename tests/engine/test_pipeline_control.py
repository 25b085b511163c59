"""Pausing, resuming and cancelling one document of a running pipeline, and adding documents
to a run, against the loopback OpenAI test server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.pipeline import (
    ConvertOptions,
    DocumentFinished,
    DocumentJob,
    Event,
    JobFeed,
    PageCancelled,
    PageFailed,
    PageFinished,
    PageStarted,
    Pipeline,
)
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose

TEXT = prose(100)


def pool_for(server: FakeOpenAIServer) -> ServerPool:
    return ServerPool([ModelClient(server.url, api_key=server.api_key)])


def finished_pages(events: list[Event], job: DocumentJob) -> list[int]:
    return sorted(e.result.number for e in events if isinstance(e, PageFinished) and e.job is job)


async def test_a_paused_document_waits_while_the_next_one_runs(tmp_path: Path) -> None:
    first = DocumentJob(make_pdf(tmp_path / "a.pdf", 6))
    second = DocumentJob(make_pdf(tmp_path / "b.pdf", 3))
    first.control.pause()
    events: list[Event] = []
    with FakeOpenAIServer([TEXT], token_delay=0.002) as server:
        pool = pool_for(server)
        async for event in Pipeline(pool, ConvertOptions(concurrency=2)).run([first, second]):
            events.append(event)
            if isinstance(event, DocumentFinished) and event.job is second:
                # Nothing of the paused document ran while it was paused.
                assert finished_pages(events, first) == []
                assert not any(isinstance(e, PageStarted) and e.job is first for e in events)
                first.control.resume()
        await pool.close()
    assert finished_pages(events, second) == [1, 2, 3]
    assert finished_pages(events, first) == [1, 2, 3, 4, 5, 6]
    last = [e for e in events if isinstance(e, DocumentFinished) and e.job is first]
    assert len(last) == 1 and not last[0].cancelled


async def test_pause_lets_pages_in_flight_finish(tmp_path: Path) -> None:
    job = DocumentJob(make_pdf(tmp_path / "a.pdf", 8))
    events: list[Event] = []
    with FakeOpenAIServer([TEXT], token_delay=0.003) as server:
        pool = pool_for(server)
        run = Pipeline(pool, ConvertOptions(concurrency=2)).run([job])

        async def consume() -> None:
            async for event in run:
                events.append(event)
                if isinstance(event, PageFinished) and len(finished_pages(events, job)) == 1:
                    job.control.pause()
                    asyncio.get_running_loop().call_later(0.5, job.control.resume)

        await asyncio.wait_for(consume(), 30)
        await pool.close()
    assert finished_pages(events, job) == list(range(1, 9))
    assert len(server.requests) == 8  # no page sent twice


async def test_cancel_stops_a_document_and_hands_its_slots_back(tmp_path: Path) -> None:
    slow = DocumentJob(make_pdf(tmp_path / "slow.pdf", 10))
    after = DocumentJob(make_pdf(tmp_path / "after.pdf", 2))
    events: list[Event] = []
    with FakeOpenAIServer(["word " * 1500], token_delay=0.002) as server:
        pool = pool_for(server)
        options = ConvertOptions(concurrency=3, first_window=None)  # three in flight at once
        run = Pipeline(pool, options).run([slow, after])

        async def consume() -> None:
            async for event in run:
                events.append(event)
                started = [e for e in events if isinstance(e, PageStarted) and e.job is slow]
                if len(started) == 3 and not slow.control.cancelled:
                    slow.control.cancel()

        await asyncio.wait_for(consume(), 60)
        for _ in range(100):  # the cancelled streams are closed, not read to the end
            if server.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert server.in_flight == 0
        await pool.close()
    cancelled = sorted(e.number for e in events if isinstance(e, PageCancelled))
    assert cancelled == [1, 2, 3]
    assert finished_pages(events, slow) == []
    done = [e for e in events if isinstance(e, DocumentFinished) and e.job is slow]
    assert len(done) == 1 and done[0].cancelled and done[0].statuses == {}
    # The slots came back: the next document ran to the end with the same bound of 3.
    assert finished_pages(events, after) == [1, 2]
    assert not any(isinstance(e, PageFailed) for e in events)


async def test_a_document_cancelled_before_it_opens_is_skipped(tmp_path: Path) -> None:
    first = DocumentJob(make_pdf(tmp_path / "a.pdf", 2))
    skipped = DocumentJob(make_pdf(tmp_path / "b.pdf", 2))
    skipped.control.cancel()
    with FakeOpenAIServer([TEXT]) as server:
        pool = pool_for(server)
        events = [e async for e in Pipeline(pool).run([first, skipped])]
        await pool.close()
    assert finished_pages(events, first) == [1, 2]
    done = [e for e in events if isinstance(e, DocumentFinished) and e.job is skipped]
    assert len(done) == 1 and done[0].cancelled
    assert len(server.requests) == 2


async def test_documents_added_to_a_running_feed_join_the_run(tmp_path: Path) -> None:
    first = DocumentJob(make_pdf(tmp_path / "a.pdf", 3))
    late = DocumentJob(make_pdf(tmp_path / "b.pdf", 2))
    feed = JobFeed([first])
    events: list[Event] = []
    with FakeOpenAIServer([TEXT], token_delay=0.003) as server:
        pool = pool_for(server)
        async for event in Pipeline(pool, ConvertOptions(concurrency=2)).run(feed):
            events.append(event)
            if isinstance(event, PageStarted) and event.job is first and event.number == 1:
                assert feed.add(late)
        await pool.close()
    assert finished_pages(events, first) == [1, 2, 3]
    assert finished_pages(events, late) == [1, 2]
    assert feed.ended and not feed.add(DocumentJob(tmp_path / "c.pdf"))


async def test_an_open_feed_waits_for_more_until_closed(tmp_path: Path) -> None:
    feed = JobFeed(close_when_empty=False)
    job = DocumentJob(make_pdf(tmp_path / "a.pdf", 1))
    with FakeOpenAIServer([TEXT]) as server:
        pool = pool_for(server)
        run = Pipeline(pool).run(feed)
        collected: list[Event] = []

        async def consume() -> None:
            async for event in run:
                collected.append(event)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.2)
        assert not task.done()  # an empty open feed is not the end of the run
        feed.add(job)
        while not any(isinstance(e, DocumentFinished) for e in collected):
            await asyncio.sleep(0.02)
        assert not task.done()
        feed.close()
        await asyncio.wait_for(task, 10)
        await pool.close()
    assert finished_pages(collected, job) == [1]


async def test_first_window_gets_one_page_back_before_opening_up(tmp_path: Path) -> None:
    job = DocumentJob(make_pdf(tmp_path / "a.pdf", 8))
    options = ConvertOptions(concurrency=4, first_window=1)
    with FakeOpenAIServer([TEXT], token_delay=0.002) as server:
        pool = pool_for(server)
        events = [e async for e in Pipeline(pool, options).run([job])]
        await pool.close()
    kinds = [type(e).__name__ for e in events if isinstance(e, (PageStarted, PageFinished))]
    # one page alone until it is done, then up to four at once
    assert kinds[:3] == ["PageStarted", "PageFinished", "PageStarted"]
    assert server.max_in_flight == 4
    assert finished_pages(events, job) == list(range(1, 9))
