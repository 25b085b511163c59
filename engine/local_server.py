"""Run and look after a local `vllm serve` process for DeepSeek-OCR.

`LocalServer` starts vLLM on 127.0.0.1 with a free port and a fresh random API key, keeps its log
(a file under the log folder, and the last lines in memory), turns the log into a status a person
understands (`vllm_log.status_from_line`), waits until the server really answers (GET /health is
200 *and* GET /v1/models with the key lists a model) while watching the process, and explains a
failure with a reason and a fix (`vllm_log.classify_failure`) in an `EngineStartError`. Its state
is typed: a `ServerStatus` (a `ServerState` and the message beside it), given to `on_state`.

Nothing leaked. The API key never goes on a command line: /proc/PID/cmdline is readable by every
local user, so a key in the argv of the watchdog or of vLLM is a key for anyone on the machine.
vLLM reads it from the environment instead (VLLM_API_KEY, vllm/envs.py; `--api-key` would win
over it, so we pass none), and /proc/PID/environ is readable only by the process's own user (the
kernel makes it 0400 and checks ptrace access). The log folder and the state folder above it are
0700 and every log file 0600, whatever the umask, and the key is masked in every log line OCRDesk
writes or shows (`vllm_log.mask_secret`), in case a vLLM prints it.

No orphans. vLLM is not one process: `vllm serve` spawns an engine-core process (and workers for
tensor/data parallelism). OCRDesk must take all of them down when it exits, crashes or is
SIGKILLed, or the GPU stays full until someone finds the strays. We start vLLM through a small
watchdog (engine/watchdog.py) rather than directly with prctl(PR_SET_PDEATHSIG) because:

- PDEATHSIG reaches one process only. vLLM's engine core is a grandchild, and a signal to the
  process group is what reaches it; a SIGKILLed parent cannot send that. The watchdog can: it holds
  a pipe whose only writer is OCRDesk, sees EOF when OCRDesk dies (any way, SIGKILL included, the
  kernel closes the pipe) and then killpg's vLLM's own process group (SIGTERM, grace, SIGKILL).
- PDEATHSIG fires when the *thread* that forked exits, which is fragile in a GUI that may start the
  server from a worker thread; a pipe's EOF depends only on the process.
- It also works on macOS (no prctl), where only the pipe part applies.

The watchdog still sets PDEATHSIG=SIGKILL on vLLM (Linux), so even a SIGKILLed watchdog does not
leave vLLM's main process behind. A normal exit is covered too: `stop()`, `async with`, and an
atexit hook that SIGTERMs every watchdog still running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as _dt
import enum
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import sys
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn, TypeVar

from .app_settings import saved_gpus, saved_vllm
from .client import ModelClient
from .concurrency import ENGINE_LIMIT
from .errors import EngineStartError, OCRDeskError
from .export import atomic_write
from .gpus import ALL_GPUS, Gpu, GpuChoice, GpuChoiceError, cuda_env, find_gpus, parse_gpus
from .reference_page import load_reference
from .tasks import (
    BATCH_PROCESSOR_MODULE,
    DEFAULT_MODEL,
    DEFAULT_NGRAM_PROCESSOR,
    FAMILIES,
    LOGITS_PROCESSOR,
    ModelFamily,
    NGramProcessor,
    Sampling,
    Task,
    family_by_architecture,
    family_of,
    prompt_text,
)
from .vllm_log import (
    MASK,
    V2_RUNNER_ENV,
    classify_failure,
    known_failure,
    mask_secret,
    release_problem,
    status_from_line,
    vllm_version_in,
)

try:  # openai >= 3 depends on `httpx2`, older ones on `httpx`: the same API under two names
    import httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx2 as httpx  # type: ignore[no-redef]

__all__ = [
    "API_KEY_ENV",
    "LOGITS_PROCESSOR",
    "NGRAM_PROCESSOR_ENV",
    "LocalServer",
    "LocalServerConfig",
    "ServerState",
    "ServerStatus",
    "VllmSource",
    "build_command",
    "choose_gpus",
    "choose_vllm",
    "default_ngram_processor",
    "default_vllm",
    "free_port",
    "httpx",
    "install_batch_processor",
    "model_family",
    "needs_trust_remote_code",
    "pick_gpus",
    "processor_dir",
    "resolve_vllm",
    "server_env",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

NOT_FOUND_FIX = (
    "install vLLM in its own environment and point OCRDESK_VLLM or --vllm (the window: Settings, "
    "vLLM executable) at its `vllm` executable, or use a remote server with --server"
)
_WATCHDOG = Path(__file__).with_name("watchdog.py")
_WATCHDOG_PID = re.compile(r"\[ocrdesk-watchdog\] started pid (\d+)")
_LOG_LINES = 500
#: The environment variable vLLM reads its API key from (vllm/envs.py, since vLLM 0.4).
API_KEY_ENV = "VLLM_API_KEY"
#: The environment variable naming the vLLM command when none is configured.
VLLM_ENV = "OCRDESK_VLLM"
#: The environment variable that picks the n-gram logits processor ("batch" or "recipe") when
#: the configuration names none.
NGRAM_PROCESSOR_ENV = "OCRDESK_NGRAM_PROCESSOR"
#: OCRDesk's batch n-gram processor, copied for the vLLM process as BATCH_PROCESSOR_MODULE.
_BATCH_PROCESSOR_SOURCE = Path(__file__).with_name("ngram_logits.py")
#: A fresh vLLM compiles kernels for the shapes of its first requests (Triton JIT of the
#: attention, the fused MoE and the slot mapping: "Triton kernel JIT compilation during
#: inference" in its log). On the H200 that made a fresh local server's first page take 7.9 s
#: against 0.7 s for a page on a warm one (issue 18, benchmarks/results/gpu-goals.md). So the
#: reference page is sent with this many output tokens before the server is called ready, and
#: the first page a person sends takes a page's time.
WARM_UP_TOKENS = 16
#: The single request compiles batch-1 shapes only: a fresh local vLLM still ran its first large
#: batches slower (6.69 pages/s at defaults, 0.77x of a warm server's best, first page 1.87 s
#: against 0.58 s alone; gpu-goals.md). So after it, this many requests (one GPU's in-flight
#: ceiling, what a run sends) go at once, for the batch shapes a run meets.
WARM_UP_BATCH = ENGINE_LIMIT
#: Requests a fresh server answers before it is called ready, at the default configuration.
WARM_UP_REQUESTS = 1 + WARM_UP_BATCH
WARM_UP_TIMEOUT = 300.0
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600


class ServerState(enum.Enum):
    """Where a local server is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"  # the message says which stage: "loading weights", ...
    READY = "ready"  # it answers /health and lists a model with the key
    RESTARTING = "restarting"  # it died; the message says why
    STOPPING = "stopping"
    FAILED = "failed"  # a start failed; the message is the reason


