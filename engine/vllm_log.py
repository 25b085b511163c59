"""Reading a `vllm serve` log: progress for people, and a reason plus a fix when it fails.

Pure functions (no I/O), so the supervisor, the doctor and tests share them:

- `status_from_line(line)` turns one log line into a short status a person understands
  ("loading weights", "compiling (torch.compile)", ...) or None when the line says nothing new.
- `classify_failure(log, returncode)` looks at the whole log (or its tail) and the exit status and
  returns `(reason, fix)`. It never answers a bare "failed": when nothing is recognised it still
  says how the process ended and quotes the last error-looking line.
- `fix_environment(log, returncode)`: the environment variables whose setting is the fix of the
  recognised failure (e.g. VLLM_USE_V2_MODEL_RUNNER=0), for a start tried again with them.
- `vllm_version_in(line)` reads the release from vLLM's start-up line, and
  `release_problem(version, model)` says why a release is known to fail the model's family (0.19.x
  answers DeepSeek-OCR with gibberish) and what to install instead: a start that works is not
  enough to trust such a release.
- `mask_secret(text, secret)` hides the server's API key in a log line or chunk: every log line
  OCRDesk writes to a file or shows (GUI, CLI, an error's log tail) goes through it first.

The patterns come from real vLLM messages (vLLM 0.11 to 0.24, the Hugging Face hub client, PyTorch)
and from the failures recorded on the project's GPU machine (shared/gpu/RESULTS.md): flashinfer
missing, the FlashAttention SIGFPE, the illegal memory access at warm-up and the xgrammar /
apache-tvm-ffi mismatch; and from vLLM's own source where no log was at hand: Model Runner V2's
logits-processor loader (vllm/v1/worker/gpu/sample/logits_processor/loader.py, vLLM PR 56497)
refuses a processor written for the V1 runner's interface, as both n-gram processors are.
Rules are tried in order, most specific root cause first: a log that shows `No module named
'flashinfer'` also shows the engine core dying, and the first is what to fix.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

from .tasks import DEFAULT_MODEL, FAMILIES, ModelFamily, family_of

__all__ = [
    "KNOWN_GOOD_VLLM",
    "MASK",
    "OCR2_MIN_VLLM",
    "V2_RUNNER_ENV",
    "classify_failure",
    "fix_environment",
    "known_failure",
    "mask_secret",
    "release_problem",
    "signal_name",
    "status_from_line",
    "vllm_version_in",
]

#: The vLLM releases known to serve each family (the registry in engine/tasks.py owns them).
KNOWN_GOOD_VLLM = FAMILIES[ModelFamily.DEEPSEEK_OCR].vllm.requirement
OCR2_MIN_VLLM = FAMILIES[ModelFamily.DEEPSEEK_OCR_2].vllm.minimum
_OCR2_GOOD_VLLM = FAMILIES[ModelFamily.DEEPSEEK_OCR_2].vllm.requirement
#: vLLM's switch between its model runners (vllm/envs.py): "0" keeps the V1 runner, which takes
#: logits processors written for vllm.v1.sample.logits_processor.LogitsProcessor.
V2_RUNNER_ENV = "VLLM_USE_V2_MODEL_RUNNER"

#: What a masked secret reads as in a log.
MASK = "***"


@overload
def mask_secret(text: str, secret: str) -> str: ...
@overload
def mask_secret(text: bytes, secret: str) -> bytes: ...
def mask_secret(text: str | bytes, secret: str) -> str | bytes:
    """`text` with every occurrence of `secret` replaced by MASK; an empty secret masks nothing."""
    if not secret:
        return text
    if isinstance(text, bytes):
        return text.replace(secret.encode(), MASK.encode())
    return text.replace(secret, MASK)


_INSTALL_FIX = (
    f"install a vLLM in the known-good range ({KNOWN_GOOD_VLLM} for DeepSeek-OCR, "
    f"{_OCR2_GOOD_VLLM} for DeepSeek-OCR-2), e.g. `pip install 'vllm{KNOWN_GOOD_VLLM}'` "
    "in vLLM's own environment"
)
_MEMORY_FIX = (
    "lower --max-model-len (e.g. 4096) or --max-num-seqs, raise --gpu-memory-utilization "
    "(e.g. 0.95), or free the GPU (close other programs using it; see nvidia-smi)"
)


@dataclass(frozen=True)
class _Rule:
    """One recognisable failure: any pattern matching the log (or `when`) selects it."""

    patterns: tuple[str, ...]
    reason: str
    fix: str
    when: Callable[[int | None], bool] | None = None
    #: The environment variables the fix sets, for a start tried again with them.
    env: tuple[tuple[str, str], ...] = ()

    def match(self, log: str, returncode: int | None) -> re.Match[str] | bool | None:
        for pattern in self.patterns:
            found = re.search(pattern, log, re.IGNORECASE | re.MULTILINE)
            if found:
                return found
        if self.when is not None and self.when(returncode):
            return True
        return None


def _is_signal(number: int) -> Callable[[int | None], bool]:
    return lambda rc: rc is not None and (rc == -number or rc == 128 + number)


_RULES: tuple[_Rule, ...] = (
    _Rule(
        # The loader's ValueError names the class (or the entry-point plugin) it refuses.
        (
            r"(?P<cls>[\w.:-]+) is not a subclass of "
            r"vllm\.v1\.worker\.gpu\.sample\.logits_processor\.LogitsProcessor",
        ),
        "this vLLM runs its Model Runner V2, which refuses the logits processor {cls}: it is "
        "written for the V1 runner's interface, as both n-gram processors are (vLLM PR 56497)",
        f"set {V2_RUNNER_ENV}=0 in the server's environment: vLLM's V1 runner takes the "
        "processor (vLLM 0.24 and older chose that runner by themselves). "
        "OCRDESK_NGRAM_PROCESSOR=recipe does not help (the recipe's processor is V1-only too); "
        f"or {_INSTALL_FIX}",
        env=((V2_RUNNER_ENV, "0"),),
    ),
    _Rule(
        (r"load_lib_module\(\) got an unexpected keyword argument 'extra_lib_paths'",),
        "xgrammar is newer than the apache-tvm-ffi that vLLM pins (load_lib_module() got an "
        "unexpected keyword argument 'extra_lib_paths')",
        "pin xgrammar to the version vLLM was built with: `pip install xgrammar==0.2.5.post1` "
        "in vLLM's environment",
    ),
    _Rule(
        (r"No module named '?flashinfer",),
        "vLLM's sampler needs flashinfer, which is not installed",
        "set VLLM_USE_FLASHINFER_SAMPLER=0 in the server's environment (or install flashinfer "
        "matching your vLLM and CUDA)",
        env=(("VLLM_USE_FLASHINFER_SAMPLER", "0"),),
    ),
    _Rule(
        (r"(No module named '?ocrdesk_ngram_logits|ocrdesk_ngram_logits[^\n]*(Error|failed))",),
        "vLLM could not load OCRDesk's batch n-gram processor (engine/ngram_logits.py)",
        "set OCRDESK_NGRAM_PROCESSOR=recipe to use vLLM's own NGramPerReqLogitsProcessor, and "
        "report the vLLM version (docs/ngram-logits.md)",
    ),
    _Rule(
        (r"No module named '?vllm\.model_executor\.models\.deepseek_ocr",),
        "this vLLM is too old for DeepSeek-OCR: it has no deepseek_ocr module "
        "(needed for the NGramPerReqLogitsProcessor)",
        _INSTALL_FIX,
    ),
    _Rule(
        (r"Model architectures \['(?P<arch>DeepseekOCR2?\w*)'\][^\n]*(not supported|failed)",),
        "this vLLM does not support the model's architecture {arch}",
        _INSTALL_FIX,
    ),
    _Rule(
        (r"unexpected keyword argument 'tokenization_kwargs'",),
        "vLLM and the model's processing code do not match (unexpected keyword argument "
        "'tokenization_kwargs'): the vLLM version is outside the range known to work",
        _INSTALL_FIX,
    ),
    _Rule(
        (r"error: unrecognized arguments: (?P<args>[^\n]*)",),
        "this vLLM does not know the option(s) {args}: it is too old (or too new) for OCRDesk",
        _INSTALL_FIX + "; or remove the option from the extra arguments in the settings",
    ),
    _Rule(
        (r"No module named '?vllm'?(?!\.)",),
        "vLLM is not installed in the Python environment the server command runs",
        "install vLLM in its own environment and point OCRDESK_VLLM or --vllm (the window: "
        "Settings, vLLM executable) at that environment's `vllm` executable",
    ),
    _Rule(
        (
            r"\[Errno 98\][^\n]*",
            r"Address already in use",
            r"error while attempting to bind on address",
        ),
        "the server's port is already in use by another program",
        "start again (OCRDesk picks a fresh free port each time); if it keeps happening, "
        "look for a stray `vllm serve` and stop it",
    ),
    _Rule(
        (
            r"gated repo",
            r"Access to model [^\n]* is restricted",
            r"401 Client Error",
            r"Repository Not Found",
            r"RepositoryNotFoundError",
            r"Invalid repository ID or local directory",
        ),
        "the model could not be found on the Hugging Face hub (wrong id, private/gated model, "
        "or not logged in)",
        f"check the model id ({DEFAULT_MODEL}), log in with `hf auth login` if the "
        "model needs it, or point the model setting to a local folder that holds config.json",
    ),
    _Rule(
        (
            r"We couldn't connect to 'https://huggingface\.co'",
            r"LocalEntryNotFoundError",
            r"Max retries exceeded with url: /api/models",
            r"Failed to resolve '[^']*huggingface\.co'",
            r"Cannot find the requested files in the (disk|local) cache",
            r"outgoing traffic has been disabled",
        ),
        "the model is not in the local cache and the Hugging Face hub cannot be reached",
        f"download it once while online (e.g. `hf download {DEFAULT_MODEL}`), "
        "or point the model setting to a local folder that holds it",
    ),
    _Rule(
        (r"(?P<path>\S+) does not appear to have a file named config\.json",),
        "{path} is not a model folder: it has no config.json",
        "point the model setting to the folder that holds config.json and the *.safetensors "
        f"files, or use the hub id {DEFAULT_MODEL}",
    ),
    _Rule(
        (
            r"No CUDA GPUs are available",
            r"Failed to infer device type",
            r"libcuda\.so[.\d]*: cannot open shared object file",
            r"Found no NVIDIA driver on your system",
            r"CUDA driver version is insufficient",
            r"Torch not compiled with CUDA enabled",
            r"RuntimeError: No CUDA GPUs",
            r"NVIDIA driver on your system is too old",
        ),
        "no usable NVIDIA GPU: vLLM found no CUDA device (no GPU, no driver, or "
        "CUDA_VISIBLE_DEVICES hides it)",
        "run nvidia-smi to check the GPU and driver; install the NVIDIA driver or a vLLM build "
        "that matches it; or use a remote server with --server",
    ),
    _Rule(
        (r"Free memory on device[^\n]*less than desired GPU memory utilization",),
        "not enough free GPU memory: other programs already use part of the GPU, less is free "
        "than --gpu-memory-utilization asks for",
        "lower --gpu-memory-utilization (e.g. 0.7) or free the GPU (close other programs using "
        "it; see nvidia-smi)",
    ),
    _Rule(
        (
            r"No available memory for the cache blocks",
            r"larger than the maximum number of tokens that can be stored in KV cache",
            r"larger than the available KV cache memory",
            r"not enough KV cache",
        ),
        "out of GPU memory for the KV cache: after the model's weights there is too little "
        "memory left for --max-model-len",
        _MEMORY_FIX,
    ),
    _Rule(
        (r"CUDA out of memory", r"torch\.OutOfMemoryError", r"torch\.cuda\.OutOfMemoryError"),
        "out of GPU memory (CUDA out of memory)",
        _MEMORY_FIX,
    ),
    _Rule(
        (r"an illegal memory access was encountered", r"an illegal memory access"),
        "the GPU hit an illegal memory access during warm-up (seen with vLLM's default "
        "--max-num-batched-tokens)",
        "set --max-num-batched-tokens 16384 (or try --enforce-eager)",
    ),
    _Rule(
        (r"Floating point exception", r"get_scheduler_metadata"),
        "the FlashAttention backend crashed with a floating point exception (SIGFPE)",
        "use another attention backend: --attention-backend TRITON_ATTN",
        when=_is_signal(int(signal.SIGFPE)),
    ),
)


def signal_name(number: int) -> str:
    """`9` -> "SIGKILL"; unknown numbers -> "signal 77"."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_error_line(log: str) -> str:
    for line in reversed(log.splitlines()):
        if re.search(r"error|exception|traceback|fatal|killed", line, re.IGNORECASE):
            text = line.strip()
            return text if len(text) <= 300 else text[:297] + "..."
    return ""


