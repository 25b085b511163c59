"""`ocrdesk doctor`: check that this machine can run OCRDesk, and say what to fix if not.

    checks = await run_checks(model=None, server=None, api_key=None, vllm=None)
    print(format_checks(checks)); sys.exit(doctor_exit_code(checks))

Always: the Python version, and whether the desktop window can open (only the GUI needs it: not
required): gui/platform_check, run in its own process, starts a QApplication as `ocrdesk` would
and names every system library Qt's platform plugin lacks, with one command that installs them.
Local mode (no server): the vLLM executable, resolved as the supervisor does (engine.local_server),
and its version against the known-good range; the NVIDIA GPUs and their free memory (nvidia-smi);
the model, either a local folder with config.json or the Hugging Face cache; when it is not cached
yet, whether the hub answers and whether the cache's disk has room for the download.
Remote mode (a server URL): GET {server}/models answers (with the key) and lists the model; the
vLLM release it runs, where it says (GET /version), against the releases known to fail the model.
With `check_answer` (`ocrdesk doctor --check-server URL`) it is also sent the reference page
(engine/reference_page.py) and its answer must have the reference answer's shape: grounding
tags, boxes within 0..999, the page's own words; a server that starts and answers gibberish (vLLM
0.19.x, dummy weights) fails here and nowhere else.

Nothing here imports Qt or vLLM: PySide6 is looked up with importlib.util.find_spec and the window
is tried in a child process; vLLM is asked for its version in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import ModelClient, api_base
from .errors import ServerError
from .local_group import gpu_report
from .local_server import (
    NOT_FOUND_FIX,
    LocalServerConfig,
    choose_vllm,
    httpx,
    model_family,
)
from .reference_page import judge, load_reference
from .tasks import FAMILIES, VLLM_RANGE, Sampling, Task, family_of, prompt_text
from .vllm_log import KNOWN_GOOD_VLLM, V2_RUNNER_ENV, release_problem

__all__ = [
    "Check",
    "check_reference_answer",
    "check_served_release",
    "doctor_exit_code",
    "format_checks",
    "run_checks",
]

MIN_PYTHON = (3, 10)
MODEL_DOWNLOAD_GB = 6.7
DISK_NEEDED_GB = 15.0
MIN_GPU_FREE_GIB = 8.0  # DeepSeek-OCR's weights (~6.7 GB) plus a little KV cache
VERSION_TIMEOUT = 60.0  # `vllm --version` imports torch: seconds, not milliseconds
HTTP_TIMEOUT = 5.0
SMI_TIMEOUT = 15.0  # nvidia-smi can take seconds when the driver wakes the GPUs
#: The reference page's answer is about 400 tokens; a looping or gibberish one stops here.
REFERENCE_MAX_TOKENS = 2048
#: Seconds for the reference page's whole answer (a busy shared server may queue it a while).
REFERENCE_TIMEOUT = 300.0
REFERENCE = "reference page"
#: Prints a PlatformCheck as JSON, exits 0 when the window can open (gui/platform_check.py).
WINDOW_CHECK_MODULE = "ocrdesk.gui.platform_check"
WINDOW_CHECK_TIMEOUT = 90.0  # more than the check's own limit for its QApplication (60 s)
WINDOW = "GUI window"


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


# -- helpers --------------------------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...] | None:
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if found is None:
        return None
    return tuple(int(part or 0) for part in found.groups())


def _required_version(text: str) -> tuple[int, ...]:
    version = _version_tuple(text)
    assert version is not None, text
    return version


async def _run(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """Run argv; (returncode, stdout+stderr). returncode None: could not run, or timed out."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return None, str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return None, f"no answer within {timeout:g} s"
    return proc.returncode, out.decode("utf-8", errors="replace").strip()


