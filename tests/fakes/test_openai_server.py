"""Tests of the loopback OpenAI test server, driven by the official `openai` client."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes.openai_server import (
    DEFAULT_OUTPUT,
    MODEL_OUTPUTS_DIR,
    FakeOpenAIServer,
    corpus_outputs,
    tokenize,
)

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
MODEL = "deepseek-ai/DeepSeek-OCR"


def messages(
    image: bytes = PNG, prompt: str = "<image>\n<|grounding|>Convert the document."
) -> Any:
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": prompt},
            ],
        }
    ]


def sync_client(server: FakeOpenAIServer, **kwargs: Any) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=server.url, api_key=server.api_key or "none", **kwargs)


def async_client(server: FakeOpenAIServer, **kwargs: Any) -> AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return AsyncOpenAI(base_url=server.url, api_key=server.api_key or "none", **kwargs)


async def stream_text(client: AsyncOpenAI, **kwargs: Any) -> tuple[str, str | None, Any]:
    """The streamed text, the finish reason and the usage of one chat completion."""
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", messages())
    stream = await client.chat.completions.create(stream=True, **kwargs)
    parts: list[str] = []
    finish = usage = None
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    return "".join(parts), finish, usage


HELLO = "Hello <|ref|>text<|/ref|> world, again and again."


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer([HELLO]) as fake:
        yield fake


# -- the plain answers --------------------------------------------------------------------------


def test_health_and_models(server: FakeOpenAIServer) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health") as response:
        assert response.status == 200 and response.read() == b""
    with sync_client(server) as client:
        assert [m.id for m in client.models.list()] == [MODEL]


def test_tokens_rebuild_the_text() -> None:
    outputs = [*corpus_outputs(), DEFAULT_OUTPUT]
    for text in outputs:
        assert "".join(tokenize(text)) == text
    tags = tokenize("<|ref|>title<|/ref|><|det|>[[1, 2]]<|/det|><｜end▁of▁sentence｜>")
    assert tags[:3] == ["<|ref|>", "titl", "e"] and tags[-1] == "<｜end▁of▁sentence｜>"
    assert "<|/det|>" in tags
    if MODEL_OUTPUTS_DIR.is_dir():
        longest = max(outputs, key=len)
        assert len(longest) > 30_000 and len(tokenize(longest)) > 5_000


async def test_streams_every_output_exactly() -> None:
    outputs = corpus_outputs() or [DEFAULT_OUTPUT]
    with FakeOpenAIServer(outputs, tokens_per_chunk=16) as server:
        async with async_client(server) as client:
            for expected in outputs:
                text, finish, _ = await stream_text(client)
                assert text == expected and finish == "stop"
    assert server.completed == len(outputs)
    assert server.in_flight == 0 and server.max_in_flight == 1


async def test_default_output_and_the_request_record() -> None:
    with FakeOpenAIServer() as server:
        async with async_client(server) as client:
            text, _, _ = await stream_text(
                client,
                max_tokens=8192,
                temperature=0.0,
                extra_body={
                    "skip_special_tokens": False,
                    "vllm_xargs": {"ngram_size": 30, "window_size": 90},
                    "repetition_penalty": 1.0,
                    "ignore_eos": False,
                },
            )
    assert text == DEFAULT_OUTPUT
    (record,) = server.requests
    assert record["vllm_xargs"] == {"ngram_size": 30, "window_size": 90}
    assert record["skip_special_tokens"] is False
    assert record["_image_bytes"] == len(PNG) and record["_image_format"] == "png"
    url = record["messages"][0]["content"][0]["image_url"]["url"]
    assert url == f"data:image/png;base64,<{len(PNG)} bytes>"


async def test_max_tokens_stops_with_length(server: FakeOpenAIServer) -> None:
    async with async_client(server) as client:
        text, finish, usage = await stream_text(
            client, max_tokens=6, stream_options={"include_usage": True}
        )
        assert finish == "length"
        assert text == "".join(tokenize(HELLO)[:6]) == "Hello <|ref|>text<|/ref|>"
        assert usage.completion_tokens == 6
        text, finish, _ = await stream_text(client, extra_body={"max_completion_tokens": 2})
        assert (text, finish) == ("Hello", "length")


async def test_usage_chunk(server: FakeOpenAIServer) -> None:
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages(),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].id.startswith("chatcmpl-") and chunks[0].model == MODEL
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(tokenize(HELLO))
    assert last.usage.completion_tokens == sum(
        len(tokenize(c.choices[0].delta.content or "")) for c in chunks[1:-1]
    )
    assert last.usage.prompt_tokens > 256
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_not_streamed_and_a_callable(server: FakeOpenAIServer) -> None:
    server.set_outputs(lambda body: f"you sent {len(body['messages'])} message")
    with sync_client(server) as client:
        answer = client.chat.completions.create(model=MODEL, messages=messages())
    assert answer.choices[0].message.content == "you sent 1 message"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == len(
        tokenize("you sent 1 message")
    )
    assert server.completed == 1


def test_outputs_cycle_in_request_order() -> None:
    with FakeOpenAIServer(["one", "two"]) as server, sync_client(server) as client:
        got = [
            client.chat.completions.create(model=MODEL, messages=messages())
            .choices[0]
            .message.content
            for _ in range(3)
        ]
    assert got == ["one", "two", "one"]


# -- what it refuses ----------------------------------------------------------------------------


def test_api_key_is_required_on_v1_only() -> None:
    with FakeOpenAIServer(api_key="secret") as server:
        with urllib.request.urlopen(server.url.removesuffix("/v1") + "/health") as response:
            assert response.status == 200
        with OpenAI(base_url=server.url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model=MODEL, messages=messages())
        with sync_client(server) as client:
            assert [m.id for m in client.models.list()] == [MODEL]
    assert len(server.requests) == 0  # refused before the body is read


def test_bad_requests(server: FakeOpenAIServer) -> None:
    with sync_client(server) as client:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=[])
        broken = messages()
        broken[0]["content"][0]["image_url"]["url"] = "data:image/png;base64,@@not base64@@"
        with pytest.raises(openai.BadRequestError, match="base64"):
            client.chat.completions.create(model=MODEL, messages=broken)
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            client.chat.completions.create(model="some/other-model", messages=messages())
    assert server.requests == [] and server.in_flight == 0 and server.completed == 0
    assert len(server.refused) == 3 and "base64" in server.refused[1]["_error"]
    assert server.refused[1]["_image_bytes"] == -1  # recorded, with its data URL shortened
    assert len(server.refused[1]["messages"][0]["content"][0]["image_url"]["url"]) < 80


async def test_reject_vllm_xargs_like_sglang() -> None:
    with FakeOpenAIServer(["ok"], reject_vllm_xargs=True) as server:
        async with async_client(server) as client:
            with pytest.raises(openai.BadRequestError, match="vllm_xargs") as caught:
                await stream_text(client, extra_body={"vllm_xargs": {"ngram_size": 30}})
            assert caught.value.type == "invalid_request_error"
            text, _, _ = await stream_text(client, extra_body={"skip_special_tokens": False})
    assert text == "ok"
    assert [("vllm_xargs" in r) for r in server.refused + server.requests] == [True, False]


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("500", openai.InternalServerError),
        ("429", openai.RateLimitError),
        ("400", openai.BadRequestError),
    ],
)
async def test_status_faults(
    server: FakeOpenAIServer, mode: str, error: type[openai.APIStatusError]
) -> None:
    server.fail_next(mode, count=2)
    async with async_client(server) as client:
        for _ in range(2):
            with pytest.raises(error) as caught:
                await stream_text(client)
            if mode == "429":
                assert caught.value.response.headers["retry-after"] == "0"
        text, _, _ = await stream_text(client)
    assert text.startswith("Hello")
    # the server thread counts a request as completed just after its last byte is sent, which
    # the client may read first: give the counter a moment
    for _ in range(100):
        if server.completed == 1 and server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert len(server.requests) == 3 and server.completed == 1 and server.in_flight == 0


async def test_429_is_retried_by_the_client(server: FakeOpenAIServer) -> None:
    server.fail_next("429")
    async with async_client(server, max_retries=1) as client:
        text, _, _ = await stream_text(client)
    assert text.startswith("Hello") and len(server.requests) == 2


async def test_cut_stream_raises_while_iterating(server: FakeOpenAIServer) -> None:
    server.set_outputs(["word " * 200])
    server.fail_next("cut")
    seen: list[str] = []
    async with async_client(server) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=messages(), stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                seen.extend(c.delta.content or "" for c in chunk.choices)
        await stream.close()
        assert 0 < len("".join(seen)) < len("word " * 200)
        text, _, _ = await stream_text(client)  # the next request is answered normally
    assert text == "word " * 200
    assert server.completed == 1 and server.in_flight == 0


def test_cut_stream_sync_client(server: FakeOpenAIServer) -> None:
    server.fail_next("cut")
    with sync_client(server) as client:
        stream = client.chat.completions.create(model=MODEL, messages=messages(), stream=True)
        with pytest.raises(openai.APIConnectionError):
            for _ in stream:
                pass
        stream.close()
    assert server.in_flight == 0


def test_hang_times_out_and_stop_is_prompt() -> None:
    server = FakeOpenAIServer(["never"]).start()
    try:
        server.fail_next("hang", count=2)
        with sync_client(server, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=MODEL, messages=messages(), stream=True)
        # The second one is still hanging (in another thread) when the server stops.
        client2 = sync_client(server, timeout=30)

        def hang() -> None:
            with pytest.raises(openai.APIConnectionError), client2:
                client2.chat.completions.create(model=MODEL, messages=messages())

        thread = threading.Thread(target=hang)
        thread.start()
        for _ in range(100):
            if len(server.requests) == 2:
                break
            time.sleep(0.01)
        assert server.in_flight >= 1
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
    thread.join(5)
    assert not thread.is_alive()
    assert server.in_flight == 0 and server.completed == 0


async def test_stall_times_out_mid_stream(server: FakeOpenAIServer) -> None:
    server.fail_next("stall")
    async with async_client(server, timeout=0.3) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=messages(), stream=True)
        with pytest.raises(openai.APITimeoutError):
            async for _ in stream:
                pass
        await stream.close()
    for _ in range(50):
        if server.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert server.in_flight == 0


# -- concurrency and disconnects ----------------------------------------------------------------


async def test_in_flight_counts_concurrent_requests() -> None:
    with FakeOpenAIServer(["a b c d e f g h"], token_delay=0.01) as server:
        async with async_client(server) as client:
            results = await asyncio.gather(*(stream_text(client) for _ in range(6)))
    assert [text for text, _, _ in results] == ["a b c d e f g h"] * 6
    assert server.max_in_flight == 6 and server.in_flight == 0 and server.completed == 6


async def test_client_disconnect_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    with FakeOpenAIServer(["word " * 2000], token_delay=0.005) as server:
        async with async_client(server) as client:
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages(), stream=True
            )
            count = 0
            async for _ in stream:
                count += 1
                if count == 5:
                    break
            await stream.close()
            assert server.in_flight <= 1
            for _ in range(100):
                if server.in_flight == 0:
                    break
                await asyncio.sleep(0.02)
        assert server.in_flight == 0 and server.completed == 0 and server.max_in_flight == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_stop_during_slow_streams_is_prompt() -> None:
    server = FakeOpenAIServer(["word " * 5000], token_delay=0.05).start()

    async def go() -> None:
        async with async_client(server) as client:
            with pytest.raises(openai.APIConnectionError):
                await stream_text(client)

    thread = threading.Thread(target=asyncio.run, args=(go(),))
    thread.start()
    while not server.in_flight:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    thread.join(5)
    assert server.in_flight == 0


# -- process mode -------------------------------------------------------------------------------


def test_process_mode(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.fakes.openai_server", "--api-key", "k"),
            *("--outputs-dir", str(tmp_path), "--tokens-per-chunk", "2"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.rstrip().endswith("/v1")
        url = line.split()[1]
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health") as response:
            assert response.status == 200
        with OpenAI(base_url=url, api_key="k", max_retries=0) as client:
            got = [
                client.chat.completions.create(model=MODEL, messages=messages())
                .choices[0]
                .message.content
                for _ in range(2)
            ]
        assert got == ["first", "second"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert out == "" and "Traceback" not in err
