"""Talking to a DeepSeek-OCR server: one streamed chat completion per page, with retries.

Uses the official `openai` AsyncOpenAI client, so any OpenAI-compatible server works: vLLM (local
or remote, data-parallel or not) and SGLang. The client's own retries are off (`max_retries=0`)
because a page must also be retried when its stream is cut half-way, which the SDK cannot see,
and because a local server may need a restart before the retry (`on_connection_error`).

Every wait is bounded, each phase on its own: the response headers (`HEADERS_SECONDS`), the first
token (`FIRST_TOKEN_SECONDS`), then each read while the page streams (`timeout`, long, for a big
page on a busy server). A phase that runs out closes the request, which frees the server's slot,
and the page is retried. An answer larger than any page can be (`MAX_CHARS_PER_TOKEN`,
`MAX_BYTES_PER_TOKEN` times `max_tokens`) is stopped and fails its page. 429 and 503 answers are
retried after their `Retry-After` (capped at `MAX_RETRY_AFTER_SECONDS`); an SSE line that is not
JSON is retried like a cut stream.

With `Sampling.logprobs` the request asks for each token's log-probability (`logprobs: true`,
`top_logprobs: 0`: vLLM sends them only when `top_logprobs` is set). vLLM streams them as
`choices[0].logprobs.content[*]` (`{"token", "logprob", "bytes", "top_logprobs"}`) beside each
chunk's `delta.content`; `TokenLogprobs` pairs them with the text so that the pairs' texts add up
to the answer (`Completion.token_logprobs`), which is what engine/triage.py's block confidences
need.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import openai

from .concurrency import ServerLoad, combine, parse_metrics
from .errors import ServerError, ServerUnavailableError

try:  # openai >= 3 depends on `httpx2`, older ones on `httpx`: the same API under two names
    import httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx2 as httpx  # type: ignore[no-redef]
from .tasks import Sampling, build_messages

log = logging.getLogger(__name__)

DeltaCallback = Callable[[str], None]
#: (text, log-probability) of streamed tokens, in stream order.
TokenLogprob = tuple[str, float]
TokensCallback = Callable[[list[TokenLogprob]], None]

#: Seconds to wait for the response headers. vLLM and SGLang send them once the request is
#: checked, before decoding starts: well under a second on a local server, a few on a busy one.
HEADERS_SECONDS = 30.0
#: Seconds from the headers to the first token: the server must schedule the page and prefill
#: its image (1-2 s for a batch of 16 pages on one GPU); a shared server may queue it a while.
FIRST_TOKEN_SECONDS = 60.0
#: Retries of a request that got no headers or no first token in time: a server that did not
#: answer once rarely answers the same request later, and each try holds a slot for a while.
NO_ANSWER_RETRIES = 1
#: Seconds to wait for a TCP connection.
CONNECT_SECONDS = 10.0
#: An answer may hold at most this many characters per token of `max_tokens`. Real pages come
#: to 2-4 characters a token and the longest tokens (runs of spaces or dashes) to ~16: past 32 a
#: token the server is not sending a page (issue 17: a 20 MB answer of 280,000 boxes).
MAX_CHARS_PER_TOKEN = 32
#: An answer's SSE stream may hold at most this many bytes per token of `max_tokens`: vLLM
#: wraps each token in a ~250-byte JSON chunk, and a line is never longer than the whole cap.
MAX_BYTES_PER_TOKEN = 1024
#: The longest `Retry-After` honoured; a server asking for more is retried after this.
MAX_RETRY_AFTER_SECONDS = 120.0
#: The most seconds a look at the server's /metrics may take (the concurrency tuner's).
METRICS_SECONDS = 2.0


@dataclass
class Completion:
    """The outcome of one page's request."""

    text: str
    finish_reason: str | None
    output_tokens: int | None
    seconds: float
    first_token_seconds: float | None
    attempts: int
    # (text, logprob) per token, the texts adding up to `text`; None when the server sent none.
    token_logprobs: list[TokenLogprob] | None = None


