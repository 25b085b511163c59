"""A loopback test server that speaks the OpenAI chat-completions API and replays model outputs.

`FakeOpenAIServer` is a real HTTP server (aiohttp.web) on 127.0.0.1 that answers like `vllm serve`
does: GET /health, GET /v1/models, POST /v1/chat/completions (streamed or not), with the JSON
shapes vLLM sends, so the official `openai` client parses its answers. It runs its own event loop
in a background thread, so sync and async tests alike can use it:

    with FakeOpenAIServer(corpus_outputs(), token_delay=0.001) as server:
        client = OpenAI(base_url=server.url, api_key="x")
        ...
        assert server.completed == 1 and server.max_in_flight == 1

What it answers: the outputs given (a list is cycled through in request order; a callable gets the
request body and returns the text), cut into "tokens" the way a tokenizer would roughly cut them
(DeepSeek-OCR's special tags are single tokens), `tokens_per_chunk` tokens per streamed chunk with
`token_delay` seconds between chunks, stopped at `max_tokens` with finish_reason "length".

Token log-probabilities when the request asks for them as vLLM wants it (`logprobs: true` and
`top_logprobs` set, e.g. 0): each chunk's `choices[0].logprobs.content` holds one
`{"token", "logprob", "bytes", "top_logprobs": []}` per token, as vLLM streams them. They are
made up but deterministic: `SURE_LOGPROB` for every token, `UNSURE_LOGPROB` for the tokens that
overlap an occurrence of one of the strings in `unsure` (an attribute, settable any time), so a
test can make chosen words of an output low-confidence.

Faults on demand (`fail_next(mode, count)`), each taking the next chat request(s):
"500" HTTP 500, "429" HTTP 429 with Retry-After: `retry_after` (an attribute, "0" unless set:
seconds or an HTTP date), "400" HTTP 400, "cut" the stream starts and the connection is aborted
without [DONE], "hang" nothing is ever sent, not even the response headers (until the client gives
up or the server stops), "stall" the stream starts (headers and the role chunk) and then nothing
more comes, "garbage" a line that is not JSON (`data: <html>...`) comes half-way through an
otherwise good stream, "huge" the answer ignores max_tokens and streams the output over and over
in chunks of ~64 kB of text until `huge_chars` characters (an attribute, 20,000,000 by default:
the 20 MB answer of issue 17) have gone out, unless the client stops reading first.

A scheduler like vLLM's, on demand: with `max_running=N`, at most N streams produce tokens at
once and the others wait (headers sent, nothing more) in arrival order; GET /metrics answers
vLLM's Prometheus gauges `vllm:num_requests_running`, `vllm:num_requests_waiting` and
`vllm:kv_cache_usage_perc` (`metrics=False`: 404, as a server without them). `max_running_seen`
is the most streams ever running at once, `max_waiting_seen` the most ever waiting.

As a process (the repository root as cwd):

    python -m tests.fakes.openai_server [--host H] [--port P] [--api-key K] [--model NAME]
        [--outputs-dir DIR | --outputs FILE...] [--token-delay S] [--tokens-per-chunk N]
        [--reject-vllm-xargs] [--max-running N]

prints `READY http://H:PORT/v1` once listening and serves until SIGTERM or SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import functools
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

#: The shared corpus beside the checkout (../shared/corpus), and its parts.
CORPUS_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpus"
MODEL_OUTPUTS_DIR = CORPUS_DIR / "model-outputs"
PAGES_DIR = CORPUS_DIR / "pages"
REAL_PAGE_RAW = PAGES_DIR / "medical-report-p1.raw.txt"

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"

#: What the server answers when it is given no outputs: a short grounded markdown page.
DEFAULT_OUTPUT = (
    "<|ref|>title<|/ref|><|det|>[[62, 41, 938, 88]]<|/det|>\n# A sample page\n\n"
    "<|ref|>text<|/ref|><|det|>[[62, 112, 938, 203]]<|/det|>\n"
    "This text comes from the loopback test server, which was given no outputs to replay.\n\n"
    "<|ref|>table<|/ref|><|det|>[[62, 230, 938, 402]]<|/det|>\n"
    "<table><tr><td>Item</td><td>Value</td></tr><tr><td>pages</td><td>1</td></tr></table>\n"
)

#: Fault modes that fail_next() takes.
FAIL_MODES = ("500", "429", "400", "cut", "hang", "stall", "garbage", "huge")

#: The made-up log-probability of a token (probability 0.97), and of a token of an `unsure` string
#: (0.2: under engine.triage.LOW_CONFIDENCE, which tests show).
SURE_LOGPROB = math.log(0.97)
UNSURE_LOGPROB = math.log(0.2)

#: Prompt tokens counted for each image (DeepSeek-OCR's base mode: 1024x1024 -> 256 tokens).
IMAGE_TOKENS = 256

_TOKEN = re.compile(
    r"<\|/?ref\|>|<\|/?det\|>|<\|grounding\|>|<｜end▁of▁sentence｜>|\s*[^\s<]{1,4}|\s+|<"
)
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),", re.ASCII)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)

Outputs = Sequence[str] | Callable[[dict[str, Any]], str] | None


_WORDS = [
    "the",
    "of",
    "page",
    "scan",
    "table",
    "figure",
    "line",
    "text",
    "model",
    "result",
    "margin",
    "column",
    "header",
    "footer",
    "note",
    "paper",
    "word",
    "letter",
    "number",
    "date",
    "name",
    "value",
    "report",
    "chapter",
    "section",
    "index",
    "entry",
    "record",
    "field",
    "sample",
    "level",
    "point",
    "measure",
    "series",
    "volume",
    "issue",
    "author",
    "title",
    "summary",
    "method",
    "source",
    "data",
]


def prose(words: int, seed: int = 0) -> str:
    """`words` words of made-up text that never repeats itself the way a model's loop does (the
    triage's loop detector would rightly cut "Words of a page. " * 40 short)."""
    rng = random.Random(seed)
    picked = [rng.choice(_WORDS) for _ in range(words)]
    return " ".join(w + ("." if i % 11 == 10 else "") for i, w in enumerate(picked)) + "."


