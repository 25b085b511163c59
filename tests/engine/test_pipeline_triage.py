"""Triage in the pipeline: a looping stream is closed at its loop (the server stops paying for
it), every finished page carries its flags into the JSON, and a page flagged loop is tried again
with a harder n-gram setting, the better attempt kept and both recorded; `retry=False` keeps
the first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine.pipeline import (
    LOOP_FINISH,
    ConvertOptions,
    DocumentJob,
    PageFinished,
    PageRestarted,
    Pipeline,
)
from ocrdesk.engine.results import BlockSource, FlagKind, PageResult, Strategy
from ocrdesk.engine.retry import STRONGER_NGRAM
from tests.conftest import MODEL_OUTPUTS, need
from tests.engine.helpers import make_pdf
from tests.engine.test_cli import run_cli
from tests.engine.test_pipeline import collect, pool_for
from tests.fakes.openai_server import FakeOpenAIServer

CLEAN = (
    "<|ref|>title<|/ref|><|det|>[[100, 40, 900, 110]]<|/det|>\n# A clean page\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 200, 900, 330]]<|/det|>\nIts one paragraph, read once.\n"
)


def recorded_loop() -> str:
    (path,) = need(MODEL_OUTPUTS).glob("07*.txt")  # the `[underline` loop of issue 12
    return path.read_text(encoding="utf-8")


def finished(events: list[Any]) -> list[PageResult]:
    return [e.result for e in events if isinstance(e, PageFinished)]


async def test_a_looping_stream_is_closed_at_its_loop(tmp_path: Path) -> None:
    loop = recorded_loop()
    pdf = make_pdf(tmp_path / "one.pdf", 1)
    with FakeOpenAIServer([loop], token_delay=0.0005, tokens_per_chunk=4) as server:
        pool = pool_for(server)
        options = ConvertOptions(retry=False)
        events = await collect(Pipeline(pool, options), [DocumentJob(pdf)])
        await pool.close()
        completed = server.completed
    (page,) = finished(events)
    assert page.finish_reason == LOOP_FINISH
    assert completed == 0  # the stream was closed: the server never finished it
    assert len(page.raw) < len(loop) / 4  # 3,107 of 35,825 characters in bench_triage
    assert loop.startswith(page.raw)  # the raw text as received, whole
    assert [f.kind for f in page.flags][:1] == [FlagKind.LOOP]
    # the text before the loop is the result: "[underline" once, not the thousand copies
    assert page.markdown.count("[underline") <= 2
    assert page.to_json()["flags"][0]["kind"] == "loop"


async def test_a_looping_page_is_retried_and_the_clean_attempt_kept(tmp_path: Path) -> None:
    loop = recorded_loop()

    def answer(body: dict[str, Any]) -> str:  # the harder n-gram setting mends it
        return CLEAN if body["vllm_xargs"]["ngram_size"] == STRONGER_NGRAM[0] else loop

    pdf = make_pdf(tmp_path / "one.pdf", 1)
    with FakeOpenAIServer(answer, token_delay=0.0005, tokens_per_chunk=4) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions()), [DocumentJob(pdf)])
        await pool.close()
        sent = [r["vllm_xargs"] for r in server.requests]
    assert [x["ngram_size"] for x in sent] == [30, STRONGER_NGRAM[0]]
    assert sent[1]["window_size"] == STRONGER_NGRAM[1]
    assert any(isinstance(e, PageRestarted) for e in events)  # the window drops the loop's text
    (page,) = finished(events)
    assert page.raw == CLEAN
    assert all(f.kind is not FlagKind.LOOP for f in page.flags)
    assert [a.strategy for a in page.attempts] == [Strategy.FIRST, Strategy.STRONGER_NGRAM]
    assert page.attempts[0].flags[0].kind is FlagKind.LOOP
    assert {b.source for b in page.blocks} == {BlockSource.RETRY}
    data = page.to_json()
    assert [a["strategy"] for a in data["attempts"]] == ["first", "stronger_ngram"]
    assert data["blocks"][0]["source"] == "retry"
    back = PageResult.from_json(data)  # the journal keeps it all (boxes rounded to 0.1 px)
    assert back.attempts == page.attempts and back.flags == page.flags
    assert [b.source for b in back.blocks] == [BlockSource.RETRY] * len(page.blocks)


async def test_a_retry_that_is_no_better_keeps_the_first(tmp_path: Path) -> None:
    loop = recorded_loop()
    pdf = make_pdf(tmp_path / "one.pdf", 1)
    with FakeOpenAIServer([loop], token_delay=0.0005, tokens_per_chunk=4) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions()), [DocumentJob(pdf)])
        await pool.close()
        requests = len(server.requests)
    (page,) = finished(events)
    assert requests == 2  # bounded: one retry
    assert len(page.attempts) == 2
    assert page.raw == page.attempts[0].raw  # equals: the earlier is kept
    assert {b.source for b in page.blocks} <= {BlockSource.MODEL}
    assert page.flags and page.flags[0].kind is FlagKind.LOOP  # what remains stays on the page


def test_the_cli_lists_flagged_pages_and_retry_none_keeps_one_attempt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "looping.pdf", 1)
    for retry, requests in (("none", 1), ("auto", 2)):
        out = tmp_path / retry
        with FakeOpenAIServer([recorded_loop()], tokens_per_chunk=4) as server:
            status = run_cli(str(pdf), "-o", str(out), "--server", server.url, "--retry", retry)
            sent = len(server.requests)
        err = capsys.readouterr().err
        assert status == 0, err  # flags are warnings, not failures
        assert sent == requests
        assert f"ocrdesk: check (loop): {pdf}: page 1" in err
        data = json.loads((out / "looping" / "looping.json").read_text(encoding="utf-8"))
        (page,) = data["pages"]
        assert page["flags"][0]["kind"] == "loop"
        assert len(page["attempts"]) == (0 if retry == "none" else 2)