@dataclass(frozen=True)
class ServerStatus:
    """A server's state and the message beside it. `str()` is the one-line text a person reads."""

    state: ServerState
    message: str = ""

    def __str__(self) -> str:
        if self.state is ServerState.STARTING:
            return self.message or "starting vLLM"
        if self.state is ServerState.FAILED:
            return f"failed: {self.message}"
        if self.state is ServerState.RESTARTING:
            return f"crashed: {self.message}; restarting"
        return str(self.state.value)


def default_ngram_processor() -> NGramProcessor:
    """$OCRDESK_NGRAM_PROCESSOR ("batch" or "recipe"), else DEFAULT_NGRAM_PROCESSOR."""
    value = os.environ.get(NGRAM_PROCESSOR_ENV, "").strip().lower()
    if not value:
        return DEFAULT_NGRAM_PROCESSOR
    try:
        return NGramProcessor(value)
    except ValueError:
        names = ", ".join(processor.value for processor in NGramProcessor)
        log.warning(
            "%s=%r is none of %s: using %s",
            NGRAM_PROCESSOR_ENV,
            value,
            names,
            DEFAULT_NGRAM_PROCESSOR.value,
        )
        return DEFAULT_NGRAM_PROCESSOR


@dataclass
class LocalServerConfig:
    """How to run vLLM. Tuning flags left at None are not passed: vLLM's defaults apply."""

    model: str = DEFAULT_MODEL  # hub id or local folder
    vllm: str | None = None  # executable (may be several words); None -> $OCRDESK_VLLM, "vllm"
    gpu_memory_utilization: float | None = None
    max_model_len: int = 8192
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    # Which GPUs (engine/gpus.py): a GpuChoice, or its text ("all", "2", "0,2"); None: the one
    # saved in the window's Settings, else all. One LocalServer runs one vLLM on the first of
    # them; engine/local_group.py runs one per GPU.
    gpus: GpuChoice | str | None = None
    trust_remote_code: bool | None = None  # None: auto, see needs_trust_remote_code()
    attention_backend: str | None = None  # e.g. "TRITON_ATTN" (shared/gpu/RESULTS.md)
    # vLLM's API server decodes and preprocesses every page image in one process; with 64 pages
    # in flight that serial step left the GPU idle: 3.28 pages/s with 1 API server, 3.86 with 4
    # on an H100 (benchmarks/results/gpu-e2e.md). None: auto, see default_api_server_count().
    api_server_count: int | None = None
    # The n-gram logits processor: OCRDesk's batch one, or the recipe's (vLLM's own).
    ngram_processor: NGramProcessor = field(default_factory=default_ngram_processor)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 1200.0
    log_dir: Path | None = None  # default: platformdirs.user_state_path("ocrdesk") / "logs"
    # Where the batch processor's module is put for vLLM; default: "vllm-path" beside the logs.
    processor_dir: Path | None = None
    stop_timeout: float = 15.0  # SIGTERM, then this long, then SIGKILL
    restart_tries: int = 3  # ensure_running: starts tried before giving up
    restart_backoff: float = 2.0  # seconds before the 2nd try, doubled before each next one
    warm_up: bool = True  # short requests before the server is called ready (WARM_UP_TOKENS)
    warm_up_batch: int = WARM_UP_BATCH  # sent at once after the first one