def _how_it_ended(returncode: int | None) -> tuple[str, str]:
    """Reason and fix when no rule matched: say how the process ended."""
    if returncode is None:
        return "vLLM did not finish starting", ""
    # A shell wrapper reports a child killed by signal N as exit status 128 + N.
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if not number:
        return f"vLLM exited with code {returncode}", ""
    name = signal_name(number)
    if returncode < 0:
        reason = f"vLLM was killed by {name}"
    else:
        reason = f"vLLM exited with code {returncode} (killed by {name}, as a wrapper reports it)"
    if number == signal.SIGKILL:
        return (
            reason + ", often the system's out-of-memory killer (not enough RAM)",
            "check `journalctl -k` or `dmesg` for 'Out of memory'; close other programs or "
            "lower --max-num-seqs",
        )
    return reason, ""


def _first_rule(log: str, returncode: int | None) -> tuple[_Rule, dict[str, str]] | None:
    for rule in _RULES:
        found = rule.match(log, returncode)
        if found:
            groups = found.groupdict() if isinstance(found, re.Match) else {}
            return rule, {k: (v or "").strip() for k, v in groups.items()}
    return None


def known_failure(log: str, returncode: int | None) -> tuple[str, str] | None:
    """(reason, fix) of the first recognised failure in `log`, or None if none is recognised."""
    first = _first_rule(log, returncode)
    if first is None:
        return None
    rule, groups = first
    return rule.reason.format(**groups), rule.fix


