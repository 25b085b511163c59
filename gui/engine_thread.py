"""A thread with its own asyncio loop, where the engine's network, parsing and export work runs.

The GUI thread runs the qasync loop; the model server streams thousands of small deltas a second,
and reading them (HTTP, SSE, JSON, the stream parser) on the GUI thread blocked it for hundreds
of milliseconds at a time. Everything that talks to the model (ModelClient, Pipeline,
LocalServer) therefore lives on this loop. The GUI reaches it only through `run`, `start` and
`call`, from the controller.

One caveat that decides this thread's lifetime: a local vLLM started from this thread gets the
parent-death signal when *this thread* ends (PR_SET_PDEATHSIG follows the thread that forked).
The thread lives as long as the controller, and `close` stops the server before it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class WorkerTask(Generic[T]):
    """A coroutine running on the engine loop: cancel it from the GUI, await its end there."""

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> None:
        self._loop = loop
        self._task: asyncio.Task[T] | None = None
        self._done: concurrent.futures.Future[T | None] = concurrent.futures.Future()
        # call_soon_threadsafe runs callbacks in order, so `_create` always runs before a
        # `cancel` asked for right after.
        loop.call_soon_threadsafe(self._create, coro)

    def _create(self, coro: Coroutine[Any, Any, T]) -> None:
        self._task = self._loop.create_task(coro)
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self._done.set_result(None)
        elif task.exception() is not None:
            self._done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self._done.set_result(task.result())

    def cancel(self) -> None:
        """Ask the task to stop; `wait` returns once it has cleaned up."""

        def cancel() -> None:
            if self._task is not None:
                self._task.cancel()

        self._loop.call_soon_threadsafe(cancel)

    async def wait(self) -> T | None:
        """The task's result (None when it was cancelled), awaited on the caller's loop."""
        return await asyncio.wrap_future(self._done)


class EngineThread:
    """A daemon thread running an asyncio loop until `close`."""

    def __init__(self, name: str = "ocrdesk-engine") -> None:
        # Every call from Qt back into Python (a slot, a delegate's paint) must take the GIL.
        # While this thread streams, it holds the GIL for up to the switch interval (5 ms by
        # default) each time, and one GUI update crosses between C++ and Python many times.
        # A shorter interval cut the GUI thread's mean lateness from 6.7 to 4.1 ms here
        # (benchmarks/bench_gui_latency.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self, coro: Coroutine[Any, Any, T]) -> WorkerTask[T]:
        """Run `coro` on the engine loop; the handle cancels it and awaits its end."""
        return WorkerTask(self.loop, coro)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine loop and await its result from the caller's loop.

        Cancelling the caller cancels the coroutine too."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Call `callback(*args)` on the engine loop soon (from any thread)."""
        self.loop.call_soon_threadsafe(callback, *args)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop (after the tasks now scheduled get one more turn) and join the thread."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