class VllmSource(enum.Enum):
    """Where the vLLM command came from (said when it is not there)."""

    GIVEN = "the vLLM setting (--vllm)"
    ENV = VLLM_ENV
    SAVED = "the window's Settings"
    PATH = "PATH"


def choose_vllm(vllm: str | None = None) -> tuple[str, VllmSource]:
    """The vLLM command and where it came from: `vllm` (--vllm, or the window's setting that the
    window passes), else $OCRDESK_VLLM, else the executable saved in the window's Settings (for
    the CLI and doctor, engine/app_settings.py), else "vllm" on PATH."""
    if vllm:
        return vllm, VllmSource.GIVEN
    if env := os.environ.get(VLLM_ENV):
        return env, VllmSource.ENV
    if saved := saved_vllm():
        return saved, VllmSource.SAVED
    return "vllm", VllmSource.PATH


def choose_gpus(gpus: GpuChoice | str | None = None) -> GpuChoice:
    """The GPU choice: `gpus` (--gpus, or the window's setting that the window passes), else the
    one saved in the window's Settings (for the CLI and doctor), else all. A saved value that
    does not parse is logged and taken as all."""
    if isinstance(gpus, GpuChoice):
        return gpus
    if gpus is not None and gpus.strip():
        return parse_gpus(gpus)
    saved = saved_gpus()
    if saved:
        try:
            return parse_gpus(saved)
        except GpuChoiceError as exc:
            log.warning("the GPUs saved in Settings are ignored: %s", exc)
    return ALL_GPUS


def pick_gpus(gpus: GpuChoice | str | None, found: list[Gpu]) -> list[Gpu]:
    """The GPUs of `found` that the choice names (see `choose_gpus`); [] when none are found
    (vLLM then runs as it always did). EngineStartError when the choice cannot be met."""
    try:
        return choose_gpus(gpus).pick(found)
    except GpuChoiceError as exc:
        raise EngineStartError(
            f"the GPUs chosen cannot be used: {exc}",
            fix="choose GPUs that are there: --gpus all|N|0,1 (the window: Settings, GPUs), "
            "and see `ocrdesk doctor` for the GPUs found",
        ) from exc


def resolve_vllm(vllm: str | None = None) -> list[str]:
    """The vLLM command as argv words (see `choose_vllm` for which).

    A value may be several words, e.g. "python3 -m vllm.entrypoints.cli.main".
    """
    return shlex.split(choose_vllm(vllm)[0])


