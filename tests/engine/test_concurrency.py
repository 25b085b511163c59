"""The in-flight count that finds itself: vLLM's metrics read, the tuner's rule, the climb that
keeps a raise only if the output grew, the adjustable semaphore, and a run at defaults against
a loopback server that schedules like vLLM (at most N requests running, the rest waiting)
filling it without queueing pages far past it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ocrdesk.engine import concurrency as cc
from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.concurrency import (
    AdaptiveLimit,
    Climb,
    Phase,
    ServerLoad,
    combine,
    next_limit,
    parse_metrics,
)
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
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="deepseek-ai/DeepSeek-OCR"} 150000.0
vllm:generation_tokens_total{engine="1",model_name="deepseek-ai/DeepSeek-OCR"} 90000.0
# TYPE vllm:generation_tokens_created gauge
vllm:generation_tokens_created{engine="0",model_name="deepseek-ai/DeepSeek-OCR"} 1.7e9
# TYPE vllm:num_requests_running_total counter
vllm:num_requests_running_total{engine="0"} 999.0
vllm:request_success_total{engine="0",finished_reason="stop"} 1234.0
"""


def test_vllm_metrics_are_read_and_summed_over_engines() -> None:
    assert parse_metrics(VLLM_METRICS) == ServerLoad(
        running=125, waiting=3, kv_usage=0.47, engines=2, generated=240000.0
    )
    old = "vllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.95\n"  # before vLLM 0.10
    assert parse_metrics(old) == ServerLoad(running=2, waiting=0, kv_usage=0.95)
    assert parse_metrics("# an SGLang or other server\nsglang:num_running_reqs 3\n") is None
    assert parse_metrics("") is None
    # a pool's load: the generated tokens are known only if every server says
    a, b = ServerLoad(3, 0, 0.2, generated=100.0), ServerLoad(4, 1, 0.5, generated=50.0)
    assert combine([a, b]) == ServerLoad(7, 1, 0.5, engines=2, generated=150.0)
    assert combine([a, ServerLoad(4, 1, 0.5)]) == ServerLoad(7, 1, 0.5, engines=2)


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


def _climb(
    rate: Callable[[int], float],
    seconds: float,
    *,
    limit: int = cc.AUTO_START,
    climb: Climb | None = None,
    fills: Callable[[int], int] = lambda limit: limit,
    served: bool = True,
    engines: int = 1,
) -> tuple[list[int], Climb]:
    """Run the climb for `seconds` of ticks against a server that runs all it is sent (nothing
    waits, the KV cache has room) and produces `rate(pages running)` tokens a second; the client
    fills `fills(limit)` slots. The limits gone through, in order."""
    climb = climb or Climb()
    limits, output, now = [limit], 0.0, 0.0
    while now < seconds:
        in_flight = fills(limit)
        output += rate(in_flight) * cc.TICK
        now += cc.TICK
        load = ServerLoad(in_flight, 0, 0.2, engines, output if served else None)
        limit = climb.step(limit, in_flight, load, now, streamed=0.0 if served else output)
        if limit != limits[-1]:
            limits.append(limit)
    return limits, climb


def _bounded_at_64(running: int) -> float:
    """The H200 of issue 18, pages of 1,000 tokens: the client bounds the run past 64."""
    pages_per_second = {16: 4.0, 32: 7.0, 64: 9.6, 128: 9.0, 256: 7.45}[running]
    return pages_per_second * 1000


def test_a_raise_that_does_not_pay_is_taken_back() -> None:
    limits, climb = _climb(_bounded_at_64, 20.0)
    # 16 to 64 a tick each as before; 128 tried, measured, taken back; 256 never
    assert limits == [16, 32, 64, 128, 64], limits
    assert climb.phase is Phase.SETTLED
    # a gain short of GAIN is no gain either
    limits, _ = _climb(lambda n: 1000.0 * min(n, 64) * (1.05 if n > 64 else 1.0), 20.0)
    assert limits == [16, 32, 64, 128, 64], limits
    # after RETRY_SECONDS another raise is tried, and taken back again
    limits, _ = _climb(_bounded_at_64, cc.RETRY_SECONDS + 20.0, limit=64, climb=climb)
    assert limits == [64, 128, 64], limits


def test_raises_that_pay_are_kept_up_to_the_ceiling() -> None:
    limits, climb = _climb(lambda running: 40.0 * running, 30.0)
    assert limits == [16, 32, 64, 128], limits
    assert climb.phase is Phase.CLIMBING
    # eight engines: on, as far as the output grows
    limits, _ = _climb(lambda running: 40.0 * min(running, 512), 25.0, limit=64, engines=8)
    assert limits == [64, 128, 256, 512, 1024, 512], limits


def test_the_output_streamed_stands_in_for_a_server_without_the_counter() -> None:
    limits, _ = _climb(_bounded_at_64, 20.0, served=False)
    assert limits == [16, 32, 64, 128, 64], limits
    limits, _ = _climb(lambda running: 40.0 * running, 30.0, served=False)
    assert limits[-1] == cc.ENGINE_LIMIT


def test_a_raise_the_client_cannot_fill_is_taken_back() -> None:
    # the client renders pages for 70 at most: 128 is never filled, so never measured
    limits, climb = _climb(lambda running: 40.0 * running, 20.0, fills=lambda n: min(n, 70))
    assert limits == [16, 32, 64, 128, 64], limits
    assert climb.phase is Phase.SETTLED


def test_a_queue_still_shrinks_the_limit_and_ends_a_judgement() -> None:
    climb = Climb()
    _, climb = _climb(lambda running: 40.0 * running, 3.0, limit=64, climb=climb)
    phases = [climb.phase]  # 128 tried
    # the server now runs 40 and 88 wait: the limit shrinks as before, the trial is over
    shrunk = climb.step(128, 128, ServerLoad(40, 88, 0.6, generated=1e6), 10.0, 0.0)
    phases.append(climb.phase)
    assert shrunk == 128 - (88 - cc.margin(40))
    # a settled climb shrinks too
    _, settled = _climb(_bounded_at_64, 20.0)
    phases.append(settled.phase)
    shrunk = settled.step(64, 64, ServerLoad(20, 60, 0.6, generated=1e9), 21.0, 0.0)
    phases.append(settled.phase)
    assert shrunk == 64 - (60 - cc.margin(20))
    assert phases == [Phase.JUDGING, Phase.CLIMBING, Phase.SETTLED, Phase.CLIMBING]
    # and without metrics: the blind count
    assert Climb().step(16, 16, None, 1.0, 0.0) == cc.BLIND_LIMIT


def test_a_server_restart_does_not_read_as_output() -> None:
    climb = Climb()
    _climb(lambda running: 40.0 * running, 1.5, limit=64, climb=climb)  # samples at 64
    # the server restarted: its counter starts over, and no rate spans the restart
    climb.step(64, 64, ServerLoad(64, 0, 0.2, generated=10.0), 2.0, 0.0)
    assert len(climb.samples) == 1


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
