"""A thread with its own asyncio loop, where the GUI's connection to the model server lives.

The client that checks the server, the local vLLM server (`LocalServer`: starting it, watching
it, restarting it when it dies) and its status callbacks run on this loop, so none of that waits
on the GUI thread. The run's streaming itself is in a child process, the worker
(`engine.RunWorker`). The GUI reaches this loop only through `run`, from the engine link
(`gui.engine_link`).

One caveat that decides this thread's lifetime: a local vLLM started from this thread gets the
parent-death signal when *this thread* ends (PR_SET_PDEATHSIG follows the thread that forked).
The thread lives as long as the engine link, and closing the link stops the server before it
ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    """A daemon thread running an asyncio loop until `close`."""

    def __init__(self, name: str = "ocrdesk-engine") -> None:
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

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the engine loop and await its result from the caller's loop.

        Cancelling the caller cancels the coroutine too."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop (after the tasks now scheduled get one more turn) and join the thread."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
