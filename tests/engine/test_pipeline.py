"""The pipeline and client against the loopback OpenAI test server, over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from ocrdesk.engine import mupdf
from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.images import model_canvas
from ocrdesk.engine.parser import parse
from ocrdesk.engine.pipeline import (
    LOOP_FINISH,
    ConvertOptions,
    DocumentFailed,
    DocumentFinished,
    DocumentJob,
    DocumentOpened,
    PageDelta,
    PageFailed,
    PageFinished,
    PageRestarted,
    PageStarted,
    Pipeline,
)
from ocrdesk.engine.results import PageResult, PageStatus
from ocrdesk.engine.tasks import Sampling, Task
from tests.conftest import MODEL_OUTPUTS, need
from tests.engine.helpers import make_pdf, make_png
from tests.engine.test_mupdf import nested_xobject_pdf
from tests.fakes.openai_server import FakeOpenAIServer

GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nSome text here.\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 500, 600, 900]]<|/det|>\n"
)


async def collect(pipeline: Pipeline, jobs: list[DocumentJob]) -> list[object]:
    return [event async for event in pipeline.run(jobs)]


def pool_for(server: FakeOpenAIServer, **kwargs: object) -> ServerPool:
    return ServerPool([ModelClient(server.url, api_key=server.api_key, **kwargs)])  # type: ignore[arg-type]


async def test_events_and_results_for_a_pdf(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 3)
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions(concurrency=2)), [DocumentJob(pdf)])
        await pool.close()
    kinds = [type(e) for e in events]
    assert kinds[0] is DocumentOpened and kinds[-1] is DocumentFinished
    assert kinds.count(PageStarted) == 3 and kinds.count(PageFinished) == 3
    finished = [e for e in events if isinstance(e, PageFinished)]
    for event in finished:
        result = event.result
        assert result.status is PageStatus.DONE
        assert result.raw == GROUNDED
        assert (result.width, result.height) == event.image.size  # type: ignore[union-attr]
        assert [b.label for b in result.blocks] == ["title", "text", "image"]
        x1, y1, x2, y2 = result.blocks[0].boxes[0]
        assert x1 == pytest.approx(100 / 999 * result.width)
        assert y1 == pytest.approx(50 / 999 * result.height)
        assert x2 == pytest.approx(900 / 999 * result.width)
        assert y2 == pytest.approx(120 / 999 * result.height)
    # deltas arrive and closed boxes are announced while streaming
    deltas = [e for e in events if isinstance(e, PageDelta)]
    assert "".join(d.text for d in deltas if d.number == 1) == GROUNDED
    assert sum(len(d.blocks) for d in deltas if d.number == 1) == 3
    assert server.max_in_flight <= 2
    done = events[-1]
    assert isinstance(done, DocumentFinished)
    assert done.statuses == dict.fromkeys([1, 2, 3], PageStatus.DONE)


@pytest.mark.parametrize("name", ["03_formulas_table_image_de", "07_broken_det_and_garbage_loop"])
async def test_without_deltas_the_results_are_the_same_and_no_delta_is_sent(
    tmp_path: Path, name: str
) -> None:
    # The CLI asks for no PageDelta events: each page is parsed once when its answer is in,
    # and nothing is made per token. Its results must be the window's, to the last box,
    # for a real grounded page and for a loop closed early (broken tags, garbage).
    (output,) = need(MODEL_OUTPUTS).glob(f"{name}.txt")
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    results: dict[bool, list[PageResult]] = {}
    with FakeOpenAIServer([output.read_text(encoding="utf-8")]) as server:
        pool = pool_for(server)
        for deltas in (True, False):
            options = ConvertOptions(concurrency=2, deltas=deltas, retry=False)
            events = await collect(Pipeline(pool, options), [DocumentJob(pdf)])
            streamed = [e for e in events if isinstance(e, (PageDelta, PageRestarted))]
            assert bool(streamed) is deltas
            finished = sorted(
                (e.result for e in events if isinstance(e, PageFinished)), key=lambda r: r.number
            )
            results[deltas] = finished
        await pool.close()
    assert len(results[False]) == 2 and results[False][0].blocks
    for without, with_deltas in zip(results[False], results[True], strict=True):
        for field in dataclasses.fields(PageResult):
            if field.name not in ("seconds", "raw"):
                assert getattr(without, field.name) == getattr(with_deltas, field.name), field.name
        # The raw text is what came before the stream was closed at its loop: how much more
        # was on its way by then is the timing's.
        short, long = sorted((without.raw, with_deltas.raw), key=len)
        assert long.startswith(short) and (short == long or without.finish_reason == LOOP_FINISH)


async def test_without_deltas_a_cut_stream_keeps_its_text(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("cut", 10)
        pool = pool_for(server, max_retries=0)
        options = ConvertOptions(deltas=False, retry=False)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
    (failed,) = [e for e in events if isinstance(e, PageFailed)]
    assert failed.result.raw and GROUNDED.startswith(failed.result.raw)


async def test_no_result_is_held_once_its_event_is_taken(tmp_path: Path) -> None:
    """A long document's memory stays flat: once the consumer has taken a page's PageFinished
    and let it go, nothing in the pipeline keeps its result (raw text, blocks, flags)."""
    pdf = make_pdf(tmp_path / "doc.pdf", 12)
    alive: list[weakref.ref[PageResult]] = []
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        async for event in Pipeline(pool, ConvertOptions(concurrency=2)).run([DocumentJob(pdf)]):
            if isinstance(event, PageFinished):
                alive.append(weakref.ref(event.result))
            elif isinstance(event, DocumentFinished):
                gc.collect()
                held = [ref().number for ref in alive if ref() is not None]  # type: ignore[union-attr]
                assert held == [], f"results of pages {held} still held at the document's end"
                assert list(event.statuses) == list(range(1, 13))
            del event
        await pool.close()
    assert len(alive) == 12


async def test_request_is_what_vllm_deepseek_ocr_expects(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        await collect(Pipeline(pool), [DocumentJob(png)])
        await pool.close()
    body = server.requests[0]
    content = body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert content[1]["text"] == "<|grounding|>Convert the document to markdown."
    assert body["temperature"] == 0
    assert body["skip_special_tokens"] is False
    assert body["vllm_xargs"] == {
        "ngram_size": 30,
        "window_size": 90,
        "whitelist_token_ids": [128821, 128822],
    }
    assert body["stream"] is True
    assert body["model"] == server.model


async def test_free_ocr_prompt_and_extra_fields(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    options = ConvertOptions(
        task=Task.FREE, sampling=Sampling(max_tokens=1000, extra_body={"ignore_eos": True})
    )
    with FakeOpenAIServer(["plain text"]) as server:
        pool = pool_for(server)
        await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
    body = server.requests[0]
    assert body["messages"][0]["content"][1]["text"] == "Free OCR."
    assert body["max_tokens"] == 1000 and body["ignore_eos"] is True


async def test_truncated_page_is_kept_and_flagged(tmp_path: Path) -> None:
    raw = (need(MODEL_OUTPUTS) / "06_repetition_loop_pmatrix.txt").read_text(encoding="utf-8")
    png = make_png(tmp_path / "shot.png")
    options = ConvertOptions(sampling=Sampling(max_tokens=50))
    with FakeOpenAIServer([raw]) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
    (finished,) = [e for e in events if isinstance(e, PageFinished)]
    assert finished.result.status is PageStatus.TRUNCATED
    assert finished.result.finish_reason == "length"
    assert finished.result.raw and raw.startswith(finished.result.raw)


@pytest.mark.parametrize("mode", ["500", "429", "cut"])
async def test_transient_failures_are_retried(tmp_path: Path, mode: str) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next(mode, count=2)
        pool = pool_for(server, backoff=0.01)
        events = await collect(Pipeline(pool), [DocumentJob(png)])
        await pool.close()
    (finished,) = [e for e in events if isinstance(e, PageFinished)]
    assert finished.result.status is PageStatus.DONE
    assert finished.result.raw == GROUNDED  # nothing of the cut attempts leaks in
    assert len(server.requests) == 3
    if mode == "cut":
        assert any(isinstance(e, PageRestarted) for e in events)


async def test_a_hung_request_fails_its_page_only(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("hang", count=1)
        pool = pool_for(server, timeout=0.5, max_retries=0)
        events = await collect(Pipeline(pool, ConvertOptions(concurrency=1)), [DocumentJob(pdf)])
        await pool.close()
    failed = [e for e in events if isinstance(e, PageFailed)]
    finished = [e for e in events if isinstance(e, PageFinished)]
    assert [e.result.number for e in failed] == [1]
    assert failed[0].result.error
    assert [e.result.number for e in finished] == [2]


async def test_server_without_vllm_xargs_gets_them_dropped(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 2)
    with FakeOpenAIServer([GROUNDED], reject_vllm_xargs=True) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions(concurrency=1)), [DocumentJob(pdf)])
        await pool.close()
    finished = [e for e in events if isinstance(e, PageFinished)]
    assert len(finished) == 2 and all(e.result.status is PageStatus.DONE for e in finished)
    # the first request (with vllm_xargs) was refused, so only the retries without them arrive
    assert len(server.requests) == 2
    assert all("vllm_xargs" not in body for body in server.requests)
    assert pool.clients[0].send_vllm_xargs is False


async def test_cancel_closes_the_stream(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer(["word " * 2000], token_delay=0.01) as server:
        pool = pool_for(server)

        async def consume() -> None:
            async for event in Pipeline(pool).run([DocumentJob(png)]):
                if isinstance(event, PageDelta):
                    started.set()

        started = asyncio.Event()
        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 10)
        assert server.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if server.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert server.in_flight == 0
        assert server.completed == 0
        await pool.close()


async def test_pages_are_shared_by_several_servers(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    with (
        FakeOpenAIServer([GROUNDED], token_delay=0.002) as one,
        FakeOpenAIServer([GROUNDED], token_delay=0.002) as two,
    ):
        pool = ServerPool(
            [ModelClient(one.url, api_key=one.api_key), ModelClient(two.url, api_key=two.api_key)]
        )
        events = await collect(Pipeline(pool, ConvertOptions(concurrency=4)), [DocumentJob(pdf)])
        await pool.close()
    assert sum(isinstance(e, PageFinished) for e in events) == 8
    assert len(one.requests) >= 2 and len(two.requests) >= 2
    assert len(one.requests) + len(two.requests) == 8


async def test_memory_bound_holds_with_a_slow_consumer(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 12)
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        outstanding = 0
        peak = 0
        async for event in Pipeline(pool, ConvertOptions(concurrency=3)).run([DocumentJob(pdf)]):
            if isinstance(event, PageStarted):
                outstanding += 1
                peak = max(peak, outstanding)
            elif isinstance(event, (PageFinished, PageFailed)):
                await asyncio.sleep(0.02)  # a slow exporter
                outstanding -= 1
        await pool.close()
    assert peak <= 3


async def test_bad_documents_fail_alone(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"this is not a pdf at all" * 10)
    good = make_png(tmp_path / "good.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        events = await collect(
            Pipeline(pool), [DocumentJob(empty), DocumentJob(garbage), DocumentJob(good)]
        )
        await pool.close()
    failed = [e for e in events if isinstance(e, DocumentFailed)]
    assert {Path(e.job.label).name for e in failed} == {"empty.pdf", "garbage.pdf"}
    assert all(str(e.job.label) in str(e.error) for e in failed)
    assert sum(isinstance(e, PageFinished) for e in events) == 1


async def test_every_corpus_output_streams_to_the_same_parse(tmp_path: Path) -> None:
    outputs = [p.read_text(encoding="utf-8") for p in sorted(need(MODEL_OUTPUTS).glob("*.txt"))]
    pdf = make_pdf(tmp_path / "doc.pdf", len(outputs))
    options = ConvertOptions(concurrency=1, retry=False)
    with FakeOpenAIServer(outputs, tokens_per_chunk=3) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(pdf)])
        await pool.close()
    finished = [e.result for e in events if isinstance(e, PageFinished)]
    assert len(finished) == len(outputs)
    cut = []
    for result in finished:
        if result.finish_reason == LOOP_FINISH:  # closed at its loop: parsed up to it
            cut.append(result.number)
            assert outputs[result.number - 1].startswith(result.raw)
            continue
        whole = parse(result.raw, result.width, result.height, f"p{result.number:04d}_")
        assert result.blocks == whole.blocks and result.markdown == whole.markdown
    names = sorted(p.name for p in MODEL_OUTPUTS.glob("*.txt"))
    assert [names[n - 1][:2] for n in cut] == ["06", "07", "15"]  # the recorded loops


async def test_a_large_page_is_sent_at_what_the_model_uses(tmp_path: Path) -> None:
    doc: Any = pymupdf.open()
    doc.new_page(width=2182, height=3086).insert_text((72, 144), "A poster", fontsize=96)
    doc.save(tmp_path / "poster.pdf")
    doc.close()
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        # No retry: the poster's words are not under the replayed boxes (it would be flagged
        # uncovered and OCRed again by region), and this test is about the first request.
        options = ConvertOptions(retry=False)
        events = await collect(Pipeline(pool, options), [DocumentJob(tmp_path / "poster.pdf")])
        await pool.close()
    (page,) = [e for e in events if isinstance(e, PageFinished)]
    (started,) = [e for e in events if isinstance(e, PageStarted)]
    size = (page.result.width, page.result.height)
    assert page.image is not None and page.image.size == size == (started.width, started.height)
    # 4364 x 6172 px at 144 dpi before; now no smaller than the model's 2 x 3 tiles of 768 px
    canvas = model_canvas(*size)
    assert size[0] < 4364 and size[1] < 6172
    assert size[0] >= canvas[0] - 1 and size[1] >= canvas[1] - 1
    # the boxes are in the coordinates of the image that was sent
    x1, y1, x2, y2 = page.result.blocks[0].boxes[0]
    assert (x1, y1) == (pytest.approx(100 / 999 * size[0]), pytest.approx(50 / 999 * size[1]))
    assert (x2, y2) == (pytest.approx(900 / 999 * size[0]), pytest.approx(120 / 999 * size[1]))


async def test_a_page_that_never_renders_fails_alone(tmp_path: Path) -> None:
    hostile = nested_xobject_pdf(tmp_path / "nested.pdf")
    good = make_pdf(tmp_path / "good.pdf", 3)
    options = ConvertOptions(concurrency=2, render_timeout=2)
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(hostile), DocumentJob(good)])
        await pool.close()
    (bad,) = [e for e in events if isinstance(e, PageFailed)]
    assert Path(bad.job.label).name == "nested.pdf"
    assert "took longer than 2 s" in (bad.result.error or "")
    done = [e for e in events if isinstance(e, PageFinished)]
    assert sorted((Path(e.job.label).name, e.result.number) for e in done) == [
        ("good.pdf", 1),
        ("good.pdf", 2),
        ("good.pdf", 3),
    ]


async def test_other_documents_go_on_while_a_page_hangs_and_stopping_ends_it(
    tmp_path: Path,
) -> None:
    hostile = nested_xobject_pdf(tmp_path / "nested.pdf")
    good = make_pdf(tmp_path / "good.pdf", 3)
    # the default first window (one page until a page is back) and a limit far away
    options = ConvertOptions(concurrency=2, render_timeout=3600)
    jobs = [DocumentJob(hostile), DocumentJob(good)]
    done: list[int] = []
    with FakeOpenAIServer([GROUNDED]) as server:
        pool = pool_for(server)

        async def until_the_good_pages_are_done() -> None:
            events = Pipeline(pool, options).run(jobs)
            async for event in events:
                assert not isinstance(event, PageFailed)  # the hung page is still rendering
                if isinstance(event, PageFinished):
                    done.append(event.result.number)
                    if len(done) == 3:
                        break
            await events.aclose()  # what Stop or Ctrl+C does: the hung page is stopped

        await asyncio.wait_for(until_the_good_pages_are_done(), 120)
        await pool.close()
    assert sorted(done) == [1, 2, 3]
    for _ in range(3000):  # the render process of the hung page was stopped
        if mupdf.busy_renders() == 0:
            break
        await asyncio.sleep(0.02)
    assert mupdf.busy_renders() == 0


async def test_pages_of_a_server_that_is_gone_go_to_one_still_there(tmp_path: Path) -> None:
    # A server that refuses every connection fails fast, so it looked least busy and took the
    # pages, which failed; now it is left out once gone, and its pages are sent to the other.
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    with FakeOpenAIServer([GROUNDED]) as gone_server:
        dead_url = gone_server.url  # stopped at the end of this block: nothing listens there
    with FakeOpenAIServer([GROUNDED], token_delay=0.002) as live:
        dead = ModelClient(dead_url, model="m", max_retries=1, backoff=0.01)
        pool = ServerPool([dead, ModelClient(live.url, api_key=live.api_key)])
        try:
            events = await collect(
                Pipeline(pool, ConvertOptions(concurrency=4)), [DocumentJob(pdf)]
            )
        finally:
            await pool.close()
    results = [e.result for e in events if isinstance(e, (PageFinished, PageFailed))]
    assert len(results) == 8
    assert all(r.status is PageStatus.DONE for r in results), [r.error for r in results]
    assert len(live.requests) == 8
    assert dead.gone is not None and pool.pick() is not dead