def _shebang_python(executable: str) -> str | None:
    """The interpreter a console script such as `vllm` runs with (its #! line), if a Python."""
    try:
        with open(executable, "rb") as file:
            first = file.readline(512).decode("utf-8", errors="replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and words[0].endswith("/env"):
        words = words[1:]
    if words and "python" in Path(words[0]).name:
        return shutil.which(words[0]) or words[0]
    return None


def _hub_cache() -> Path:
    """Where huggingface_hub keeps downloads (HF_HUB_CACHE, HF_HOME/hub, XDG, ~/.cache)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# -- the checks -----------------------------------------------------------------------------------


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check(
        "Python",
        ok,
        f"{version} ({sys.executable})",
        "" if ok else f"use Python {'.'.join(map(str, MIN_PYTHON))} or newer",
    )


async def check_window() -> Check:
    """Whether the desktop window can open here (see the module docstring)."""
    if importlib.util.find_spec("PySide6") is None:
        return Check(
            WINDOW,
            False,
            "PySide6 is not installed: the desktop window cannot open (the CLI works without it)",
            "pip install 'PySide6>=6.6' in OCRDesk's environment",
            required=False,
        )
    returncode, output = await _run(
        [sys.executable, "-m", WINDOW_CHECK_MODULE], WINDOW_CHECK_TIMEOUT
    )
    return window_check(returncode, output)


def window_check(returncode: int | None, output: str) -> Check:
    """The doctor's line for what `python -m ocrdesk.gui.platform_check` answered: its exit
    status and output, the last line a PlatformCheck as JSON."""
    found: Any = None
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found = json.loads(line)
            break
    if not isinstance(found, dict) or "ok" not in found:
        last = output.splitlines()[-1] if output else "no output"
        return Check(
            WINDOW,
            False,
            f"could not tell whether the window opens ({last})"[:300],
            f"run `{sys.executable} -m {WINDOW_CHECK_MODULE}` to see why",
            required=False,
        )
    if found["ok"] is True and returncode == 0:
        return Check(WINDOW, True, "Qt can open the window here", required=False)
    missing = [str(name) for name in found.get("missing_libraries") or []]
    error = str(found.get("error") or "").strip()
    if missing:
        why = "Qt's platform plugin cannot load " + ", ".join(missing)
    elif not found.get("display"):
        why = "no display to open it on"
    else:
        why = error.splitlines()[-1] if error else "Qt could not start"
    return Check(
        WINDOW,
        False,
        f"the window cannot open: {why}"[:300],
        str(found.get("fix") or "see the error above"),
        required=False,
    )


async def check_vllm(vllm: str | None, model: str) -> list[Check]:
    """The vLLM executable, and its version against the known-good range."""
    value, source = choose_vllm(vllm)
    argv = shlex.split(value)
    path = shutil.which(argv[0]) if argv else None
    if path is None:
        name = argv[0] if argv else "(empty)"
        why = f"{name!r} (from {source.value}) is not an executable"
        return [Check("vLLM", False, why, NOT_FOUND_FIX)]
    found = Check("vLLM", True, " ".join([path, *argv[1:]]))

    returncode, output = await _run([*argv, "--version"], VERSION_TIMEOUT)
    version = _version_tuple(output.splitlines()[-1]) if returncode == 0 and output else None
    if version is None and (python := _shebang_python(path)):
        returncode, output = await _run(
            [python, "-c", "import vllm; print(vllm.__version__)"], VERSION_TIMEOUT
        )
        version = _version_tuple(output.splitlines()[-1]) if returncode == 0 and output else None
    if version is None:
        last = output.splitlines()[-1] if output else "no output"
        return [
            found,
            Check(
                "vLLM version",
                False,
                f"could not tell ({last})",
                f"check that `{' '.join(argv)} --version` works; vLLM {KNOWN_GOOD_VLLM} is needed",
            ),
        ]

    shown = ".".join(map(str, version))
    family = FAMILIES[model_family(model)]
    minimum = family.vllm.minimum
    model_name = family.title
    if version < _required_version(minimum):
        return [
            found,
            Check(
                "vLLM version",
                False,
                f"{shown} is too old for {model_name} (needs >={minimum})",
                f"pip install 'vllm{family.vllm.requirement}' in vLLM's environment",
            ),
        ]
    problem = release_problem(shown, model)
    if problem is not None:
        return [found, Check("vLLM version", False, *problem)]
    detail = f"{shown} (known good for {model_name}: >={minimum})"
    if version[:2] > _required_version(VLLM_RANGE.newest_tried)[:2]:
        detail += (
            f"; newer than the newest tried here ({VLLM_RANGE.newest_tried}): if it refuses the "
            f"n-gram processor (Model Runner V2), {V2_RUNNER_ENV}=0 keeps its V1 runner"
        )
    return [found, Check("vLLM version", True, detail)]


async def check_gpu() -> list[Check]:
    """NVIDIA GPUs and their memory, from nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [
            Check(
                "GPU",
                False,
                "nvidia-smi not found: no NVIDIA driver on this machine",
                "install the NVIDIA driver (nvidia-smi comes with it), or use a remote server "
                "with --server",
            )
        ]
    query = "--query-gpu=name,memory.total,memory.free"
    returncode, output = await _run([smi, query, "--format=csv,noheader,nounits"], SMI_TIMEOUT)
    gpus: list[tuple[str, float, float]] = []
    for line in output.splitlines() if returncode == 0 else []:
        parts = [part.strip() for part in line.split(",")]
        with contextlib.suppress(ValueError):
            gpus.append((parts[0], float(parts[1]) / 1024, float(parts[2]) / 1024))
    if not gpus:
        return [
            Check(
                "GPU",
                False,
                f"nvidia-smi found no usable GPU: {output or 'no output'}"[:300],
                "check the NVIDIA driver (run nvidia-smi), or use a remote server with --server",
            )
        ]
    listing = "; ".join(
        f"{i}: {name}, {free:.1f} of {total:.1f} GiB free"
        for i, (name, total, free) in enumerate(gpus)
    )
    best_free = max(free for _, _, free in gpus)
    checks = [
        Check(
            "GPU",
            best_free >= MIN_GPU_FREE_GIB,
            listing,
            ""
            if best_free >= MIN_GPU_FREE_GIB
            else f"DeepSeek-OCR needs about {MIN_GPU_FREE_GIB:g} GiB of free GPU memory: close "
            "programs using the GPU, or use a remote server with --server",
        )
    ]
    _, total, free = max(gpus, key=lambda gpu: gpu[2])
    if free < 0.9 * total:  # vLLM's default --gpu-memory-utilization 0.9 would fail
        suggest = max(0.1, int(free / total * 20) / 20 - 0.05)
        checks.append(
            Check(
                "GPU memory for vLLM",
                False,
                f"{free:.1f} of {total:.1f} GiB free: less than vLLM's default "
                "--gpu-memory-utilization 0.9 asks for",
                f"set --gpu-memory-utilization {suggest:.2f} (settings), or free the GPU",
                required=False,
            )
        )
    return checks


async def check_model(model: str) -> list[Check]:
    """The model: a local folder, or the hub cache; else the hub and the disk for a download."""
    folder = Path(model).expanduser()
    looks_local = folder.is_absolute() or model.startswith((".", "~")) or folder.exists()
    if looks_local:
        if (folder / "config.json").is_file():
            weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
            return [
                Check(
                    "model",
                    weights,
                    f"local folder {folder}"
                    + ("" if weights else ": config.json but no *.safetensors weights"),
                    "" if weights else "copy the model's *.safetensors files into the folder",
                )
            ]
        return [
            Check(
                "model",
                False,
                f"{folder} is not a model folder (no config.json)",
                "point the model setting to the folder holding config.json and the weights, or "
                "use the hub id deepseek-ai/DeepSeek-OCR",
            )
        ]

    cache = _hub_cache()
    repo = cache / ("models--" + model.replace("/", "--"))
    snapshots = sorted(repo.glob("snapshots/*/config.json"))
    if snapshots and any(snapshots[-1].parent.glob("*.safetensors")):
        return [Check("model", True, f"{model} is in the Hugging Face cache ({repo})")]

    checks = []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        checks.append(
            Check(
                "model",
                False,
                f"{model} is not in the cache ({cache}) and HF_HUB_OFFLINE is set",
                f"download it once while online (`hf download {model}`), unset HF_HUB_OFFLINE, "
                "or point the model setting to a local folder",
            )
        )
    else:
        checks.append(await _check_hub(model, cache))
    where = _existing_parent(cache)
    free_gb = shutil.disk_usage(where).free / 1e9
    enough = free_gb >= DISK_NEEDED_GB
    checks.append(
        Check(
            "disk for the download",
            enough,
            f"{free_gb:.1f} GB free on {where} (the download is about {MODEL_DOWNLOAD_GB:g} GB; "
            f"{DISK_NEEDED_GB:g} GB wanted)",
            ""
            if enough
            else "free some disk space, or set HF_HOME (or HF_HUB_CACHE) to a disk with more "
            "room before the first start",
        )
    )
    return checks


async def _check_hub(model: str, cache: Path) -> Check:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    not_cached = f"{model} is not downloaded yet (cache: {cache})"
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(f"{endpoint}/api/models/{model}")
    except httpx.HTTPError as exc:
        return Check(
            "model",
            False,
            f"{not_cached}, and {endpoint} cannot be reached ({type(exc).__name__})",
            "connect to the network for the first start (it downloads about "
            f"{MODEL_DOWNLOAD_GB:g} GB), or download the model elsewhere and point the model "
            "setting to its folder",
        )
    if response.status_code == 200:
        return Check(
            "model",
            True,
            f"{not_cached}: the first start downloads about {MODEL_DOWNLOAD_GB:g} GB "
            f"from {endpoint}",
        )
    if response.status_code in (401, 403):
        fix = "log in with `hf auth login` (and accept the model's terms on its page)"
    else:
        fix = "check the model id (deepseek-ai/DeepSeek-OCR) or use a local folder"
    return Check(
        "model", False, f"{not_cached}; the hub answers HTTP {response.status_code} for it", fix
    )


async def check_remote(server: str, api_key: str | None, model: str | None) -> list[Check]:
    """GET {server}/models answers (with the key) and lists `model`."""
    url = api_base(server)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(f"{url}/models", headers=headers)
    except httpx.HTTPError as exc:
        return [
            Check(
                "server",
                False,
                f"{url} does not answer ({type(exc).__name__}: {exc})"[:300],
                "check the address and port, that the server runs, and that this machine can "
                "reach it (firewall, VPN)",
            )
        ]
    if response.status_code in (401, 403):
        return [
            Check(
                "server",
                False,
                f"{url} refuses the request (HTTP {response.status_code})",
                "give the server's API key with --api-key (or in the settings)"
                if not api_key
                else "the API key is wrong: use the one the server was started with",
            )
        ]
    served: list[str] = []
    try:
        data: Any = response.json()
        served = [str(entry["id"]) for entry in data.get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    if response.status_code != 200 or not served:
        return [
            Check(
                "server",
                False,
                f"{url}/models answers HTTP {response.status_code} without a model list",
                "is this an OpenAI-compatible server (vLLM, SGLang)? The address should end in /v1",
            )
        ]
    checks = [Check("server", True, f"{url} serves {', '.join(served)}")]
    checks += await check_served_release(url, headers, model or served[0])
    if model is not None:
        ok = model in served
        checks.append(
            Check(
                "model",
                ok,
                f"{model} is served" if ok else f"{model} is not among {', '.join(served)}",
                ""
                if ok
                else f"use one of the served models ({', '.join(served)}), or start "
                f"the server with {model}",
            )
        )
    return checks


async def check_served_release(url: str, headers: dict[str, str], model: str) -> list[Check]:
    """The vLLM release a server runs (vLLM answers GET /version beside /v1), if it is known to
    fail `model`; nothing when the server does not say or the release is not known to fail."""
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(f"{url.removesuffix('/v1')}/version", headers=headers)
        version = str(response.json()["version"]) if response.status_code == 200 else ""
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []
    problem = release_problem(version, model) if version else None
    return [Check("server's vLLM", False, *problem)] if problem is not None else []


async def check_reference_answer(server: str, api_key: str | None, model: str | None) -> Check:
    """Send the reference page (the family's markdown-with-boxes prompt) and measure the answer
    against the reference answer (engine/reference_page.py)."""
    try:
        reference = load_reference()
    except OSError as exc:
        return Check(
            REFERENCE,
            False,
            f"the reference page is not installed with OCRDesk ({exc})"[:300],
            "reinstall OCRDesk: its resources/reference/ folder is missing",
        )
    client = ModelClient(server, api_key=api_key, model=model, timeout=REFERENCE_TIMEOUT)
    try:
        served = await client.resolve_model()
        prompt = prompt_text(Task.MARKDOWN, family_of(served))
        sampling = Sampling(max_tokens=REFERENCE_MAX_TOKENS)
        answer = await client.complete(reference.data_url(), prompt, sampling)
    except ServerError as exc:
        return Check(REFERENCE, False, f"no answer for the reference page: {exc}"[:300], "")
    finally:
        await client.close()
    shape = judge(answer.text, reference, answer.finish_reason)
    took = f"{served} answered in {answer.seconds:.1f} s: {shape.summary()}"
    if not shape.problems:
        return Check(REFERENCE, True, took)
    spec = FAMILIES[family_of(served)]
    return Check(
        REFERENCE,
        False,
        f"{took}; " + "; ".join(shape.problems),
        f"the server answers pages wrongly: run a vLLM in the known-good range for {spec.title} "
        f"({spec.vllm.requirement}), with the model's real weights (not --load-format dummy), "
        f"and the model's own flags ({' '.join(spec.flags())})",
    )


async def run_checks(
    *,
    model: str | None,
    server: str | None,
    api_key: str | None,
    vllm: str | None,
    check_answer: bool = False,
) -> list[Check]:
    """Every check that applies: local mode when `server` is None, remote mode otherwise; with
    `check_answer` the server is sent the reference page too (when it answers and serves)."""
    window, rest = await asyncio.gather(
        check_window(), _mode_checks(model, server, api_key, vllm, check_answer)
    )
    return [check_python(), window, *rest]


async def _mode_checks(
    model: str | None,
    server: str | None,
    api_key: str | None,
    vllm: str | None,
    check_answer: bool = False,
) -> list[Check]:
    if server is not None:
        checks = await check_remote(server, api_key, model)
        # A release known to fail is no reason not to look: the answer shows how it fails.
        if check_answer and all(check.ok for check in checks if check.name in ("server", "model")):
            checks.append(await check_reference_answer(server, api_key, model))
        return checks
    model = model or LocalServerConfig().model
    parts = await asyncio.gather(check_vllm(vllm, model), check_gpu(), check_model(model))
    used = [Check(*fields) for fields in await asyncio.to_thread(gpu_report)]  # GPUs for vLLM
    return [check for part in (*parts, used) for check in part]


def format_checks(checks: list[Check]) -> str:
    """A plain-text table: mark, name, detail; the fix under each failure."""
    width = max((len(check.name) for check in checks), default=0)
    lines = []
    for check in checks:
        mark = "ok" if check.ok else "FAIL" if check.required else "warn"
        lines.append(f"[{mark:^4}] {check.name:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"{'':7}{'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)


def doctor_exit_code(checks: list[Check]) -> int:
    """0 if every required check passed, else 1."""
    return 0 if all(check.ok for check in checks if check.required) else 1