def api_base(url: str) -> str:
    """`http://host:8000`, `.../v1` and `.../v1/` all mean the API base `http://host:8000/v1`;
    without a scheme (`host:8000`) the server is taken to speak plain `http://`."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/v1") else url + "/v1"


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a 429/503 answer asks to wait (`Retry-After`: seconds or an HTTP date, or
    `retry-after-ms`), at most `MAX_RETRY_AFTER_SECONDS`; None when it says nothing usable."""
    if headers is None:
        return None
    seconds: float | None = None
    millis = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    try:
        if millis is not None:
            seconds = float(millis) / 1000
    except ValueError:
        seconds = None
    if seconds is None and value is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class TokenLogprobs:
    """A stream's tokens paired with its text: `feed(delta, content)` per chunk, where `content`
    is the chunk's `logprobs.content` list, returns the new (text, logprob) pairs.

    The pairs' texts add up to the text fed, whatever the server sends. Most chunks' token
    texts add up to their delta; where they do not (a character of several byte tokens is sent
    as "\ufffd" tokens and a delta of "" until its last byte), the tokens that match no text
    pass their log-probabilities on to the next text (a character's probability is the product
    of its bytes'), and text that no token accounts for joins the next token's text (at the end
    of the stream, the last pair's). `pairs` is everything so far; `seen`: any logprobs came.
    """

    def __init__(self) -> None:
        self.pairs: list[TokenLogprob] = []
        self.seen = False
        self._carry = 0.0  # summed log-probabilities of tokens still waiting for their text
        self._carried = False
        self._pending = ""  # text that no token accounts for yet

    def feed(self, delta: str, content: list[Any] | None) -> list[TokenLogprob]:
        if content is None and not self.seen:
            return []
        self.seen = True
        tokens = content or ()
        new: list[TokenLogprob] = []
        if not self._carried and not self._pending:
            # The usual chunk: its tokens spell its delta exactly.
            try:
                quick = [(t["token"], float(t["logprob"])) for t in tokens]
            except (TypeError, KeyError, ValueError):
                quick = None
            if quick is not None and "".join(text for text, _ in quick) == delta:
                new = [pair for pair in quick if pair[0]]
                self.pairs += new
                return new
        pos = 0
        for entry in tokens:
            token = entry.get("token") if isinstance(entry, dict) else None
            logprob = entry.get("logprob") if isinstance(entry, dict) else None
            if not isinstance(logprob, (int, float)) or isinstance(logprob, bool) or token == "":
                continue  # no probability, or a token without text (the end of sentence)
            if isinstance(token, str) and token and delta.startswith(token, pos):
                new.append((self._pending + token, self._carry + logprob))
                self._pending, self._carry, self._carried = "", 0.0, False
                pos += len(token)
            else:
                self._carry += logprob
                self._carried = True
        rest = delta[pos:]
        if rest and self._carried:
            new.append((self._pending + rest, self._carry))
            self._pending, self._carry, self._carried = "", 0.0, False
        elif rest:
            self._pending += rest
        self.pairs += new
        return new

    def result(self) -> list[TokenLogprob] | None:
        """All pairs, the text still pending joined to the last; None when no logprobs came."""
        if not self.seen:
            return None
        if self._pending and self.pairs:
            text, logprob = self.pairs[-1]
            self.pairs[-1] = (text + self._pending, logprob)
            self._pending = ""
        return self.pairs


class StreamDecodeError(Exception):
    """A line of the answer's event stream is not the JSON chunk it must be."""


class AnswerTooLargeError(Exception):
    """The answer grew past what a page of `max_tokens` tokens can be."""


