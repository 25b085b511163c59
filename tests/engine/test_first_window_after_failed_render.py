"""The first-page window holds in a run with a page that fails to render, and in the run after
it (issue 11, item 6): the first request is alone in flight until its page comes back, however
early the failed page fails. The failure is a render that takes longer than its limit (issue 17's
hostile page), the server a loopback one that answers slowly enough for it to fail first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pymupdf

from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.pipeline import (
    ConvertOptions,
    DocumentJob,
    Event,
    PageFailed,
    PageFinished,
    PageStarted,
    Pipeline,
)
from tests.engine.helpers import make_pdf
from tests.engine.test_mupdf import nested_xobject_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose, tokenize

TEXT = prose(60)
RENDER_LIMIT = 1.0  # seconds
#: One request takes about this long, well past the failed render's limit.
ANSWER_SECONDS = 3.0


def hostile_first(path: Path, good_pages: int) -> Path:
    """A PDF whose page 1 never renders (the nested-XObject page), then `good_pages` pages."""
    doc: Any = pymupdf.open(nested_xobject_pdf(path.with_name("nested.pdf")))
    good: Any = pymupdf.open(make_pdf(path.with_name("good.pdf"), good_pages))
    doc.insert_pdf(good)
    doc.save(path)
    good.close()
    doc.close()
    return path


async def one_run(pipeline: Pipeline, pdf: Path) -> list[tuple[float, Event]]:
    return [(time.monotonic(), e) async for e in pipeline.run([DocumentJob(pdf)])]


def check_window(events: list[tuple[float, Event]], server: FakeOpenAIServer) -> None:
    pages = [e for _, e in events if isinstance(e, (PageStarted, PageFinished, PageFailed))]
    failed = [e.result for e in pages if isinstance(e, PageFailed)]
    assert [r.number for r in failed] == [1], [r.error for r in failed]
    assert "took longer than" in (failed[0].error or "")
    assert sorted(e.result.number for e in pages if isinstance(e, PageFinished)) == [2, 3, 4, 5]
    order = [
        f"{type(e).__name__}:{e.number if isinstance(e, PageStarted) else e.result.number}"
        for e in pages
    ]
    # page 1 failed while the first good page was on its way (whichever of 2-5 rendered first:
    # they render side by side), and did not open the window: that page stayed alone until it
    # came back, then the others went
    first = next(x for x in order if x.startswith("PageStarted:")).split(":")[1]
    back = order.index(f"PageFinished:{first}")
    assert [x for x in order[:back] if x.startswith("PageStarted:")] == [f"PageStarted:{first}"]
    assert "PageFailed:1" in order[:back], order
    assert order[back + 1].startswith("PageStarted:"), order
    assert server.max_in_flight >= 2  # the window did open once page 2 was back


async def test_the_first_window_holds_in_a_run_with_a_failed_render_and_the_next(
    tmp_path: Path,
) -> None:
    pdf = hostile_first(tmp_path / "lecture.pdf", 4)
    delay = ANSWER_SECONDS / len(tokenize(TEXT))
    options = ConvertOptions(concurrency=4, first_window=1, render_timeout=RENDER_LIMIT)
    with FakeOpenAIServer([TEXT], token_delay=delay) as server:
        pool = ServerPool([ModelClient(server.url, api_key=server.api_key)])
        pipeline = Pipeline(pool, options)
        try:
            check_window(await one_run(pipeline, pdf), server)
            server.max_in_flight = 0
            check_window(await one_run(pipeline, pdf), server)  # the next run, same pool
        finally:
            await pool.close()
