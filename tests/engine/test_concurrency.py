"""The in-flight count that finds itself: vLLM's metrics read, the tuner's rule, the adjustable
semaphore, and a run at defaults against a loopback server that schedules like vLLM (at most N
requests running, the rest waiting) filling it without queueing pages far past it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ocrdesk.engine import concurrency as cc
from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.concurrency import AdaptiveLimit, ServerLoad, next_limit, parse_metrics
from ocrdesk.engine.pipeline import ConvertOptions, DocumentJob, PageFinished, Pipeline
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer, prose

# The shape of vLLM 0.24's /metrics (two data-parallel engines), trimmed to the gauges read and
# a few neighbours that must not be mistaken for them.
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="deepseek-ai/DeepSeek-OCR"} 61.0
vllm:num_requests_running{engine="1",model_name="deepseek-ai/DeepSeek-OCR"} 64.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="deepseek-ai/DeepSeek-OCR"} 3.0
vllm:num_requests_waiting{engine="1",model_name="deepseek-ai/DeepSeek-OCR"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="deepseek-ai/DeepSeek-OCR"} 0.42
vllm:kv_cache_usage_perc{engine="1",model_name="deepseek-ai/DeepSeek-OCR"} 0.47
# TYPE vllm:num_requests_running_total counter
vllm:num_requests_running_total{engine="0"} 999.0
vllm:request_success_total{engine="0",finished_reason="stop"} 1234.0
"""


def test_vllm_metrics_are_read_and_summed_over_engines() -> None:
    assert parse_metrics(VLLM_METRICS) == ServerLoad(
        running=125, waiting=3, kv_usage=0.47, engines=2
    )
    old = "vllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.95\n"  # before vLLM 0.10
    assert parse_metrics(old) == ServerLoad(running=2, waiting=0, kv_usage=0.95)
    assert parse_metrics("# an SGLang or other server\nsglang:num_running_reqs 3\n") is None
    assert parse_metrics("") is None


def test_the_rule_grows_while_all_runs_and_shrinks_to_what_runs() -> None:
    # everything sent runs and nothing waits: twice as many
    assert next_limit(16, 16, ServerLoad(16, 0, 0.1)) == 32
    assert next_limit(200, 200, ServerLoad(200, 0, 0.1)) == cc.ENGINE_LIMIT
    # slots not used (pages still rendering, or the documents end): no reason to grow
    assert next_limit(64, 20, ServerLoad(20, 0, 0.1)) == 64
    # a few waiting are the next pages, ready: hold
    assert next_limit(64, 64, ServerLoad(60, 4, 0.3)) == 64
    # the scheduler is full (it runs 40): what waits past the margin comes off the limit
    assert next_limit(128, 128, ServerLoad(40, 88, 0.6)) == 128 - (88 - cc.margin(40))
    assert next_limit(8, 8, ServerLoad(1, 50, 0.6)) == cc.MIN_MARGIN
    # a full KV cache stops growth (vLLM would preempt)
    assert next_limit(64, 64, ServerLoad(64, 0, 0.95)) == 64
    # no metrics: the measured blind count
    assert next_limit(16, 16, None) == cc.BLIND_LIMIT


async def test_the_limit_can_grow_and_shrink_while_held() -> None:
    limit = AdaptiveLimit(1)
    await limit.acquire()
    second = asyncio.ensure_future(limit.acquire())
    third = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    assert not second.done() and not third.done()
    limit.set_limit(2)  # grows: the first waiter gets in at once
    await asyncio.sleep(0)
    assert second.done() and not third.done()
    limit.set_limit(1)  # shrinks: nobody loses a slot, nobody new gets in
    limit.release()
    await asyncio.sleep(0)
    assert not third.done() and limit.held == 1
    limit.release()
    await asyncio.sleep(0)
    assert third.done() and limit.held == 1
    # a waiter cancelled gives its place to the next
    fourth = asyncio.ensure_future(limit.acquire())
    fifth = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    fourth.cancel()
    limit.release()
    await asyncio.sleep(0)
    assert fifth.done() and limit.held == 1
    with pytest.raises(ValueError):
        AdaptiveLimit(0)


async def _run(server: FakeOpenAIServer, pdf: Path) -> tuple[Pipeline, int]:
    pool = ServerPool([ModelClient(server.url)])
    pipeline = Pipeline(pool, ConvertOptions())  # defaults: no concurrency given
    done = 0
    async for event in pipeline.run([DocumentJob(pdf)]):
        done += isinstance(event, PageFinished)
    await pool.close()
    return pipeline, done


async def test_at_defaults_the_run_fills_the_server_without_flooding_it(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "many.pdf", 160)
    text = prose(60)
    with FakeOpenAIServer([text], token_delay=0.004, max_running=40) as server:
        pipeline, done = await _run(server, pdf)
        running, waiting = server.max_running_seen, server.max_waiting_seen
        first_two = sorted(r["_received"] for r in server.requests)[:2]
    assert done == 160
    # past the fixed 16 of before, up to all the server runs at once (how many then run also
    # depends on how fast this machine renders the pages: more than the old 16 is asserted)
    assert max(pipeline.limits) >= 40, pipeline.limits
    assert running > 16
    # and the queue stayed short: pages beyond what runs wait in the client, not the server (at
    # most one doubling past what the server runs, when a slow client renders pages late: the
    # 120 pages a fixed count of 160 would have left waiting there)
    assert waiting <= 2 * 40 + cc.MIN_MARGIN
    # the first window still holds: the second request waited for the first answer (60 tokens
    # at 4 ms)
    assert first_two[1] - first_two[0] > 0.1


async def test_a_server_without_metrics_gets_the_blind_count(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "some.pdf", 40)
    with FakeOpenAIServer([prose(30)], token_delay=0.03, metrics=False) as server:
        pipeline, done = await _run(server, pdf)  # 0.9 s a page: the tuner looks in that time
    assert done == 40
    assert pipeline.limits == [cc.AUTO_START, cc.BLIND_LIMIT]


async def test_a_fixed_concurrency_is_kept(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "some.pdf", 12)
    with FakeOpenAIServer([prose(30)], token_delay=0.005) as server:
        pool = ServerPool([ModelClient(server.url)])
        pipeline = Pipeline(pool, ConvertOptions(concurrency=3))
        async for _ in pipeline.run([DocumentJob(pdf)]):
            pass
        await pool.close()
        assert server.max_in_flight <= 3
    assert pipeline.limits == [3]
