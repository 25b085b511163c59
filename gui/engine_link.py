"""The window's link to the model server: a remote OpenAI-compatible URL, or the local engine
the app starts, watches and restarts: one vLLM on each GPU the GPUs setting chooses (all by
default; `engine.LocalServerGroup`, as `convert --local` runs it). Its state is an
`EngineState`, with a line beside it: the group's folded state (ready once every server is;
otherwise the first failure or restart, naming its GPU).

Connecting and the local servers' life run on the engine thread's asyncio loop
(`gui.engine_thread`); the link's state changes reach the GUI thread as `changed` signals.
A run gets every server (`client_specs`) and spreads its pages over them; a local server that
dies under a run is brought back on its own (`bring_back(index)`), the others keep serving.
A run that loses a remote server tells the link (`lost`): it is asked again at once, and the
light turns red when it does not answer, instead of staying green while every page fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from ocrdesk.engine import (
    ClientSpec,
    EngineStartError,
    LocalServer,
    LocalServerConfig,
    LocalServerGroup,
    ModelClient,
    OCRDeskError,
    ServerState,
    ServerStatus,
)
from ocrdesk.gui.engine_thread import EngineThread

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class EngineState(str, enum.Enum):
    """Where the link to the model server stands (a `str`: "ready" == EngineState.READY)."""

    NONE = "none"  # nothing configured (or nothing that can be started)
    STARTING = "starting"
    READY = "ready"
    ERROR = "error"
    STOPPED = "stopped"  # stopped on purpose; Start engine starts it again


# The engine's fixes name the CLI's options; the window has its Settings dialog instead.
_CLI_TERMS = (
    ("OCRDESK_VLLM/--vllm/settings", "Settings"),
    ("a remote server with --server", "a remote server (Settings)"),
    ("--server", "a remote server in Settings"),
    ("--gpu-memory-utilization", "GPU memory utilisation in Settings"),
)


def in_window_terms(fix: str) -> str:
    for cli, window in _CLI_TERMS:
        fix = fix.replace(cli, window)
    return fix


class EngineLink(QObject):
    """The model server the run talks to, and whether it is there."""

    changed = Signal(object, str)  # EngineState, detail
    _inGui = Signal(object)  # a callable from the engine thread, to be called on the GUI thread

    def __init__(self, spawn: Spawn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spawn = spawn
        self.engine_thread = EngineThread()
        self._inGui.connect(lambda callback: callback())
        self.client: ModelClient | None = None
        self.group: LocalServerGroup | None = None  # the local engine, while it is used
        self.model = ""
        self.state = EngineState.NONE
        self.detail = "no engine configured"
        self.last_log = ""  # the log tail of the last local start that failed
        self._remote: ClientSpec | None = None
        self._connecting: asyncio.Task[Any] | None = None  # the latest use_local/use_remote
        self._checking: asyncio.Task[Any] | None = None

    def _set(self, state: EngineState, detail: str) -> None:
        self.state, self.detail = state, detail
        self.changed.emit(state, detail)

    @property
    def local(self) -> LocalServer | None:
        """The first local server (its GPU's), None in remote mode or before the first one is
        made; all of them are `group.servers`."""
        group = self.group
        return group.servers[0] if group is not None and group.servers else None

    @property
    def ready(self) -> bool:
        return self.client is not None and self.state is EngineState.READY

    def unset(self, detail: str) -> None:
        """No engine: `detail` says why (no URL set, ...)."""
        self._set(EngineState.NONE, detail)

    # -- remote --------------------------------------------------------------------------------

    def use_remote(self, url: str, api_key: str | None = None) -> asyncio.Task[Any]:
        """Point at a remote OpenAI-compatible server and check that it answers."""
        self._connecting = self.spawn(self._use_remote(url, api_key or None))
        return self._connecting

    async def _use_remote(self, url: str, api_key: str | None) -> None:
        await self._stop_local()
        await self._close_client()
        self.model = ""
        self._set(EngineState.STARTING, f"connecting to {url}")
        client, model = await self.engine_thread.run(_connect(url, api_key))
        self.client = client
        if isinstance(model, OCRDeskError):
            self._set(EngineState.ERROR, str(model))
            return
        self.model = model
        self._remote = ClientSpec(client.url, api_key=api_key, model=model)
        self._set(EngineState.READY, f"{self.model} at {client.url}")

    def lost(self, reason: str) -> None:
        """A run could not reach the server: a remote one is asked again, and is marked as an
        error when it does not answer. (Local ones are watched, and restarted, by their
        LocalServer.)"""
        if self._remote is None or self.state is not EngineState.READY:
            return
        if self._checking is None or self._checking.done():
            self._checking = self.spawn(self._check(self._remote, reason))

    async def _check(self, spec: ClientSpec, reason: str) -> None:
        client, model = await self.engine_thread.run(_connect(spec.url, spec.api_key))
        with contextlib.suppress(Exception):
            await self.engine_thread.run(client.close())
        if self._remote is spec and isinstance(model, OCRDeskError):
            self._set(EngineState.ERROR, f"the server stopped answering: {model or reason}")

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        self._remote = None
        if client is not None:
            with contextlib.suppress(Exception):
                await self.engine_thread.run(client.close())

    # -- local ---------------------------------------------------------------------------------

    def use_local(self, config: dict[str, Any]) -> asyncio.Task[Any]:
        """Start the local engine with `config` (LocalServerConfig fields; its "gpus" choose the
        GPUs, one vLLM on each) and use it."""
        self._connecting = self.spawn(self._use_local(config))
        return self._connecting

    def _local_state(self, group: LocalServerGroup, status: ServerStatus) -> None:
        """A server of the group changed, heard on the GUI thread (a group no longer used is
        not heard). The servers are looked at as they are now, all at once: the event may be
        older than what it says (a restart's "warming up" handled after it became ready)."""
        if self.group is not group:
            return
        servers = list(group.servers)
        now = [server.current for server in servers]
        serving = [i for i, current in enumerate(now) if current.state is ServerState.READY]
        if serving and self.client is not None:
            # The window's client (region OCR) follows the first server that serves, to its
            # address now (a restarted one has a new port and key).
            first = servers[serving[0]]
            if self.client.url != first.url:
                self.spawn(self._reconnect(group, first))
            if len(serving) == len(servers):
                self._set(EngineState.READY, self._ready_text(group))
            else:
                # One GPU's server restarts (or could not be brought back) while the others
                # serve: the run goes on there (the pool leaves a gone server out), so Run
                # stays usable.
                self._set(EngineState.READY, self._degraded_text(group, now))
            return
        folded = group.current if servers else status  # the group's state now
        if folded.state is ServerState.FAILED:
            self._set(EngineState.ERROR, f"local vLLM {folded}")
        elif folded.state in (ServerState.STARTING, ServerState.RESTARTING):
            self._set(EngineState.STARTING, f"local vLLM: {folded}")

    async def _reconnect(self, group: LocalServerGroup, server: LocalServer) -> None:
        """The window's client follows `server` (the first that serves) to its address."""
        client = await self.engine_thread.run(_server_client(server))
        if self.group is not group:  # the engine changed meanwhile
            await self.engine_thread.run(client.close())
            return
        old, self.client = self.client, client
        if old is not None:
            with contextlib.suppress(Exception):
                await self.engine_thread.run(old.close())

    def _degraded_text(self, group: LocalServerGroup, now: list[ServerStatus]) -> str:
        """The ready line while some GPUs' servers serve and another does not (`now`: their
        statuses, in the group's order): which serve, then the first other one's state and
        why (the label elides the end; the model is in the ready line before and after)."""
        gpus = [str(gpu.index) for gpu in group.gpus] or [str(i) for i in range(len(now))]
        up = [
            gpu
            for gpu, current in zip(gpus, now, strict=True)
            if current.state is ServerState.READY
        ]
        gpu, down = next(
            (g, c) for g, c in zip(gpus, now, strict=True) if c.state is not ServerState.READY
        )
        why = f": {down.message}" if down.message else ""
        return f"local vLLM on GPU {', '.join(up)}; GPU {gpu} {down.state.value}{why}"

    def _ready_text(self, group: LocalServerGroup) -> str:
        """The ready line: the model, and the GPUs when it runs on more than one."""
        text = f"local vLLM: {self.model}"
        if len(group.servers) > 1:
            text += f" on GPUs {', '.join(str(gpu.index) for gpu in group.gpus)}"
        return text

    async def _use_local(self, config: dict[str, Any]) -> None:
        await self._stop_local()
        await self._close_client()
        group = LocalServerGroup(LocalServerConfig(**config))
        # Called on the engine thread, where the servers live.
        group.on_state = lambda status: self._inGui.emit(lambda: self._local_state(group, status))
        self.group = group
        self._set(EngineState.STARTING, "starting the local vLLM server")
        try:
            await self.engine_thread.run(group.start())
        except EngineStartError as exc:
            self.group = None
            fix = in_window_terms(exc.fix)
            self.last_log = exc.log_tail
            self._set(EngineState.ERROR, exc.reason + (f" ({fix})" if fix else ""))
            return
        except OCRDeskError as exc:
            self.group = None
            self._set(EngineState.ERROR, str(exc))
            return
        self.client = await self.engine_thread.run(_first_server_client(group))
        self.model = group.model
        self._set(EngineState.READY, self._ready_text(group))

    async def _stop_local(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            with contextlib.suppress(Exception):
                await self.engine_thread.run(group.stop())

    # -- for the run ---------------------------------------------------------------------------

    def client_specs(self) -> tuple[ClientSpec, ...]:
        """The servers as the worker must reach them now (a restarted local server has a new
        port and key): each local one, supervised, in the group's order (the index a restart
        request names); or the one remote server."""
        group = self.group
        if group is not None and group.servers:
            return tuple(
                ClientSpec(server.url, api_key=server.api_key, model=server.model, supervised=True)
                for server in group.servers
            )
        assert self._remote is not None, "no engine is ready"
        return (self._remote,)

    async def bring_back(self, index: int = 0) -> tuple[str, str | None]:
        """The run lost local server `index` (of `client_specs`): restart that one only.
        Returns its (url, api key); raises OCRDeskError (or anything LocalServer raises) when it
        does not come back."""
        group = self.group
        if group is None or not group.servers:
            raise OCRDeskError("the local server was stopped")
        if not 0 <= index < len(group.servers):
            raise OCRDeskError(f"there is no local server {index} (of {len(group.servers)})")
        server = group.servers[index]
        await self.engine_thread.run(server.ensure_running())
        return server.url, server.api_key

    # -- stopping ------------------------------------------------------------------------------

    async def abandon_start(self) -> None:
        """Cancel a start still going."""
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)

    async def stop(self) -> None:
        """Stop the local vLLM servers (freeing the GPUs) or drop the remote connection."""
        await self._stop_local()
        await self._close_client()
        self._set(EngineState.STOPPED, "Run > Start engine starts it again")

    async def close(self) -> None:
        await self._stop_local()
        await self._close_client()
        self.engine_thread.close()

    def log(self) -> str:
        """The state and the last lines of the local servers' logs (each under its GPU's name
        when there are several), for the Log button."""
        head = f"{self.state.value}: {self.detail}\n\n"
        if self.group is not None and self.group.servers:
            with contextlib.suppress(Exception):
                return head + self.group.log_tail(200)
        return head + (self.last_log or "(no server log)")


async def _connect(url: str, api_key: str | None) -> tuple[ModelClient, str | OCRDeskError]:
    """Engine thread: a client for `url` and the model it serves, or why it cannot say."""
    client = ModelClient(url, api_key=api_key)
    try:
        return client, await client.resolve_model()
    except OCRDeskError as exc:
        return client, exc


async def _first_server_client(group: LocalServerGroup) -> ModelClient:
    """Engine thread: the window's client of a local engine, for its first server. Run pages
    never go through it (the run's worker has one per server, each asking for its server's
    restart when it dies under a page); it marks the engine as connected, and the window's
    region OCR uses it."""
    return await _server_client(group.servers[0])


async def _server_client(server: LocalServer) -> ModelClient:
    """Engine thread: a client of `server` at its address now."""
    return ModelClient(server.url, api_key=server.api_key, model=server.model)