def fix_environment(log: str, returncode: int | None) -> dict[str, str]:
    """The environment variables that fix the failure `known_failure` recognises in `log`
    ({} when it recognises none, or its fix is not a variable)."""
    first = _first_rule(log, returncode)
    return dict(first[0].env) if first is not None else {}


_VERSION_LINE = re.compile(
    r"vLLM API server version v?(?P<api>[0-9][\w.+-]*)|"
    r"Initializing a V1 LLM engine \(v(?P<engine>[0-9][\w.+-]*)\)"
)


def vllm_version_in(line: str) -> str | None:
    """The vLLM release a start-up line names ("vLLM API server version 0.19.0"), or None."""
    found = _VERSION_LINE.search(line)
    return (found.group("api") or found.group("engine")) if found else None


def release_problem(version: str, model: str) -> tuple[str, str] | None:
    """(reason, fix) when vLLM `version` is known to fail `model`'s family, else None."""
    spec = FAMILIES[family_of(model)]
    why = spec.vllm.broken_why(version)
    if why is None:
        return None
    return (
        f"vLLM {version} {why}",
        f"install a vLLM in the known-good range for {spec.title}: `pip install "
        f"'vllm{spec.vllm.requirement}'` in vLLM's environment ({spec.vllm.newest_tried} serves "
        "it on the project's GPU machine)",
    )


