"""Talking to a DeepSeek-OCR server: one streamed chat completion per page, with retries.

Uses the official `openai` AsyncOpenAI client, so any OpenAI-compatible server works: vLLM (local
or remote, data-parallel or not) and SGLang. The client's own retries are off (`max_retries=0`)
because a page must also be retried when its stream is cut half-way, which the SDK cannot see,
and because a local server may need a restart before the retry (`on_connection_error`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai

from .errors import ServerError, ServerUnavailableError
from .tasks import Sampling, build_messages

log = logging.getLogger(__name__)

DeltaCallback = Callable[[str], None]


@dataclass
class Completion:
    """The outcome of one page's request."""

    text: str
    finish_reason: str | None
    output_tokens: int | None
    seconds: float
    first_token_seconds: float | None
    attempts: int


def api_base(url: str) -> str:
    """`http://host:8000`, `.../v1` and `.../v1/` all mean the API base `http://host:8000/v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    # APIConnectionError covers refused connections, resets, timeouts and cut streams that the
    # SDK notices; a bare httpx/OSError can escape from the middle of an SSE stream.
    return isinstance(exc, (openai.APIConnectionError, openai.APIError, OSError)) or (
        type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
    )


def _rejects_vllm_xargs(exc: openai.BadRequestError) -> bool:
    message = str(exc).lower()
    return "vllm_xargs" in message or ("extra" in message and "not permitted" in message)


class ModelClient:
    """One OpenAI-compatible server. `busy` counts its requests in flight (for load balancing)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        on_connection_error: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = api_base(url)
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.busy = 0
        self.send_vllm_xargs = True
        self.on_connection_error = on_connection_error
        self._api_key = api_key or "EMPTY"
        self._timeout = timeout
        self._client = self._make_client()

    def _make_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url, api_key=self._api_key, timeout=self._timeout, max_retries=0
        )

    def retarget(self, url: str, api_key: str | None) -> None:
        """Point at a new address (a restarted local server gets a fresh port and key)."""
        self.url = api_base(url)
        self._api_key = api_key or "EMPTY"
        old = self._client
        self._client = self._make_client()
        asyncio.get_running_loop().create_task(old.close())

    async def resolve_model(self) -> str:
        """The model to ask for: the one given, or the first the server lists."""
        if self.model:
            return self.model
        try:
            models = await self._client.models.list()
        except openai.OpenAIError as exc:
            raise ServerUnavailableError(f"{self.url}: cannot list models: {exc}") from exc
        ids = [m.id for m in models.data]
        if not ids:
            raise ServerError(f"{self.url}: the server serves no model")
        self.model = ids[0]
        return self.model

    async def complete(
        self,
        image_url: str,
        prompt: str,
        sampling: Sampling,
        *,
        on_delta: DeltaCallback | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> Completion:
        """Stream one page's answer. `on_delta` gets text as it comes; `on_restart` is called when
        a retry throws away what was streamed so far. Cancelling the awaiting task closes the
        HTTP stream, so the server stops generating."""
        self.busy += 1  # before any await, so a pool picking right after this call sees it
        try:
            model = await self.resolve_model()
            messages = build_messages(image_url, prompt)
            started = time.monotonic()
            attempt = 0
            while True:
                attempt += 1
                streamed_any = False
                try:
                    text, finish, tokens, first = await self._stream_once(
                        model, messages, sampling, on_delta, started
                    )
                    return Completion(
                        text, finish, tokens, time.monotonic() - started, first, attempt
                    )
                except openai.BadRequestError as exc:
                    if self.send_vllm_xargs and _rejects_vllm_xargs(exc):
                        log.info("%s rejects vllm_xargs; sending without them", self.url)
                        self.send_vllm_xargs = False
                        continue
                    raise ServerError(f"{self.url} refused the request: {exc.message}") from exc
                except _StreamedError as wrapped:
                    streamed_any = True
                    cause = wrapped.cause
                    if not _retryable(cause) or attempt > self.max_retries:
                        raise ServerError(f"{self.url}: stream broke off: {cause}") from cause
                except openai.APIStatusError as exc:
                    if not _retryable(exc) or attempt > self.max_retries:
                        raise ServerError(
                            f"{self.url}: HTTP {exc.status_code}: {exc.message}"
                        ) from exc
                except (openai.APIConnectionError, OSError) as exc:
                    if attempt > self.max_retries:
                        raise ServerUnavailableError(f"{self.url}: {exc}") from exc
                    if self.on_connection_error is not None:
                        await self.on_connection_error()
                if streamed_any and on_restart is not None:
                    on_restart()
                delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.info("retrying %s in %.1f s (attempt %d)", self.url, delay, attempt + 1)
                await asyncio.sleep(delay)
        finally:
            self.busy -= 1

    async def _stream_once(
        self,
        model: str,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        on_delta: DeltaCallback | None,
        started: float,
    ) -> tuple[str, str | None, int | None, float | None]:
        extra: dict[str, Any] = {"skip_special_tokens": sampling.skip_special_tokens}
        if self.send_vllm_xargs:
            extra["vllm_xargs"] = sampling.vllm_xargs()
        extra.update(sampling.extra_body)
        # The SDK builds a pydantic object for every streamed chunk: measured at ~450 us a chunk
        # (benchmarks/bench_client.py), i.e. one CPU core saturated at ~2,200 tokens/s, below
        # what one GPU generates. So the SDK makes the request (auth, errors, timeouts) and the
        # SSE lines of the answer are decoded here with json.loads (~15 us a chunk).
        parts: list[str] = []
        finish: str | None = None
        tokens: int | None = None
        first: float | None = None
        request = self._client.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
            model=model,
            messages=messages,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
        async with request as response:
            try:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        error = chunk["error"]
                        message = error.get("message", error) if isinstance(error, dict) else error
                        raise _StreamedError(openai.APIError(str(message), None, body=chunk))  # type: ignore[arg-type]
                    usage = chunk.get("usage")
                    if usage:
                        tokens = usage.get("completion_tokens")
                    for choice in chunk.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            if first is None:
                                first = time.monotonic() - started
                            parts.append(delta)
                            if on_delta is not None:
                                on_delta(delta)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
            except (asyncio.CancelledError, _StreamedError):
                raise
            except Exception as exc:
                if parts:
                    raise _StreamedError(exc) from exc
                raise
        if finish is None:
            # The stream ended without a finish_reason: the connection was cut.
            raise _StreamedError(openai.APIConnectionError(request=None))  # type: ignore[arg-type]
        return "".join(parts), finish, tokens, first

    async def close(self) -> None:
        await self._client.close()


def restarting(
    client: ModelClient, restart: Callable[[], Awaitable[tuple[str, str | None]]]
) -> ModelClient:
    """Make `client`'s connection errors wait for `restart()` (the server brought back; its
    new url and API key) and follow the server to its new address.

    Many pages see one crash at once; one restart serves them all. Pages whose requests failed
    are re-sent by the client's retries once the restart is done."""
    lock = asyncio.Lock()

    async def on_connection_error() -> None:
        async with lock:
            url, api_key = await restart()
            if client.url != api_base(url):
                client.retarget(url, api_key)

    client.on_connection_error = on_connection_error
    return client


class _StreamedError(Exception):
    """A failure after some text was streamed: the caller must drop that text before retrying."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ServerPool:
    """Several servers sharing the pages: each new page goes to the least-busy one."""

    def __init__(self, clients: list[ModelClient]) -> None:
        if not clients:
            raise ValueError("a server pool needs at least one server")
        self.clients = clients

    def pick(self) -> ModelClient:
        return min(self.clients, key=lambda c: c.busy)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))