def corpus_outputs() -> list[str]:
    """The real outputs in shared/corpus/model-outputs (every *.txt, sorted); [] if absent."""
    if not MODEL_OUTPUTS_DIR.is_dir():
        return []
    return [p.read_text(encoding="utf-8") for p in sorted(MODEL_OUTPUTS_DIR.glob("*.txt"))]


@functools.lru_cache(maxsize=256)
def _tokenize_cached(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text))


def tokenize(text: str) -> list[str]:
    """Cut text into model-like tokens; "".join(tokenize(text)) == text."""
    return list(_tokenize_cached(text))


def _sniff(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


class _BadRequest(Exception):
    def __init__(
        self, message: str, status: int = 400, param: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.kind = kind


def _error(
    message: str, status: int, param: str | None = None, kind: str | None = None, **headers: str
) -> web.Response:
    """vLLM's error body: {"error": {"message", "type", "param", "code"}}."""
    kind = kind or {
        400: "BadRequestError",
        404: "NotFoundError",
        429: "RateLimitError",
        500: "InternalServerError",
    }.get(status, "Error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status, headers=headers)


class FakeOpenAIServer:
    """A loopback OpenAI-compatible (vLLM-like) server in a background thread; see the module."""

    def __init__(
        self,
        outputs: Outputs = None,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        token_delay: float = 0.0,
        tokens_per_chunk: int = 1,
        reject_vllm_xargs: bool = False,
        max_running: int | None = None,
        metrics: bool = True,
        unsure: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be at least 1")
        self.model = model
        self.api_key = api_key
        self.token_delay = token_delay
        self.tokens_per_chunk = tokens_per_chunk
        self.reject_vllm_xargs = reject_vllm_xargs
        #: Strings of the outputs whose tokens get UNSURE_LOGPROB (when logprobs are asked for).
        self.unsure: Sequence[str] = tuple(unsure)
        self.host = host
        self.port = port
        self.url = ""
        #: Every chat request body accepted for an answer, in order (those failed on purpose by
        #: fail_next included); image data URLs are replaced by a short placeholder, and
        #: `_image_bytes` (decoded size of the first image), `_image_format`, `_images` added,
        #: and `_received` (time.monotonic() when the request came in).
        self.requests: list[dict[str, Any]] = []
        #: The chat request bodies refused as invalid (bad shape or image, unknown model,
        #: vllm_xargs with reject_vllm_xargs), recorded the same way plus `_error`.
        self.refused: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_running = max_running
        self.metrics = metrics
        self.running = 0  # streams producing tokens now (all of them without max_running)
        self.waiting = 0
        self.max_running_seen = 0
        self.max_waiting_seen = 0
        self._scheduler: asyncio.Semaphore | None = None
        self.completed = 0
        #: The Retry-After header of the "429" fault.
        self.retry_after = "0"
        #: How many characters the "huge" fault streams.
        self.huge_chars = 20_000_000
        #: Characters of answer text written so far by "huge" faults.
        self.huge_sent = 0
        self._lock = threading.Lock()
        self._outputs: Outputs = None
        self._next_output = 0
        self._faults: deque[str] = deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._stopping = False
        self.set_outputs(outputs)

    # -- control (any thread) ---------------------------------------------------------------------

    def set_outputs(self, outputs: Outputs) -> None:
        """Replace what the server answers (and start the cycle over)."""
        if outputs is not None and not callable(outputs):
            if isinstance(outputs, str):
                raise TypeError("outputs must be a sequence of strings, not one string")
            outputs = list(outputs)
            if not outputs:
                raise ValueError("outputs must not be empty")
        with self._lock:
            self._outputs = outputs
            self._next_output = 0

    def fail_next(self, mode: str, count: int = 1) -> None:
        """Make the next `count` chat requests fail in `mode` (one of FAIL_MODES)."""
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {', '.join(FAIL_MODES)}")
        with self._lock:
            self._faults.extend([mode] * count)

    def start(self) -> FakeOpenAIServer:
        """Start listening (in a background thread); returns self once the port is open."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAIServer already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="FakeOpenAIServer", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop promptly: hung and streaming requests are aborted, the thread is joined."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._stopping = True
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the loop thread ------------------------------------------------------------------------

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._auth])
        if self.max_running is not None:
            self._scheduler = asyncio.Semaphore(self.max_running)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/v1"

    async def _shutdown(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ---------------------------------------------------------------------------------

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if (
            self.api_key is not None
            and request.path.startswith("/v1")
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return web.json_response({"error": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.metrics:
            return web.Response(status=404, text="Not Found")
        labels = f'{{engine="0",model_name="{self.model}"}}'
        capacity = self.max_running or max(1, self.running)
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{labels} {float(self.running)}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{labels} {float(self.waiting)}",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{labels} {min(1.0, self.running / capacity) * 0.5}",
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _scheduled(self) -> None:
        """Wait for a place among the running streams (`max_running`), then hold it."""
        if self._scheduler is not None:
            self.waiting += 1
            self.max_waiting_seen = max(self.max_waiting_seen, self.waiting)
            try:
                await self._scheduler.acquire()
            finally:
                self.waiting -= 1
        self.running += 1
        self.max_running_seen = max(self.max_running_seen, self.running)

    def _unscheduled(self) -> None:
        self.running -= 1
        if self._scheduler is not None:
            self._scheduler.release()

    async def _models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": 8192,
            "permission": [],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error("The request body is not valid JSON.", 400)
        if not isinstance(body, dict):
            return _error("The request body must be a JSON object.", 400)
        record, problem = self._record(body)
        if problem is not None:
            record["_error"] = problem.message
            with self._lock:
                self.refused.append(record)
            return _error(problem.message, problem.status, problem.param, problem.kind)
        record["_received"] = time.monotonic()
        with self._lock:
            self.requests.append(record)
            fault = self._faults.popleft() if self._faults else None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, body, record, fault)
        except ConnectionError:
            # A fault, the client went away, or the server is stopping: drop the connection
            # (aiohttp then quietly fails to send this response).
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        except asyncio.CancelledError:
            if request.transport is not None:
                request.transport.abort()
            raise
        finally:
            self.in_flight -= 1

    def _record(self, body: dict[str, Any]) -> tuple[dict[str, Any], _BadRequest | None]:
        """The copy to keep (image data URLs shortened) and what is wrong with it, if anything."""
        record = copy.deepcopy(body)
        problem: _BadRequest | None = None
        messages = record.get("messages")
        images = 0
        if not isinstance(messages, list) or not messages:
            problem = _BadRequest("'messages' must be a non-empty list.", param="messages")
            messages = []
        for message in messages:
            if not isinstance(message, dict) or "role" not in message:
                problem = problem or _BadRequest(
                    "Each message must be an object with a 'role'.", param="messages"
                )
                continue
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                if not isinstance(part, dict) or part.get("type") != "image_url":
                    continue
                holder = part.get("image_url")
                url = holder.get("url") if isinstance(holder, dict) else holder
                if not isinstance(url, str):
                    problem = problem or _BadRequest("image_url needs a url.", param="messages")
                    continue
                images += 1
                if not url.startswith("data:"):
                    continue
                try:
                    size, kind = self._image(url)
                except _BadRequest as exc:
                    problem, size, kind = problem or exc, -1, None
                if images == 1:
                    record["_image_bytes"] = size
                    record["_image_format"] = kind
                placeholder = f"{url[: min(url.find(',') + 1, 64)]}<{len(url)} chars>"
                if size >= 0:
                    placeholder = f"{url[: url.find(',') + 1]}<{size} bytes>"
                if isinstance(holder, dict):
                    holder["url"] = placeholder
                else:
                    part["image_url"] = placeholder
        record["_images"] = images
        model = body.get("model")
        if problem is None and model is not None and model != self.model:
            problem = _BadRequest(f"The model `{model}` does not exist.", status=404, param="model")
        if problem is None and self.reject_vllm_xargs and "vllm_xargs" in body:
            problem = _BadRequest(  # what SGLang (OpenAI style) says about an unknown field
                "Unrecognized request argument supplied: vllm_xargs",
                param="vllm_xargs",
                kind="invalid_request_error",
            )
        return record, problem

    @staticmethod
    def _image(url: str) -> tuple[int, str | None]:
        """Decoded size and sniffed format of a data: URL; 400 if it is not base64 image data."""
        match = _DATA_URL.match(url)
        if match is None or ";base64" not in match.group("params"):
            raise _BadRequest("Only base64 data: URLs are supported.", param="messages")
        mime = match.group("mime") or ""
        if not mime.startswith("image/"):
            raise _BadRequest(f"Unsupported media type {mime or '(none)'}.", param="messages")
        try:
            data = base64.b64decode(url[match.end() :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadRequest(f"Invalid base64 image data: {exc}", param="messages") from exc
        if not data:
            raise _BadRequest("The image is empty.", param="messages")
        return len(data), _sniff(data)

    def _pick_output(self, body: dict[str, Any]) -> str:
        with self._lock:
            outputs = self._outputs
            if outputs is None or callable(outputs):
                index = 0
            else:
                index = self._next_output % len(outputs)
                self._next_output += 1
        if outputs is None:
            return DEFAULT_OUTPUT
        if callable(outputs):
            return str(outputs(body))
        return outputs[index]

    async def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        record: dict[str, Any],
        fault: str | None,
    ) -> web.StreamResponse:
        if fault == "500":
            return _error("Injected fault: internal server error.", 500)
        if fault == "429":
            return _error(
                "Injected fault: too many requests.", 429, **{"Retry-After": self.retry_after}
            )
        if fault == "400":
            return _error("Injected fault: bad request.", 400)
        if fault == "hang":
            await self._hold(request)
            raise ConnectionResetError("hang released")
        try:
            text = self._pick_output(body)
        except Exception as exc:
            return _error(f"The outputs callable failed: {exc!r}", 500)
        tokens = _tokenize_cached(text)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and limit >= 0 and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        usage = {
            "prompt_tokens": self._prompt_tokens(record),
            "completion_tokens": len(tokens),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            return await self._stream(request, body, tokens, finish, usage, fault)
        if fault in ("cut", "stall"):  # not streamed: nothing of the answer goes out
            if fault == "stall":
                await self._hold(request)
            raise ConnectionResetError(fault)
        answer = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(tokens),
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [],
                        "reasoning_content": None,
                    },
                    "logprobs": (
                        {"content": self._logprobs(tokens)} if self._wants_logprobs(body) else None
                    ),
                    "finish_reason": finish,
                    "stop_reason": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": usage,
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        if self.token_delay:
            await asyncio.sleep(self.token_delay * len(tokens) / self.tokens_per_chunk)
        response = web.json_response(answer)
        self.completed += 1
        return response

    def _logprobs(self, tokens: Sequence[str]) -> list[dict[str, Any]]:
        """vLLM's `logprobs.content` entries of `tokens` (see the module for the made-up values)."""
        text = "".join(tokens)
        spans = [
            (m.start(), m.end())
            for word in self.unsure
            if word
            for m in re.finditer(re.escape(word), text)
        ]
        entries = []
        at = 0
        for token in tokens:
            end = at + len(token)
            low = any(start < end and at < stop for start, stop in spans)
            entries.append(
                {
                    "token": token,
                    "logprob": UNSURE_LOGPROB if low else SURE_LOGPROB,
                    "bytes": list(token.encode("utf-8")),
                    "top_logprobs": [],
                }
            )
            at = end
        return entries

    @staticmethod
    def _wants_logprobs(body: dict[str, Any]) -> bool:
        """vLLM sends token logprobs only when both fields are given."""
        return bool(body.get("logprobs")) and body.get("top_logprobs") is not None

    @staticmethod
    def _prompt_tokens(record: dict[str, Any]) -> int:
        count = IMAGE_TOKENS * int(record.get("_images", 0))
        for message in record["messages"]:
            content = message.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            for part in parts:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    count += len(_tokenize_cached(text))
        return count

    async def _hold(self, request: web.Request) -> None:
        """Wait until the server stops or the client goes away."""
        assert self._release is not None
        while not self._release.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._release.wait(), 0.05)

    async def _huge(
        self,
        request: web.Request,
        response: web.StreamResponse,
        opening: str,
        closing: str,
        text: str,
    ) -> web.StreamResponse:
        """Stream `text` over and over, ~64 kB of it per chunk, until `huge_chars` went out."""
        block = text or "x"
        piece = block * max(1, 65536 // len(block))
        sent = 0
        while sent < self.huge_chars:
            if self._stopping:
                raise ConnectionResetError("server stopping")
            chunk = piece[: self.huge_chars - sent]
            await response.write(f"{opening}{json.dumps({'content': chunk})}{closing}".encode())
            sent += len(chunk)
            self.huge_sent += len(chunk)
            await asyncio.sleep(0)
        final = ', "logprobs": null, "finish_reason": "stop", "stop_reason": null}]}\n\n'
        await response.write(f'{opening}{{"content": ""}}{final}'.encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed += 1
        return response

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        tokens: Sequence[str],
        finish: str,
        usage: dict[str, int],
        fault: str | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        await self._scheduled()
        try:
            return await self._stream_tokens(request, response, body, tokens, finish, usage, fault)
        finally:
            self._unscheduled()

    async def _stream_tokens(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: dict[str, Any],
        tokens: Sequence[str],
        finish: str,
        usage: dict[str, int],
        fault: str | None,
    ) -> web.StreamResponse:
        head = json.dumps(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": self.model,
            }
        )[:-1]
        opening = f'data: {head}, "choices": [{{"index": 0, "delta": '
        closing = ', "logprobs": null, "finish_reason": null}]}\n\n'
        final = f', "logprobs": null, "finish_reason": "{finish}", "stop_reason": null}}]}}\n\n'
        role = {"role": "assistant", "content": ""}
        await response.write(f"{opening}{json.dumps(role)}{closing}".encode())

        if fault == "stall":
            await self._hold(request)
            raise ConnectionResetError("stall released")
        if fault == "huge":
            return await self._huge(request, response, opening, closing, "".join(tokens))
        step = self.tokens_per_chunk
        groups = [tokens[i : i + step] for i in range(0, len(tokens), step)]
        pieces = ["".join(group) for group in groups]
        if fault == "cut":
            pieces = pieces[: max(1, min(len(pieces) // 2, 8))] if pieces else []
        # Each chunk's `"logprobs": ...` (vLLM's null when they were not asked for).
        held = ["null"] * len(pieces)
        if self._wants_logprobs(body):
            entries = self._logprobs(tokens)
            held = [
                json.dumps({"content": entries[i * step : (i + 1) * step]})
                for i in range(len(pieces))
            ]
        delay = self.token_delay
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            if delay:
                await asyncio.sleep(delay)
                if self._stopping:
                    raise ConnectionResetError("server stopping")
            elif i % 64 == 63:
                await asyncio.sleep(0)  # let the other streams have a turn
            delta = json.dumps({"content": piece})
            if fault == "garbage" and i == len(pieces) // 2:
                await response.write(b"data: <html><body>502 Bad Gateway</body></html>\n\n")
            if i == last and fault in (None, "garbage"):
                tail = (
                    f', "logprobs": {held[i]}, "finish_reason": "{finish}", '
                    '"stop_reason": null}]}\n\n'
                )
                await response.write(f"{opening}{delta}{tail}".encode())
            else:
                logprobs = f', "logprobs": {held[i]}, "finish_reason": null}}]}}\n\n'
                await response.write(f"{opening}{delta}{logprobs}".encode())
        if fault == "cut":
            await asyncio.sleep(0.01)  # let the client see the chunks before the connection drops
            raise ConnectionResetError("cut")
        if not pieces:
            await response.write(f'{opening}{{"content": ""}}{final}'.encode())
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            await response.write(
                f'data: {head}, "choices": [], "usage": {json.dumps(usage)}}}\n\n'.encode()
            )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed += 1
        return response


# -- process mode ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.openai_server",
        description="Serve the loopback OpenAI-compatible test server until SIGTERM/SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--outputs-dir", type=Path, help="replay every *.txt here, sorted")
    source.add_argument("--outputs", type=Path, nargs="+", metavar="FILE", help="replay these")
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--reject-vllm-xargs", action="store_true")
    parser.add_argument("--max-running", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; print `READY URL` once listening."""
    args = _parse_args(argv)
    files: list[Path] = []
    if args.outputs_dir is not None:
        files = sorted(args.outputs_dir.glob("*.txt"))
        if not files:
            print(f"no *.txt in {args.outputs_dir}", file=sys.stderr)
            return 2
    elif args.outputs:
        files = list(args.outputs)
    outputs = [f.read_text(encoding="utf-8") for f in files] or None

    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = FakeOpenAIServer(
        outputs,
        model=args.model,
        api_key=args.api_key,
        token_delay=args.token_delay,
        tokens_per_chunk=args.tokens_per_chunk,
        reject_vllm_xargs=args.reject_vllm_xargs,
        max_running=args.max_running,
        host=args.host,
        port=args.port,
    )
    with server:
        print(f"READY {server.url}", flush=True)
        while not done.wait(3600):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