class SSEDecoder:
    """A pure decoder of a chat-completion event stream: bytes in, JSON chunks out.

    `feed(data)` returns the chunks completed by `data` (dicts), and the string "[DONE]" for the
    end marker; lines other than `data:` (comments, `event:`, blank) are skipped. A `data:` line
    that is not a JSON object raises `StreamDecodeError`. Lines may end in \n, \r\n or \r.
    Hand-written because the SDK builds a pydantic object per chunk: measured at ~450 us a chunk
    against ~15 us here (benchmarks/bench_client.py), i.e. one CPU core saturated at ~2,200
    tokens/s, below what one GPU generates.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any] | str]:
        pending = self._pending
        pending += data
        end = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
        if end < 0:
            return []
        if end == len(pending) - 1 and pending[end] == 0x0D:
            # A \r at the very end may be the first half of a \r\n: it waits for the next feed.
            complete = bytes(pending[:end])
            del pending[:end]
        else:
            complete = bytes(pending[: end + 1])
            del pending[: end + 1]
        if b"\r" in complete:
            complete = complete.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = complete.split(b"\n")
        out: list[dict[str, Any] | str] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                out.append("[DONE]")
                continue
            try:
                # Decoded here: json.loads of bytes guesses their encoding first, per chunk.
                chunk = json.loads(payload.decode())
            except ValueError as exc:  # UnicodeDecodeError too
                raise StreamDecodeError(f"not JSON: {payload[:80]!r}") from exc
            if not isinstance(chunk, dict):
                raise StreamDecodeError(f"not a JSON object: {payload[:80]!r}")
            out.append(chunk)
        return out


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    if isinstance(exc, (StreamDecodeError, _NoAnswer)):
        return True
    # APIConnectionError covers refused connections, resets, timeouts and cut streams that the
    # SDK notices; a bare httpx/OSError can escape from the middle of an SSE stream.
    return isinstance(exc, (openai.APIConnectionError, openai.APIError, OSError)) or (
        type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
    )


def _rejects_vllm_xargs(exc: openai.BadRequestError) -> bool:
    message = str(exc).lower()
    return "vllm_xargs" in message or ("extra" in message and "not permitted" in message)


class _NoAnswer(Exception):
    """The server did not send the headers or the first token in time (the request is closed)."""


class ModelClient:
    """One OpenAI-compatible server. `busy` counts its requests in flight (for load balancing).

    `timeout` bounds each read once the page streams; `headers_timeout` and
    `first_token_timeout` bound the waits before it (see the module)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 300.0,
        headers_timeout: float = HEADERS_SECONDS,
        first_token_timeout: float = FIRST_TOKEN_SECONDS,
        max_retries: int = 4,
        backoff: float = 0.5,
        on_connection_error: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = api_base(url)
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.headers_timeout = headers_timeout
        self.first_token_timeout = first_token_timeout
        self.busy = 0
        #: Why the server is not there any more (its requests failed to connect after every
        #: retry, or its restart failed); None while it answers. A pool sends new pages to the
        #: servers still there, and the pipeline sends a page again that failed on a gone one.
        self.gone: str | None = None
        self.send_vllm_xargs = True
        self.has_metrics = True  # until /metrics is missing or has no vLLM gauges
        self.on_connection_error = on_connection_error
        self._api_key = api_key or "EMPTY"
        self._timeout = timeout
        self._client = self._make_client()

    def _make_client(self) -> openai.AsyncOpenAI:
        timeout = openai.Timeout(self._timeout, connect=min(CONNECT_SECONDS, self._timeout))
        return openai.AsyncOpenAI(
            base_url=self.url, api_key=self._api_key, timeout=timeout, max_retries=0
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
        on_tokens: TokensCallback | None = None,
    ) -> Completion:
        """Stream one page's answer. `on_delta` gets text as it comes, `on_tokens` the tokens'
        (text, logprob) pairs as they come (when the server sends logprobs); `on_restart` is
        called when a retry throws away what was streamed so far. Cancelling the awaiting task
        closes the HTTP stream, so the server stops generating."""
        self.busy += 1  # before any await, so a pool picking right after this call sees it
        try:
            completion = await self._complete(
                image_url, prompt, sampling, on_delta, on_restart, on_tokens
            )
        except ServerUnavailableError as exc:
            self.gone = str(exc)
            raise
        finally:
            self.busy -= 1
        self.gone = None
        return completion

    async def _complete(
        self,
        image_url: str,
        prompt: str,
        sampling: Sampling,
        on_delta: DeltaCallback | None,
        on_restart: Callable[[], None] | None,
        on_tokens: TokensCallback | None,
    ) -> Completion:
        model = await self.resolve_model()
        messages = build_messages(image_url, prompt)
        started = time.monotonic()
        attempt = 0
        no_answer = 0
        while True:
            attempt += 1
            streamed_any = False
            wait: float | None = None  # what the server asked for (Retry-After)
            try:
                text, finish, tokens, first, logprobs = await self._stream_once(
                    model, messages, sampling, on_delta, on_tokens, started
                )
                return Completion(
                    text, finish, tokens, time.monotonic() - started, first, attempt, logprobs
                )
            except openai.BadRequestError as exc:
                if self.send_vllm_xargs and _rejects_vllm_xargs(exc):
                    log.info("%s rejects vllm_xargs; sending without them", self.url)
                    self.send_vllm_xargs = False
                    continue
                raise ServerError(f"{self.url} refused the request: {exc.message}") from exc
            except AnswerTooLargeError as exc:
                raise ServerError(f"{self.url}: {exc}") from exc
            except _StreamedError as wrapped:
                streamed_any = wrapped.streamed
                cause = wrapped.cause
                if not _retryable(cause) or attempt > self.max_retries:
                    raise ServerError(f"{self.url}: stream broke off: {cause}") from cause
            except _NoAnswer as exc:
                no_answer += 1
                if attempt > self.max_retries or no_answer > NO_ANSWER_RETRIES:
                    raise ServerError(f"{self.url}: {exc}") from exc
            except openai.APIStatusError as exc:
                if not _retryable(exc) or attempt > self.max_retries:
                    raise ServerError(f"{self.url}: HTTP {exc.status_code}: {exc.message}") from exc
                wait = retry_after(exc.response.headers)
            except (openai.APIConnectionError, OSError) as exc:
                if attempt > self.max_retries:
                    raise ServerUnavailableError(f"{self.url}: {exc}") from exc
                if self.on_connection_error is not None:
                    await self.on_connection_error()
            if streamed_any and on_restart is not None:
                on_restart()
            delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
            if wait is not None:
                delay = wait  # the server knows when it has room again
            log.info("retrying %s in %.1f s (attempt %d)", self.url, delay, attempt + 1)
            await asyncio.sleep(delay)

    async def _stream_once(
        self,
        model: str,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        on_delta: DeltaCallback | None,
        on_tokens: TokensCallback | None,
        started: float,
    ) -> tuple[str, str | None, int | None, float | None, list[TokenLogprob] | None]:
        extra: dict[str, Any] = {"skip_special_tokens": sampling.skip_special_tokens}
        if self.send_vllm_xargs:
            extra["vllm_xargs"] = sampling.vllm_xargs()
        if sampling.logprobs:
            extra["logprobs"] = True
            extra["top_logprobs"] = 0
        extra.update(sampling.extra_body)
        # The SDK makes the request (auth, errors, timeouts); the answer's SSE lines are decoded
        # by SSEDecoder (see there why).
        parts: list[str] = []
        chars = 0
        received = 0
        max_chars = max(sampling.max_tokens, 1) * MAX_CHARS_PER_TOKEN
        max_bytes = max(sampling.max_tokens, 1) * MAX_BYTES_PER_TOKEN
        finish: str | None = None
        tokens: int | None = None
        first: float | None = None
        logprobs = TokenLogprobs()
        decoder = SSEDecoder()
        loop = asyncio.get_running_loop()
        request = self._client.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
            model=model,
            messages=messages,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=extra,
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await asyncio.wait_for(
                    stack.enter_async_context(request), self.headers_timeout
                )
            except asyncio.TimeoutError as exc:
                raise _NoAnswer(f"no response headers within {self.headers_timeout:g} s") from exc
            first_deadline = loop.time() + self.first_token_timeout
            chunks = response.iter_bytes().__aiter__()
            try:
                while True:
                    try:
                        if first is None and finish is None:
                            left = max(first_deadline - loop.time(), 0.0)
                            data = await asyncio.wait_for(chunks.__anext__(), left)
                        else:
                            data = await chunks.__anext__()  # `timeout` bounds each read
                    except StopAsyncIteration:
                        break
                    except asyncio.TimeoutError as exc:
                        raise _NoAnswer(
                            f"no token within {self.first_token_timeout:g} s of the headers"
                        ) from exc
                    received += len(data)
                    if received > max_bytes:
                        raise AnswerTooLargeError(
                            f"the answer passed {max_bytes:,} bytes ({MAX_BYTES_PER_TOKEN} a "
                            f"token of max_tokens {sampling.max_tokens}); not a page, stopped"
                        )
                    done = False
                    for chunk in decoder.feed(data):
                        if chunk == "[DONE]":
                            done = True
                            break
                        assert isinstance(chunk, dict)
                        if "error" in chunk:
                            error = chunk["error"]
                            message = (
                                error.get("message", error) if isinstance(error, dict) else error
                            )
                            raise _StreamedError(
                                openai.APIError(str(message), None, body=chunk),  # type: ignore[arg-type]
                                streamed=bool(parts),
                            )
                        usage = chunk.get("usage")
                        if usage:
                            tokens = usage.get("completion_tokens")
                        for choice in chunk.get("choices") or ():
                            delta = (choice.get("delta") or {}).get("content")
                            held = choice.get("logprobs")
                            content = held.get("content") if isinstance(held, dict) else None
                            if not isinstance(content, list):
                                content = None
                            if content is not None or logprobs.seen:
                                if not logprobs.seen and parts:  # text came before logprobs
                                    logprobs.feed("".join(parts), [])
                                pairs = logprobs.feed(delta or "", content)
                                if pairs and on_tokens is not None:
                                    on_tokens(pairs)
                            if delta:
                                if first is None:
                                    first = time.monotonic() - started
                                chars += len(delta)
                                if chars > max_chars:
                                    raise AnswerTooLargeError(
                                        f"the answer passed {max_chars:,} characters "
                                        f"({MAX_CHARS_PER_TOKEN} a token of max_tokens "
                                        f"{sampling.max_tokens}); not a page, stopped"
                                    )
                                parts.append(delta)
                                if on_delta is not None:
                                    on_delta(delta)
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
                    if done:
                        break
            except (asyncio.CancelledError, _StreamedError, _NoAnswer, AnswerTooLargeError):
                raise
            except Exception as exc:
                raise _StreamedError(exc, streamed=bool(parts)) from exc
        if finish is None:
            # The stream ended without a finish_reason: the connection was cut.
            raise _StreamedError(openai.APIConnectionError(request=None), streamed=bool(parts))  # type: ignore[arg-type]
        return "".join(parts), finish, tokens, first, logprobs.result()

    async def load(self) -> ServerLoad | None:
        """The server's load from its Prometheus /metrics (vLLM serves them beside /v1); None
        when it has none (then never asked again) or did not answer in time."""
        if not self.has_metrics:
            return None
        url = self.url.removesuffix("/v1") + "/metrics"
        try:
            response: httpx.Response = await self._client.get(
                url, cast_to=httpx.Response, options={"timeout": METRICS_SECONDS}
            )
        except openai.APIStatusError:
            self.has_metrics = False
            return None
        except (openai.OpenAIError, httpx.HTTPError, OSError):
            return None
        load = parse_metrics(response.text)
        if load is None:
            self.has_metrics = False
        return load

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
            if client.gone is not None:  # its restart failed already: not asked again
                raise ServerUnavailableError(client.gone)
            try:
                url, api_key = await restart()
            except ServerUnavailableError as exc:
                client.gone = str(exc)
                raise
            if client.url != api_base(url):
                client.retarget(url, api_key)

    client.on_connection_error = on_connection_error
    return client


