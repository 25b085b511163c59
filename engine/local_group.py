"""The local engine on every GPU of the workstation: one `vllm serve` per GPU.

`LocalServerGroup` finds the GPUs (engine/gpus.py), takes those the choice names (`--gpus`, the
window's "GPUs" setting; all by default) and runs one `LocalServer` on each, pinned to it with
CUDA_VISIBLE_DEVICES. The client's `ServerPool` spreads the pages over them (each new page to the
least busy server), and the in-flight tuner adds their loads (engine/concurrency.py). With no GPU
found, or one, it is one LocalServer exactly as before.

Why one server per GPU and not vLLM's own data parallelism (`vllm serve --data-parallel-size N`,
one endpoint, requests balanced inside vLLM by its DP coordinator)? Read in vLLM 0.24.0:

- DeepSeek-OCR's language model is a mixture of experts (DeepSeek-V2 MoE, 64 routed experts), so
  vLLM's `model_config.is_moe` is true. For a dense model vLLM runs DP ranks as independent
  engines ("Non-MoE DP ranks are completely independent, so treat like DP=1", v1/engine/core.py)
  and even tells people to "launch independent vLLM instances" for load balancing outside it
  (config/parallel.py, engine/arg_utils.py).
- For an MoE model it runs `DPEngineCoreProc`: the ranks step in lockstep ("waves"), an idle rank
  runs dummy batches while another has work, and they all-reduce every 32 steps whether any has
  work left. Its fused-MoE layers, without --enable-expert-parallel, are tensor-parallel across
  all DP ranks (FusedMoEParallelConfig: "TP = 1, DP = 2, EP = False ... the tensors are sharded
  across 2 devices"): two collectives per MoE layer per step, over PCIe on most workstations.
  That is tensor parallelism for a 3B model that fits on one GPU, the very thing to avoid.
- A GPU that fails takes all the ranks down; separate servers fail and restart one at a time.

Separate servers share nothing: each GPU holds the whole model (about 6.7 GB of weights) and runs
its own scheduler, which is what data parallelism for a model this size should be. Explicit
--data-parallel-size or --tensor-parallel-size above 1 still gets one vLLM over the chosen GPUs:
the person asked for vLLM's own parallelism. The multi-GPU measurement is its own issue (18).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from .errors import EngineStartError
from .gpus import Gpu, GpuChoice, describe, find_gpus
from .local_server import (
    LocalServer,
    LocalServerConfig,
    ServerState,
    ServerStatus,
    default_api_server_count,
    pick_gpus,
    server_env,
)

__all__ = ["LocalServerGroup", "gpu_report", "split_by_gpu"]

#: The doctor's line about the GPUs the local engine uses.
GPU_REPORT_NAME = "GPUs for vLLM"

# When the servers' states differ, the group shows the one first in this list.
_PRECEDENCE = (
    ServerState.FAILED,
    ServerState.RESTARTING,
    ServerState.STOPPING,
    ServerState.STARTING,
    ServerState.READY,
    ServerState.STOPPED,
)


def split_by_gpu(config: LocalServerConfig, gpus: list[Gpu]) -> list[LocalServerConfig]:
    """The configs of the servers for `config` on `gpus` (the GPUs chosen): one per GPU, with
    the API server processes shared out among them; one config as it is when fewer than two
    GPUs are chosen or vLLM's own parallelism is asked for."""
    if len(gpus) < 2 or config.tensor_parallel_size > 1 or config.data_parallel_size > 1:
        return [config]
    cpus = (os.cpu_count() or 1) // len(gpus)
    api_servers = config.api_server_count or default_api_server_count(cpus)
    return [
        replace(config, gpus=GpuChoice(devices=(gpu.index,)), api_server_count=api_servers)
        for gpu in gpus
    ]


def gpu_report(config: LocalServerConfig | None = None) -> list[tuple[str, bool, str, str]]:
    """For `ocrdesk doctor`: the GPUs found and which the local engine would run on, as the
    fields of one check (name, ok, detail, fix); none when no GPU is found (the GPU check says
    so). It runs nvidia-smi: call it off the event loop."""
    config = config or LocalServerConfig()
    found = find_gpus(server_env(config))
    if not found:
        return []
    try:
        chosen = pick_gpus(config.gpus, found)
    except EngineStartError as exc:
        return [(GPU_REPORT_NAME, False, exc.reason, exc.fix)]
    servers = len(split_by_gpu(config, chosen))
    how = f"one vLLM on each of {len(chosen)}" if servers > 1 else "one vLLM"
    detail = f"{len(found)} found ({describe(found)}); {how}: {describe(chosen)}"
    return [(GPU_REPORT_NAME, True, detail, "")]