def default_vllm() -> str | None:
    """What runs when no vLLM executable is set, as a person reads it: $OCRDESK_VLLM's value, or
    the path of `vllm` on PATH; None when neither is there."""
    value, source = choose_vllm(None)
    if source is not VllmSource.PATH:
        return f"{value} (from {source.value})"
    found = shutil.which("vllm")
    return f"{found} (found on PATH)" if found else None


def needs_trust_remote_code(model: str) -> bool:
    """Whether to pass `--trust-remote-code`: only for DeepSeek-OCR-2 (custom code in its config).

    DeepSeek-OCR (1) has a native vLLM implementation and is served without it (as its guides do).
    A local folder decides by its config.json: an architecture named like DeepseekOCR2* together
    with an `auto_map` (custom code). A hub id, which we cannot read without the network, decides
    by its name: "DeepSeek-OCR-2" (also "-ocr2", any case).
    """
    config = _folder_config(model)
    if config is not None:
        family = family_by_architecture(config.get("architectures") or [])
        custom_code = config.get("auto_map")
        return bool(family is not None and FAMILIES[family].trust_remote_code and custom_code)
    return FAMILIES[family_of(model)].trust_remote_code


def model_family(model: str) -> ModelFamily:
    """The family of a model to serve: a local folder's by its config.json's architecture, a hub
    id's (or a folder whose config names no known architecture) by its name."""
    config = _folder_config(model)
    if config is not None:
        found = family_by_architecture(config.get("architectures") or [])
        if found is not None:
            return found
    return family_of(model)


def _folder_config(model: str) -> dict[str, Any] | None:
    """The config.json of a local model folder; None for a hub id (or an unreadable config)."""
    config_file = Path(model).expanduser() / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def build_command(config: LocalServerConfig, port: int) -> list[str]:
    """The argv of `vllm serve` for `config` on 127.0.0.1:`port`.

    No API key: it goes in the environment (API_KEY_ENV), never on a command line.
    """
    command = [
        *resolve_vllm(config.vllm),
        "serve",
        config.model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *FAMILIES[family_of(config.model)].flags(config.ngram_processor),
        "--max-model-len",
        str(config.max_model_len),
    ]
    optional: list[tuple[str, object]] = [
        ("--gpu-memory-utilization", config.gpu_memory_utilization),
        ("--max-num-seqs", config.max_num_seqs),
        ("--max-num-batched-tokens", config.max_num_batched_tokens),
        (
            "--tensor-parallel-size",
            config.tensor_parallel_size if config.tensor_parallel_size != 1 else None,
        ),
        (
            "--data-parallel-size",
            config.data_parallel_size if config.data_parallel_size != 1 else None,
        ),
        ("--attention-backend", config.attention_backend),
        (
            "--api-server-count",
            config.api_server_count
            if config.api_server_count is not None
            else default_api_server_count(),
        ),
    ]
    for flag, value in optional:
        if value is not None:
            command += [flag, str(value)]
    trust = config.trust_remote_code
    if trust is None:
        trust = needs_trust_remote_code(config.model)
    if trust:
        command.append("--trust-remote-code")
    return [*command, *config.extra_args]


def processor_dir(config: LocalServerConfig) -> Path:
    """The folder put on vLLM's PYTHONPATH for the batch processor: only its module is in it
    (engine/ itself would put every OCRDesk module name in front of vLLM's own imports)."""
    if config.processor_dir is not None:
        return config.processor_dir
    if config.log_dir is not None:
        return config.log_dir.parent / "vllm-path"
    return _state_dir() / "vllm-path"


def install_batch_processor(folder: Path) -> Path:
    """Put engine/ngram_logits.py in `folder` (0700) as BATCH_PROCESSOR_MODULE; its path.

    Rewritten only when it differs, so an upgraded OCRDesk never leaves vLLM an older copy.
    """
    _private_dir(folder)
    target = folder / f"{BATCH_PROCESSOR_MODULE}.py"
    source = _BATCH_PROCESSOR_SOURCE.read_bytes()
    try:
        same = target.read_bytes() == source
    except OSError:
        same = False
    if not same:
        atomic_write(target, source)
    return target