class _StreamedError(Exception):
    """The stream failed once the answer began; with `streamed`, the caller must drop the text
    it was given before retrying."""

    def __init__(self, cause: BaseException, *, streamed: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.streamed = streamed


class ServerPool:
    """Several servers sharing the pages: each new page goes to the least-busy one."""

    def __init__(self, clients: list[ModelClient]) -> None:
        if not clients:
            raise ValueError("a server pool needs at least one server")
        self.clients = clients
        self._picks = [0] * len(clients)

    def pick(self) -> ModelClient:
        """The least busy server still there (`ModelClient.gone`), or of all when none is.

        A gone server fails fast, so it would always look least busy and take the pages.
        Ties go to the server picked least: pages sent in one burst are picked before any of
        their requests has started (and raised its server's `busy`), and all went to the first."""
        there = [i for i, c in enumerate(self.clients) if c.gone is None]
        index = min(
            there or range(len(self.clients)),
            key=lambda i: (self.clients[i].busy, self._picks[i]),
        )
        self._picks[index] += 1
        return self.clients[index]

    @property
    def any_there(self) -> bool:
        """Whether a server of the pool is not gone."""
        return any(c.gone is None for c in self.clients)

    @property
    def in_flight(self) -> int:
        """Requests this pool has sent and not yet had answered."""
        return sum(c.busy for c in self.clients)

    async def load(self) -> ServerLoad | None:
        """The summed load of the servers still there; None if any of them gives no metrics."""
        there = [c for c in self.clients if c.gone is None] or self.clients
        return combine(await asyncio.gather(*(c.load() for c in there)))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients))