class LocalServerGroup:
    """The local vLLM servers, one per chosen GPU: start them, watch them, stop them.

    After `start()`: `servers`, each a LocalServer with its own `url` and `api_key` (a client
    per server: `supervised_client`), and each restarted on its own by `ensure_running`.
    `current` is the group's state: ready once every server is, the first failure otherwise;
    with several servers a message names the GPU ("GPU 1: loading weights").
    `url`, `api_key`, `log_path` are the first server's, for callers that take one server.
    """

    def __init__(
        self,
        config: LocalServerConfig,
        *,
        on_state: Callable[[ServerStatus], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.on_state = on_state
        self.on_status = on_status
        self.model = config.model
        self.servers: list[LocalServer] = []
        self.gpus: list[Gpu] = []  # the GPU of each server; [] when no GPU was chosen
        self.current = ServerStatus(ServerState.STOPPED)
        self._lock = asyncio.Lock()

    # -- what the first server says, for callers of one server -----------------------------

    @property
    def url(self) -> str:
        return self.servers[0].url if self.servers else ""

    @property
    def api_key(self) -> str:
        return self.servers[0].api_key if self.servers else ""

    @property
    def log_path(self) -> Path:
        return self.servers[0].log_path if self.servers else Path()

    @property
    def state(self) -> ServerState:
        return self.current.state

    @property
    def status(self) -> str:
        return str(self.current)

    @property
    def last_failure(self) -> tuple[str, str] | None:
        for server in self.servers:
            if server.last_failure is not None:
                return server.last_failure
        return None

    def is_running(self) -> bool:
        """Whether every server's process is alive."""
        return bool(self.servers) and all(server.is_running() for server in self.servers)

    def log_tail(self, lines: int = 50) -> str:
        """The last lines of each server's log, under the name of its GPU when there are more."""
        if len(self.servers) == 1:
            return self.servers[0].log_tail(lines)
        return "\n".join(
            f"== GPU {gpu.index} ({server.log_path}) ==\n{server.log_tail(lines)}"
            for gpu, server in zip(self.gpus, self.servers, strict=True)
        )

    # -- state -----------------------------------------------------------------------------

    def _server_changed(self, _status: ServerStatus) -> None:
        statuses = [server.current for server in self.servers]
        if not statuses:
            return
        state = min((s.state for s in statuses), key=_PRECEDENCE.index)
        index = next(i for i, s in enumerate(statuses) if s.state is state)
        message = statuses[index].message
        if message and len(self.servers) > 1:
            message = f"GPU {self.gpus[index].index}: {message}"
        status = ServerStatus(state, message)
        if status == self.current and len(self.servers) > 1 and self.on_state is not None:
            # The fold is the same (GPU 1 still failed) but a server changed (GPU 0 restarts):
            # `on_state` hears it, for who shows each server (the window's GPUs line).
            self.on_state(status)
            return
        self._set(status)

    def _set(self, status: ServerStatus) -> None:
        if status == self.current:
            return
        self.current = status
        if self.on_state is not None:
            self.on_state(status)
        if self.on_status is not None:
            self.on_status(str(status))

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start a server on every chosen GPU and wait until all serve. When one cannot start,
        the others are stopped and its EngineStartError is raised (its reason names the GPU)."""
        async with self._lock:
            if self.is_running():
                return
            await self._stop_servers()
            found = await asyncio.to_thread(find_gpus, server_env(self.config))
            chosen = pick_gpus(self.config.gpus, found)
            configs = split_by_gpu(self.config, chosen)
            self.gpus = chosen if len(configs) > 1 else []
            self.servers = [
                LocalServer(c, on_state=self._server_changed, found_gpus=found) for c in configs
            ]
            results = await asyncio.gather(
                *(server.start() for server in self.servers), return_exceptions=True
            )
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
            if not failed:
                return
            await self._stop_servers(keep=True)
            index, error = failed[0]
            if isinstance(error, EngineStartError) and self.gpus:
                gpu = self.gpus[index].index
                self._set(ServerStatus(ServerState.FAILED, f"GPU {gpu}: {error.reason}"))
                raise EngineStartError(f"GPU {gpu}: {error.reason}", error.fix, error.log_tail)
            raise error

    async def ensure_running(self) -> bool:
        """Bring back every server that died (each as LocalServer.ensure_running does); True if
        any was started again. Read each server's `url` and `api_key` again after True."""
        if not self.servers:
            raise EngineStartError("the local vLLM servers were never started", "")
        restarted = await asyncio.gather(*(s.ensure_running() for s in self.servers))
        return any(restarted)

    async def stop(self) -> None:
        """Stop every server. Safe to call more than once; interrupts a start in progress."""
        await self._stop_servers(keep=True)

    async def _stop_servers(self, keep: bool = False) -> None:
        servers = self.servers
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)
        if not keep:
            self.servers, self.gpus = [], []

    async def __aenter__(self) -> LocalServerGroup:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