def server_env(config: LocalServerConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """vLLM's environment: `base` (default: ours) with `config.env`, and for the batch processor
    its folder first on PYTHONPATH (what PYTHONPATH held stays after it). No API key here."""
    env = {**(os.environ if base is None else base), **config.env}
    if config.ngram_processor is NGramProcessor.BATCH:
        folder = str(processor_dir(config))
        paths = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
        env["PYTHONPATH"] = os.pathsep.join([folder, *(p for p in paths if p != folder)])
    if config.ngram_processor is not NGramProcessor.NONE:
        # Both n-gram processors are written against the V1 interface, which vLLM's Model
        # Runner V2 refuses at load (vLLM PR 56497) after the weights are in; V1 is the runner
        # vLLM <= 0.24 picked for them by itself. A person's own setting wins.
        env.setdefault(V2_RUNNER_ENV, "0")
    return env


def default_api_server_count(cpus: int | None = None) -> int:
    """API server processes for a local vLLM: a quarter of the CPU cores, 1 to 4."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(4, cpus // 4))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_path("ocrdesk"))


def _private_dir(folder: Path) -> None:
    """Create `folder` (and parents) and make it 0700: the user's alone, whatever the umask."""
    folder.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR)
    if stat.S_IMODE(folder.stat().st_mode) != _PRIVATE_DIR:
        folder.chmod(_PRIVATE_DIR)


def _private_log_dir(config: LocalServerConfig) -> Path:
    """The log folder, 0700 (and the state folder above the default one); older logs made 0600.

    Logs written before OCRDesk made them private may hold a key in vLLM's printed arguments.
    """
    if config.log_dir is not None:
        log_dir = config.log_dir
    else:
        _private_dir(_state_dir())
        log_dir = _state_dir() / "logs"
    _private_dir(log_dir)
    for old in log_dir.glob("vllm-*.log"):
        with contextlib.suppress(OSError):
            if stat.S_IMODE(old.lstat().st_mode) & ~_PRIVATE_FILE and not old.is_symlink():
                old.chmod(_PRIVATE_FILE)
    return log_dir