def classify_failure(
    log: str, returncode: int | None, *, log_path: str | None = None
) -> tuple[str, str]:
    """Say why vLLM failed, and what to do about it, from its log text and exit status.

    `returncode` follows asyncio/subprocess: negative for a signal, None if still running (a
    timeout). `log_path`, if given, is named in the fix where the log is the only clue.
    """
    known = known_failure(log, returncode)
    if known is not None:
        return known
    reason, fix = _how_it_ended(returncode)
    last = _last_error_line(log)
    if last:
        reason = f"{reason}; last error: {last}"
    where = f"the full log at {log_path}" if log_path else "the server log"
    return reason, "; ".join(part for part in (fix, f"read {where} for the cause") if part)


# status_from_line: (pattern, status); first match wins. Progress lines of vLLM 0.11 .. 0.24.
_STATUS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), status)
    for pattern, status in (
        (r"Application startup complete", "ready"),
        (
            r"Starting vLLM API server|Started server process|Available routes are",
            "starting API server",
        ),
        # Before the others: the engine's config line names compile and cache settings too.
        (
            r"vLLM API server version|Initializing a V1 LLM engine|non-default args|"
            r"Resolved architecture|Automatically detected platform",
            "starting vLLM",
        ),
        (
            r"Starting to load model|Loading weights|Loading safetensors|Model loading took|"
            r"Loading model weights",
            "loading weights",
        ),
        (r"Fetching \d+ files|Downloading|\.safetensors:\s+\d+%", "downloading the model"),
        (
            r"Capturing CUDA graph|Capturing cudagraph|Graph capturing finished",
            "capturing CUDA graphs",
        ),
        (
            r"torch\.compile|Compiling a graph|Dynamo bytecode transform|compile_fx|"
            r"Directly load the compiled graph|Cache the graph",
            "compiling (torch.compile)",
        ),
        (
            r"Available KV cache memory|GPU KV cache size|Memory profiling|KV cache blocks|"
            r"Maximum concurrency for",
            "allocating KV cache",
        ),
    )
)


def status_from_line(line: str) -> str | None:
    """A person-readable status for one vLLM log line, or None if the line is not a milestone."""
    for pattern, status in _STATUS:
        if pattern.search(line):
            return status
    return None
