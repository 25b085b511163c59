"""How many pages to keep in flight when no `--concurrency` is given: the in-flight count that
keeps the server's scheduler full, found while the run goes on.

A vLLM server decodes every request it runs in one batch per step: more requests in flight give
more pages per second until its scheduler is full (`--max-num-seqs`, or the KV cache), and past
that they only wait in its queue (costing the client memory and the first page its latency).
Measured on the H200 (shared/gpu/RESULTS.md, issue 18): 16 in flight gave 3.1 pages/s, 64 gave
5.2-5.6 and 256 gave 5.3-5.8, for a batch-256 ceiling of 5.4-5.6. So the right count is "what the
server runs at once, and a little more so that it never waits for the next page", and that number
depends on the server, the model and the pages, so it is read from the server while the run goes:

- vLLM's Prometheus `/metrics` say how many requests it runs and how many wait, and how full its
  KV cache is (`parse_metrics`). `next_limit` grows the limit while everything sent runs and the
  cache has room, and shrinks it to what runs plus a margin once requests queue up.
- A server without `/metrics` (or one that refuses it) gets `BLIND_LIMIT`, the count measured to
  give 0.96x of the best on the H200 without queueing pages far past what any single GPU runs.
- Several GPUs: the local engine runs one server per GPU (engine/local_group.py) and the pool
  adds their loads (`combine`); a remote data-parallel vLLM reports each engine under its own
  `engine` label. Either way `ServerLoad.engines` counts the engines, and the limit may grow to
  `ENGINE_LIMIT` pages for each of them (at most `MAX_LIMIT`): one GPU's ceiling must not cap
  eight.

- A server that runs all it is sent does not prove that more in flight pay: the client may be
  what bounds the run. Measured on the H200 (issue 18, `convert --server`, 192 pages of 1,000
  tokens, dummy DeepSeek-OCR, --retry none): the doubling alone climbed 16, 32, 64, 128, 256
  and gave 7.93 pages/s, against 9.60 at a fixed 64 and 7.45 at a fixed 256 (0.83x of the
  best), with the convert process at 230 % CPU and vLLM's engine core idle 77 %: more streams
  only cost the client more per page. So `Climb` also watches the output it gets: a raise from
  `JUDGED_FROM` up is kept only if, once the new limit is filled, the output per second
  (vLLM's `vllm:generation_tokens_total`, else the text the client was streamed) grew by
  `GAIN` over the rate before it; otherwise the limit goes back and stays there for
  `RETRY_SECONDS`. Below `JUDGED_FROM` the limit doubles each tick as before: a server with
  metrics running all it is sent gets at least the blind count, and judging costs a window per
  step.

`AdaptiveLimit` is the asyncio semaphore whose size `Climb` sets. Nothing here does I/O: the
client reads `/metrics` (`ModelClient.load`), the pipeline calls `Climb.step` each `TICK`.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "AUTO_START",
    "BLIND_LIMIT",
    "ENGINE_LIMIT",
    "MAX_LIMIT",
    "TICK",
    "AdaptiveLimit",
    "Climb",
    "Phase",
    "ServerLoad",
    "ceiling",
    "combine",
    "next_limit",
    "parse_metrics",
]

#: The limit the tuner starts from once the first page is back.
AUTO_START = 16
#: The most pages in flight the tuner allows for each engine (GPU) of the server(s). Measured on
#: the H200 (issue 18, 192 pages of 1,000 tokens, `convert --server`): 256 in flight was slower
#: than 128 or 64 in both leases (7.45 against 9.60 at 64; 7.60-7.96 against 8.87-9.05 at
#: 128 and 8.07-8.60 at 64), the client being the bound there, and a raise to 256 that `Climb`
#: takes back has by then sent every page of a run this size (the tuner went 16 ... 256, 128
#: and gave 0.65-0.79x of a fixed 128). Each page in flight also holds its image and request
#: in the client (about 5 MB at the model's working size).
ENGINE_LIMIT = 128
#: The most pages in flight ever, whatever the number of engines (eight GPUs' worth).
MAX_LIMIT = 8 * ENGINE_LIMIT
#: Without metrics: 64 gave 5.23-5.63 pages/s on the H200 against 5.26-5.84 at 256 (0.96x).
BLIND_LIMIT = 64
#: Seconds between two looks at the server's load.
TICK = 0.5
#: Requests waiting in the server's queue that are welcome: the next pages, ready the moment a
#: running one ends. Beyond max(MIN_MARGIN, running / MARGIN_SHARE) they only wait.
MIN_MARGIN = 4
MARGIN_SHARE = 8
#: A KV cache fuller than this stops growth: vLLM would start preempting requests.
KV_FULL = 0.9
#: Raises from this limit up are judged by the output they bring (`Climb`); below, not.
JUDGED_FROM = BLIND_LIMIT
#: Ticks of output a rate is measured over, the limit filled all along (1.5 s).
WINDOW = 3
#: A raise is kept when the output per second grew by this factor at least.
GAIN = 1.10
#: Seconds a raise gets to be filled and measured; one not measured by then is taken back (the
#: client did not even fill it: it did not pay).
JUDGE_SECONDS = 5.0
#: Seconds a limit whose raise did not pay is kept before another raise is tried (the pages
#: may have changed).
RETRY_SECONDS = 30.0

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)
_ENGINE_LABEL = re.compile(r'\bengine="([^"]*)"')
_RUNNING = ("vllm:num_requests_running",)
_WAITING = ("vllm:num_requests_waiting",)
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # the name before vLLM 0.10
_GENERATED = "vllm:generation_tokens_total"


@dataclass(frozen=True)
class ServerLoad:
    """What a server is doing now: requests running and waiting, its KV cache use (0..1, None
    when it does not say; the fullest engine's), how many engines (GPUs) run them, and the
    output tokens it generated since it started (None when it does not say)."""

    running: int
    waiting: int
    kv_usage: float | None = None
    engines: int = 1
    generated: float | None = None


def parse_metrics(text: str) -> ServerLoad | None:
    """The load in a Prometheus text page of a vLLM server; None when it has no vLLM gauges.

    A data-parallel server reports each engine with its own `engine` label: running and waiting
    are summed over them, the KV cache use is the fullest engine's, and the distinct labels are
    its engines. The generated tokens are summed over them."""
    sums: dict[str, float] = {}
    kv: list[float] = []
    engines: set[str] = set()
    for name, labels, value in _SAMPLE.findall(text):
        try:
            number = float(value)
        except ValueError:
            continue
        if name in _RUNNING or name in _WAITING or name == _GENERATED:
            sums[name] = sums.get(name, 0.0) + number
            if name in _RUNNING:
                found = _ENGINE_LABEL.search(labels)
                engines.add(found.group(1) if found else "")
        elif name in _KV:
            kv.append(number)
    if _RUNNING[0] not in sums:
        return None
    return ServerLoad(
        running=round(sums[_RUNNING[0]]),
        waiting=round(sums.get(_WAITING[0], 0.0)),
        kv_usage=max(kv) if kv else None,
        engines=max(1, len(engines)),
        generated=sums.get(_GENERATED),
    )


def combine(loads: Iterable[ServerLoad | None]) -> ServerLoad | None:
    """The pool's load: the servers' summed (engines and generated tokens too, these None
    unless every server says); None if any server gives none (blind)."""
    running = waiting = engines = 0
    kv: list[float] = []
    generated: float | None = 0.0
    for load in loads:
        if load is None:
            return None
        running += load.running
        waiting += load.waiting
        engines += load.engines
        if load.kv_usage is not None:
            kv.append(load.kv_usage)
        generated = (
            None if generated is None or load.generated is None else generated + load.generated
        )
    return ServerLoad(running, waiting, max(kv) if kv else None, max(1, engines), generated)


def margin(running: int) -> int:
    """Requests a server may have waiting without any of them waiting in vain."""
    return max(MIN_MARGIN, running // MARGIN_SHARE)


def next_limit(limit: int, in_flight: int, load: ServerLoad | None) -> int:
    """The next in-flight limit, from the current one, the requests this client has in flight
    and the server's load (None: the server gives no metrics)."""
    if load is None:
        return BLIND_LIMIT
    room = margin(load.running)
    extra = load.waiting - room
    if extra > 0:  # the scheduler is full: what waits past the margin was sent too early
        return max(MIN_MARGIN, limit - extra)
    full = load.kv_usage is not None and load.kv_usage >= KV_FULL
    # Nothing waits although (nearly) every slot is sent: the server has room for more. Between
    # no request waiting and a margin's worth, the limit holds (no see-saw round the knee).
    if load.waiting == 0 and in_flight >= limit - room and not full:
        return min(ceiling(load.engines), limit * 2)
    return limit


def ceiling(engines: int) -> int:
    """The most pages in flight for servers of `engines` engines (GPUs) in all."""
    return min(MAX_LIMIT, ENGINE_LIMIT * max(1, engines))


class Phase(enum.Enum):
    """Where `Climb` stands."""

    CLIMBING = enum.auto()  # raises are made when `next_limit` asks for them
    JUDGING = enum.auto()  # a raise was made: is it filled, and did the output grow?
    SETTLED = enum.auto()  # a raise did not pay: the limit holds until RETRY_SECONDS pass


@dataclass
class Climb:
    """`next_limit`, with every raise from `JUDGED_FROM` up kept only if it paid.

    `step` is given, each tick, the clock and the output so far: the server's generated tokens
    when its load says (`ServerLoad.generated`), else `streamed`, what the client has been
    streamed (characters). Only ticks with the limit filled (`next_limit`'s own test) count
    towards a rate, over `WINDOW` ticks in a row at one limit."""

    phase: Phase = Phase.CLIMBING
    #: The limit before the raise being judged, and the output per second there.
    previous: int = 0
    before: float = 0.0
    #: When the raise being judged was made, or the climb settled.
    since: float = 0.0
    #: (clock, output) of the ticks in a row with the current limit filled, the last WINDOW + 1.
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    #: Whether `samples` count the server's tokens (True) or the text streamed (False), and the
    #: limit they were taken at.
    served: bool | None = None
    sampled: int = 0

    def step(
        self, limit: int, in_flight: int, load: ServerLoad | None, now: float, streamed: float
    ) -> int:
        """The next in-flight limit (see `next_limit`); `now` in seconds, any origin."""
        proposed = next_limit(limit, in_flight, load)
        if load is None or proposed < limit:  # blind, or requests queue: the rules as they were
            self._restart()
            return proposed
        self._sample(limit, in_flight, load, now, streamed)
        if self.phase is Phase.JUDGING:
            if self._measured():
                if self._rate() >= self.before * GAIN:
                    self.phase = Phase.CLIMBING  # it paid; its samples are the next baseline
                    return limit
                return self._settle(now)
            return self._settle(now) if now - self.since >= JUDGE_SECONDS else limit
        if self.phase is Phase.SETTLED:
            if now - self.since < RETRY_SECONDS:
                return limit
            self.phase = Phase.CLIMBING
        if proposed > limit and limit >= JUDGED_FROM:
            if not self._measured():
                return limit  # the rate at this limit is not known yet
            self.previous, self.before, self.since = limit, self._rate(), now
            self.phase = Phase.JUDGING
            self.samples.clear()
        return proposed

    def _sample(
        self, limit: int, in_flight: int, load: ServerLoad, now: float, streamed: float
    ) -> None:
        served = load.generated is not None
        output = load.generated if load.generated is not None else streamed
        if (
            served != self.served
            or limit != self.sampled
            or (self.samples and output < self.samples[-1][1])
        ):
            # another measure, another limit, or a server restarted (its counter too)
            self.samples.clear()
            self.served, self.sampled = served, limit
        if in_flight < limit - margin(load.running):
            self.samples.clear()  # not filled: what comes out says nothing of this limit
            return
        self.samples.append((now, output))
        while len(self.samples) > WINDOW + 1:
            self.samples.popleft()

    def _measured(self) -> bool:
        return len(self.samples) > WINDOW

    def _rate(self) -> float:
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        return (last - first) / (end - start) if end > start else 0.0

    def _settle(self, now: float) -> int:
        self.phase, self.since = Phase.SETTLED, now
        self.samples.clear()
        return self.previous

    def _restart(self) -> None:
        self.phase = Phase.CLIMBING
        self.samples.clear()


class AdaptiveLimit:
    """An asyncio semaphore whose size can change while it is held (`set_limit`).

    Shrinking never takes a slot back: holders release as usual, and no one new acquires until
    fewer than the new limit are held. Waiters are served first come, first served."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def held(self) -> int:
        return self._held

    def set_limit(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._wake()

    async def acquire(self) -> None:
        if self._held < self._limit and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as it was cancelled: hand the slot on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if self._held <= 0:
            raise ValueError("release() without acquire()")
        self._held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._held < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