def _open_private(path: Path) -> IO[bytes]:
    """A new file for writing, 0600 whatever the umask (created so: never readable by others)."""
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), _PRIVATE_FILE
    )
    os.fchmod(fd, _PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def _loopback_client() -> Any:
    """A client for our own server on 127.0.0.1: never through a proxy named in the environment."""
    return httpx.AsyncClient(timeout=5.0, trust_env=False)


def _call_back(callback: Callable[[_T], object], value: _T) -> None:
    try:
        callback(value)
    except Exception:  # a broken callback must not stop the log reader
        log.exception("local server status callback failed")


# Every LocalServer with a live process, for the atexit hook.
_LIVE: weakref.WeakSet[LocalServer] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        server._terminate_now()


class LocalServer:
    """One local vLLM server: start it, know when it is ready, restart it, stop it.

    After `start()`: `url` (http://127.0.0.1:PORT/v1), `api_key`, `model`, `log_path`. A restart
    gives a new port and a new key: read `url` and `api_key` again after `ensure_running()`
    returns True.

    Its state: `current` (a ServerStatus), `state` (its ServerState); every change is given to
    `on_state`. `on_status` and `status` are the same as text (`str(current)`), for callers that
    have not moved to the typed state yet.
    """

    def __init__(
        self,
        config: LocalServerConfig,
        *,
        on_state: Callable[[ServerStatus], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        found_gpus: list[Gpu] | None = None,
    ) -> None:
        self.config = config
        # The GPUs found on the machine (None: found at each start, engine/gpus.py).
        self.found_gpus = found_gpus
        self.gpus: list[Gpu] = []  # the GPUs this server was started on; []: not chosen
        self.on_state = on_state
        self.on_status = on_status
        self.model = config.model
        self.current = ServerStatus(ServerState.STOPPED)
        self.port = 0
        self.url = ""
        self.api_key = ""
        self.log_path = Path()
        self.pid: int | None = None  # vLLM's own pid (its process group id too)
        self.last_failure: tuple[str, str] | None = None  # (reason, fix): last failed start/crash
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._log_file: IO[bytes] | None = None
        self._lines: deque[str] = deque(maxlen=_LOG_LINES)
        # (reason, fix) of the vLLM release the log named, when it is known to fail the model
        # (issue 18: 0.19.x answers DeepSeek-OCR with unrelated text); None until it is named.
        self._release: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False  # stop() is under way: a start that sees vLLM exit says so

    # -- state -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether the server process is alive (not whether it is ready)."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def state(self) -> ServerState:
        """The server's state (`current.state`)."""
        return self.current.state

    @property
    def status(self) -> str:
        """The state as text, `str(current)`: "ready", "loading weights", "failed: REASON"."""
        return str(self.current)

    def log_tail(self, lines: int = 50) -> str:
        """The last `lines` lines of the server's log (the API key masked)."""
        return "\n".join(list(self._lines)[-lines:])

    def _set_state(self, state: ServerState, message: str = "") -> None:
        status = ServerStatus(state, message)
        if status == self.current:
            return
        self.current = status
        log.info("local vLLM: %s", status)
        if self.on_state is not None:
            _call_back(self.on_state, status)
        if self.on_status is not None:
            _call_back(self.on_status, str(status))

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start vLLM and wait until it serves; EngineStartError (reason, fix, log tail) if not."""
        async with self._lock:
            if not self.is_running():
                await self._start()

    async def _start(self) -> None:
        await self._cleanup()
        config = self.config
        value, source = choose_vllm(config.vllm)
        argv = shlex.split(value)
        env = server_env(config)
        if not argv or shutil.which(argv[0], path=env.get("PATH")) is None:
            name = argv[0] if argv else ""
            raise EngineStartError(
                f"vLLM not found: {name!r} (from {source.value}) is not an executable",
                fix=NOT_FOUND_FIX,
            )
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.pid = None
        command = build_command(config, self.port)
        found = self.found_gpus
        if found is None:
            found = await asyncio.to_thread(find_gpus, env)
        self.gpus = pick_gpus(config.gpus, found)
        if self.gpus:
            env.update(cuda_env(self.gpus))
        env[API_KEY_ENV] = self.api_key  # readable by this user only: /proc/PID/environ is 0400
        if config.ngram_processor is NGramProcessor.BATCH:
            if not _BATCH_PROCESSOR_SOURCE.is_file():
                raise EngineStartError(
                    f"OCRDesk's n-gram logits processor is not in this installation "
                    f"({_BATCH_PROCESSOR_SOURCE} is missing)",
                    fix=f"set {NGRAM_PROCESSOR_ENV}=recipe to use vLLM's own processor, "
                    "or install OCRDesk again",
                )
            try:
                install_batch_processor(processor_dir(config))
            except OSError as exc:
                raise EngineStartError(
                    f"cannot put OCRDesk's n-gram logits processor where vLLM finds it: {exc}",
                    fix=f"make {processor_dir(config)} writable, or set "
                    f"{NGRAM_PROCESSOR_ENV}=recipe to use vLLM's own processor",
                ) from exc

        log_dir = _private_log_dir(config)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        on_gpus = "".join(f"-gpu{gpu.index}" for gpu in self.gpus)
        self.log_path = log_dir / f"vllm-{stamp}{on_gpus}.log"
        self._log_file = _open_private(self.log_path)
        shown = ["PYTHONPATH", *(cuda_env(self.gpus) if self.gpus else {})]
        settings = "".join(f"{name}={shlex.quote(env[name])} " for name in shown if name in env)
        header = f"# {API_KEY_ENV}={MASK} {settings}{shlex.join(command)}\n"
        self._log_file.write(mask_secret(header, self.api_key).encode())
        self._lines.clear()
        self._release = None
        self._set_state(ServerState.STARTING, "starting vLLM")

        try:
            self._proc = await self._spawn(command, env)
        except OSError as exc:
            self._log_file.close()
            self._log_file = None
            raise EngineStartError(f"cannot start vLLM: {exc}", fix=NOT_FOUND_FIX) from exc
        _LIVE.add(self)
        self._reader = asyncio.create_task(self._read_log(self._proc))
        try:
            await self._wait_ready(self._proc)
            if self.config.warm_up:
                await self._warm_up()
        except BaseException:
            await self._cleanup()
            raise
        self._set_state(ServerState.READY)

    async def _warm_up(self) -> None:
        """Send the reference page with a few output tokens before the server is called ready,
        alone and then `warm_up_batch` times at once (see WARM_UP_TOKENS, WARM_UP_BATCH). A
        warm-up that fails says so in the log and is not a failed start: the pages will meet
        whatever it met, with their own errors."""
        self._set_state(ServerState.STARTING, "warming up")
        client = ModelClient(self.url, api_key=self.api_key, timeout=WARM_UP_TIMEOUT)
        try:
            image = load_reference().data_url()
            served = await client.resolve_model()
            prompt = prompt_text(Task.MARKDOWN, family_of(served))
            sampling = Sampling(max_tokens=WARM_UP_TOKENS)
            await client.complete(image, prompt, sampling)
            together = range(self.config.warm_up_batch)
            batch = [client.complete(image, prompt, sampling) for _ in together]
            for outcome in await asyncio.gather(*batch, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        except (OCRDeskError, OSError) as exc:
            note = f"[ocrdesk] the warm-up request failed: {exc}"
            self._write_log(f"{note}\n".encode())
            self._lines.append(note)
        finally:
            await client.close()

    async def _spawn(self, command: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
        """Start `command` under the watchdog, output merged into one pipe."""
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(_WATCHDOG),
            "--grace",
            str(self.config.stop_timeout),
            "--",
            *command,
            stdin=asyncio.subprocess.PIPE,  # the lifeline: EOF tells the watchdog we are gone
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.start_timeout
        exited = asyncio.ensure_future(proc.wait())
        try:
            async with _loopback_client() as client:
                delay = 0.1
                while True:
                    if exited.done():
                        await self._fail(proc.returncode)
                    if self._release is not None and self._release[0]:
                        await self._refuse_release(*self._release)
                    if await self._answers(client):
                        return
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        await self._fail(None)
                    await asyncio.wait({exited}, timeout=min(delay, remaining))
                    delay = min(delay * 1.5, 1.0)
        finally:
            exited.cancel()

    async def _refuse_release(self, reason: str, fix: str) -> NoReturn:
        """Stop a vLLM whose release is known to answer this model wrongly: it would start,
        then read every page as unrelated text."""
        await self._terminate()
        await self._drain_log()
        self.last_failure = (reason, fix)
        self._set_state(ServerState.FAILED, reason)
        raise EngineStartError(reason, fix, self.log_tail(50))

    async def _answers(self, client: Any) -> bool:
        """GET /health is 200 and GET /v1/models (with the key) lists a model."""
        base = f"http://127.0.0.1:{self.port}"
        try:
            health = await client.get(f"{base}/health")
            if health.status_code != 200:
                return False
            models = await client.get(
                f"{base}/v1/models", headers={"Authorization": f"Bearer {self.api_key}"}
            )
            return models.status_code == 200 and bool(models.json().get("data"))
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    async def _fail(self, returncode: int | None) -> NoReturn:
        """Raise the EngineStartError that says why the start failed (process kept for cleanup)."""
        if returncode is None:  # timed out: stop it first so the log is complete
            await self._terminate()
        await self._drain_log()
        text = "\n".join(self._lines)
        if self._stopping:
            self._set_state(ServerState.STOPPED)
            raise EngineStartError("vLLM was stopped before it was ready", "", self.log_tail(50))
        if returncode is None:
            timeout = f"vLLM did not become ready within {self.config.start_timeout:g} s"
            known = known_failure(text, None)
            if known is not None:
                reason, fix = f"{timeout}; the log shows: {known[0]}", known[1]
            else:
                reason = f"{timeout} (last status: {self.status})"
                fix = (
                    "the first start downloads the model (about 6.7 GB) and compiles it, which can "
                    "take many minutes: allow more time (the start timeout setting), or read the "
                    f"log at {self.log_path}"
                )
        else:
            reason, fix = classify_failure(text, returncode, log_path=str(self.log_path))
        self.last_failure = (reason, fix)
        self._set_state(ServerState.FAILED, reason)
        raise EngineStartError(reason, fix, self.log_tail(50))

    # -- the log -----------------------------------------------------------------------------

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the server's output to the log file and the in-memory tail; report status.

        Whole lines only, the key masked in each: a key is never cut by a line end.
        """
        assert proc.stdout is not None
        pending = b""
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                if pending:
                    self._write_log(pending)
                    self._take_line(pending)
                return
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))  # in the new bytes only
            if end < 0:
                pending += chunk
                continue
            complete, pending = pending + chunk[: end + 1], chunk[end + 1 :]
            self._write_log(complete)
            # \r as well: progress bars (weights, CUDA graphs) redraw one line with it
            for line in re.split(rb"\r\n|\r|\n", complete):
                if line.strip():
                    self._take_line(line)

    def _write_log(self, data: bytes) -> None:
        if self._log_file is not None:
            self._log_file.write(mask_secret(data, self.api_key))
            self._log_file.flush()

    def _take_line(self, raw: bytes) -> None:
        line = mask_secret(raw.decode("utf-8", errors="replace").rstrip(), self.api_key)
        self._lines.append(line)
        if self.pid is None and (found := _WATCHDOG_PID.search(line)):
            self.pid = int(found.group(1))
            return
        if self._release is None and (version := vllm_version_in(line)) is not None:
            self._release = release_problem(version, self.config.model) or ("", "")
        status = status_from_line(line)
        # "ready" is ours to say, after the checks; once said it stays: with several API server
        # processes, the others log their start-up after the first pages are answered.
        ready = self.current.state is ServerState.READY
        if status is not None and status != "ready" and not ready:
            self._set_state(ServerState.STARTING, status)

    async def _drain_log(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 5.0)

    # -- stop --------------------------------------------------------------------------------

    def _terminate_now(self) -> None:
        """Synchronous: ask the watchdog to stop vLLM (atexit; works without an event loop)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGTERM)

    async def _terminate(self) -> None:
        """SIGTERM the watchdog (it stops vLLM's group: TERM, grace, KILL); SIGKILL if it hangs."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._terminate_now()
        try:
            await asyncio.wait_for(proc.wait(), self.config.stop_timeout + 5.0)
        except asyncio.TimeoutError:
            log.warning("watchdog did not stop in time: killing it and vLLM's process group")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            await proc.wait()

    async def _cleanup(self) -> None:
        """Stop the process if it runs, finish the log, forget the process."""
        if self._proc is None:
            return
        await self._terminate()
        await self._drain_log()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        if self._log_file is not None:
            self._log_file.close()
        self._reader = None
        self._log_file = None
        self._proc = None
        _LIVE.discard(self)

    async def stop(self) -> None:
        """Stop the server and everything it spawned. Safe to call more than once.

        It also interrupts a start in progress: that `start()` raises EngineStartError ("stopped
        before it was ready") instead of waiting out its timeout.
        """
        self._stopping = True
        try:
            if self.is_running():
                self._set_state(ServerState.STOPPING)
                await self._terminate()  # outside the lock, which a start may hold for minutes
            async with self._lock:
                if self._proc is not None:
                    await self._cleanup()
                    self._set_state(ServerState.STOPPED)
        finally:
            self._stopping = False

    # -- restart -----------------------------------------------------------------------------

    async def ensure_running(self) -> bool:
        """Make sure the server runs; start it again if it died. True if it (re)started it.

        A process that is alive but does not answer /health is given 5 s to finish dying (a
        crash being reaped); if it is still alive then, it is left alone (it may only be busy).
        Restarts are tried `restart_tries` times with exponential backoff; then EngineStartError.
        """
        async with self._lock:
            if self.is_running() and await self._alive_or_dying():
                return False
            if self._proc is not None:
                returncode = self._proc.returncode
                await self._drain_log()
                self.last_failure = classify_failure(
                    "\n".join(self._lines), returncode, log_path=str(self.log_path)
                )
                self._set_state(ServerState.RESTARTING, self.last_failure[0])
                log.warning("local vLLM died (%s): restarting", self.last_failure[0])
            error: EngineStartError | None = None
            for attempt in range(max(1, self.config.restart_tries)):
                if attempt:
                    await asyncio.sleep(self.config.restart_backoff * 2 ** (attempt - 1))
                try:
                    await self._start()
                    return True
                except EngineStartError as exc:
                    error = exc
            assert error is not None
            raise EngineStartError(
                f"vLLM could not be restarted ({self.config.restart_tries} tries): {error.reason}",
                error.fix,
                error.log_tail,
            )

    async def _alive_or_dying(self) -> bool:
        """True if the live process answers /health, or stays alive 5 s; False if it exits."""
        proc = self._proc
        assert proc is not None
        try:
            async with _loopback_client() as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/health")
                if response.status_code == 200:
                    return True
        except httpx.HTTPError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except asyncio.TimeoutError:
            return True
        return False

    # -- context manager -----------------------------------------------------------------------

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
