"""The model client's bounds, against the loopback server: waits, Retry-After, bad answers."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import pytest

from ocrdesk.engine.client import (
    MAX_CHARS_PER_TOKEN,
    MAX_RETRY_AFTER_SECONDS,
    NO_ANSWER_RETRIES,
    ModelClient,
    ServerPool,
    api_base,
    retry_after,
)
from ocrdesk.engine.pipeline import (
    ConvertOptions,
    DocumentJob,
    PageFailed,
    PageFinished,
    PageRestarted,
    Pipeline,
)
from ocrdesk.engine.results import PageStatus
from ocrdesk.engine.tasks import Sampling
from tests.engine.helpers import make_pdf, make_png
from tests.fakes.openai_server import FakeOpenAIServer

GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nSome text here.\n"
)


async def run(client: ModelClient, source: Path, **options: object) -> list[object]:
    pool = ServerPool([client])
    try:
        pipeline = Pipeline(pool, ConvertOptions(**options))  # type: ignore[arg-type]
        return [event async for event in pipeline.run([DocumentJob(source)])]
    finally:
        await pool.close()


def finished(events: list[object]) -> list[PageFinished]:
    return [e for e in events if isinstance(e, PageFinished)]


def failed(events: list[object]) -> list[PageFailed]:
    return [e for e in events if isinstance(e, PageFailed)]


# --------------------------------------------------------------------------- the server's address


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("127.0.0.1:39591", "http://127.0.0.1:39591/v1"),
        ("gpu-box:8000/v1/", "http://gpu-box:8000/v1"),
        (" localhost:8000 ", "http://localhost:8000/v1"),
        ("https://ocr.example.org", "https://ocr.example.org/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_api_base_assumes_http_without_a_scheme(given: str, base: str) -> None:
    assert api_base(given) == base


async def test_a_server_url_without_a_scheme_is_reached(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        bare = f"127.0.0.1:{server.port}"
        events = await run(ModelClient(bare, max_retries=0), png)
    assert [e.result.status for e in finished(events)] == [PageStatus.DONE]


# --------------------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = 1_800_000_000.0
    assert retry_after({"retry-after": "2"}, now) == 2.0
    assert retry_after({"retry-after": "0.5"}, now) == 0.5
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now) == 1.5
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after({"retry-after": date}, now) == pytest.approx(7.0)
    assert retry_after({"retry-after": email.utils.formatdate(now - 30, usegmt=True)}, now) == 0
    assert retry_after({"retry-after": "86400"}, now) == MAX_RETRY_AFTER_SECONDS
    assert retry_after({"retry-after": "soon"}, now) is None
    assert retry_after({"retry-after": "nan"}, now) is None
    assert retry_after({}, now) is None
    assert retry_after(None, now) is None


@pytest.mark.parametrize("form", ["seconds", "date"])
async def test_429_waits_for_retry_after(tmp_path: Path, form: str) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        # An HTTP date has whole seconds: 3 s ahead is at least 2 s ahead when it is read.
        server.retry_after = (
            "2" if form == "seconds" else email.utils.formatdate(time.time() + 3, usegmt=True)
        )
        server.fail_next("429")
        events = await run(ModelClient(server.url, backoff=0.01, max_retries=2), png)
        first, second = server.requests
    assert [e.result.status for e in finished(events)] == [PageStatus.DONE]
    # Without Retry-After the client retried after its own 5-15 ms backoff.
    assert second["_received"] - first["_received"] >= 1.9


# --------------------------------------------------------------------------- bad answers


async def test_a_non_json_sse_line_is_retried_like_a_cut_stream(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("garbage")
        events = await run(ModelClient(server.url, backoff=0.01), png)
        requests = len(server.requests)
    (page,) = finished(events)
    assert page.result.status is PageStatus.DONE
    assert page.result.raw == GROUNDED  # nothing of the broken attempt is kept
    assert requests == 2
    assert any(isinstance(e, PageRestarted) for e in events)


async def test_a_huge_answer_is_stopped_and_fails_its_page(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    boxes = "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nx\n"
    sampling = Sampling(max_tokens=2000)
    with FakeOpenAIServer([boxes]) as server:
        server.huge_chars = 20_000_000  # the 20 MB answer of issue 17
        server.fail_next("huge")
        events = await run(ModelClient(server.url, backoff=0.01), pdf, sampling=sampling)
        sent = server.huge_sent
    # the first request gets the huge answer; which page that is, the render order decides
    (bad,) = failed(events)
    assert "not a page" in (bad.result.error or "")
    assert len(bad.result.raw) <= 2000 * MAX_CHARS_PER_TOKEN
    assert sent < 20_000_000  # the client stopped reading; the server never finished
    others = [e.result.number for e in finished(events)]
    assert others == [3 - bad.result.number]  # the other page went on


# --------------------------------------------------------------------------- bounded waits


async def test_a_server_that_never_sends_headers_fails_the_page_in_bounded_time(
    tmp_path: Path,
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("hang", count=2)
        # the read timeout stays long: only the wait for headers may end the attempt
        client = ModelClient(server.url, timeout=300, headers_timeout=0.5, max_retries=1)
        events = await run(client, pdf, concurrency=1)
        requests = len(server.requests)
    (bad,) = failed(events)
    assert "no response headers within 0.5 s" in (bad.result.error or "")
    assert requests == 3  # page 1 twice, then page 2
    assert [e.result.number for e in finished(events)] == [2]


async def test_a_stream_without_a_first_token_is_retried(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("stall")
        client = ModelClient(server.url, timeout=300, first_token_timeout=0.5, backoff=0.01)
        events = await run(client, pdf, concurrency=1)
        requests = len(server.requests)
        in_flight = server.in_flight
    assert [e.result.status for e in finished(events)] == [PageStatus.DONE] * 2
    assert [e.result.raw for e in finished(events)] == [GROUNDED] * 2
    assert requests == 3
    assert in_flight == 0


async def test_a_stream_without_a_first_token_fails_after_its_retries(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("stall", count=2)
        client = ModelClient(server.url, timeout=300, first_token_timeout=0.5, max_retries=1)
        events = await run(client, png)
    (bad,) = failed(events)
    assert "no token within 0.5 s" in (bad.result.error or "")


async def test_no_answer_is_retried_once_only(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("hang", count=5)
        client = ModelClient(server.url, headers_timeout=0.3, max_retries=4, backoff=0.01)
        events = await run(client, png)
        requests = len(server.requests)
    assert len(failed(events)) == 1
    assert requests == 1 + NO_ANSWER_RETRIES


async def test_a_burst_of_pages_is_spread_over_the_pool(tmp_path: Path) -> None:
    """Pages sent at once are picked before any request has started; each server gets its
    share, not the first server all of them."""
    pdf = make_pdf(tmp_path / "eight.pdf", 8)
    with (
        FakeOpenAIServer([GROUNDED], token_delay=0.01) as a,
        FakeOpenAIServer([GROUNDED], token_delay=0.01) as b,
    ):
        pool = ServerPool([ModelClient(a.url), ModelClient(b.url)])
        try:
            pipeline = Pipeline(pool, ConvertOptions(concurrency=8))
            events = [event async for event in pipeline.run([DocumentJob(pdf)])]
        finally:
            await pool.close()
    assert len(finished(events)) == 8
    assert len(a.requests) >= 3 and len(b.requests) >= 3, (len(a.requests), len(b.requests))
