"""A stand-in for the `vllm` executable: `vllm serve MODEL --host H --port P [--api-key K] ...`.

It prints vLLM-like start-up lines (what engine.vllm_log turns into statuses), then serves the
loopback OpenAI API of tests.fakes.openai_server.FakeOpenAIServer(model=MODEL, api_key=K) on H:P
in this process. The key comes as vLLM takes it: `--api-key K`, else $VLLM_API_KEY (vLLM's
api_server: `args.api_key or envs.VLLM_API_KEY`); neither: no key needed. Every other flag is
accepted and ignored (and recorded, see FAKE_VLLM_ARGS_FILE). `vllm --version` prints
FAKE_VLLM_VERSION (default 0.24.0). SIGTERM: exit 0, like vLLM.

Run it through the executable wrapper tests/fakes/vllm (it puts the repository on sys.path).

Knobs, all environment variables:

FAKE_VLLM_START_DELAY=S      seconds of "start-up" before it listens, spread over the log stages
                             (loading weights, compiling, CUDA graphs); default 0
FAKE_VLLM_NEVER_READY=1      print the start-up lines, then never listen (/health never answers)
FAKE_VLLM_CRASH_AT_START=T   print the text T (a log snippet; "{api_key}" in it becomes the
                             key) and exit 1 before listening
FAKE_VLLM_LATE_API_SERVERS=N after the first chat request is answered, log the start of N more
                             API server processes (as vLLM's --api-server-count ones do)
FAKE_VLLM_CRASH_AFTER=N      os._exit(1) after N completed chat requests, but only the first
                             time: it leaves FAKE_VLLM_STATE_DIR/crashed, and a restarted fake
                             that finds the marker runs normally
FAKE_VLLM_STATE_DIR=DIR      where the marker (and child.pid) go; default: the current directory
FAKE_VLLM_TOKEN_DELAY=S      seconds between streamed tokens (FakeOpenAIServer's token_delay)
FAKE_VLLM_ARGS_FILE=F        write the argv (after the program name) as a JSON list to F
FAKE_VLLM_SPAWN_CHILD=1      spawn a sleeping child process (like vLLM's engine core), in the
                             same process group, and write its pid to FAKE_VLLM_CHILD_PID_FILE
                             (default FAKE_VLLM_STATE_DIR/child.pid)
FAKE_VLLM_PID_FILE=F         write this process's pid to F
FAKE_VLLM_VERSION=V          what `vllm --version` prints
FAKE_VLLM_LOG_KEY=1          print the API key in the non-default args line, as a vLLM given
                             `--api-key` does
FAKE_VLLM_ACCESS_LOG=1       print an access-log line (as vLLM's uvicorn does) for each chat
                             request answered, so a test counts the requests each server took
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

VERSION = "0.24.0"


def _log(message: str, level: str = "INFO", where: str = "api_server.py:1") -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"(APIServer pid={os.getpid()}) {level} {stamp} [{where}] {message}", flush=True)


def _option(argv: list[str], name: str, default: str) -> str:
    """The value of `--name VALUE` or `--name=VALUE` in argv."""
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return default


def main(argv: list[str]) -> None:
    env = os.environ
    if argv[:1] == ["--version"]:
        print(env.get("FAKE_VLLM_VERSION", VERSION))
        return
    if not argv or argv[0] != "serve" or len(argv) < 2:
        print("usage: vllm serve MODEL [--host H] [--port P] [--api-key K] ...", file=sys.stderr)
        sys.exit(2)
    model = argv[1]
    host = _option(argv, "--host", "127.0.0.1")
    port = int(_option(argv, "--port", "8000"))
    api_key = _option(argv, "--api-key", "") or env.get("VLLM_API_KEY") or None
    state = Path(env.get("FAKE_VLLM_STATE_DIR", "."))

    if env.get("FAKE_VLLM_ARGS_FILE"):
        Path(env["FAKE_VLLM_ARGS_FILE"]).write_text(json.dumps(argv))
    if env.get("FAKE_VLLM_PID_FILE"):
        Path(env["FAKE_VLLM_PID_FILE"]).write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    _log(f"vLLM API server version {env.get('FAKE_VLLM_VERSION', VERSION)} (fake)")
    shown = f", 'api_key': [{api_key!r}]" if env.get("FAKE_VLLM_LOG_KEY") == "1" else ""
    _log(
        f"non-default args: {{'model_tag': {model!r}, 'port': {port}{shown}}}", where="utils.py:253"
    )
    if env.get("FAKE_VLLM_CRASH_AT_START"):
        print(env["FAKE_VLLM_CRASH_AT_START"].replace("{api_key}", api_key or ""), flush=True)
        sys.exit(1)

    if env.get("FAKE_VLLM_SPAWN_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(env.get("FAKE_VLLM_CHILD_PID_FILE", state / "child.pid")).write_text(str(child.pid))

    step = float(env.get("FAKE_VLLM_START_DELAY", "0")) / 4
    _log(f"Initializing a V1 LLM engine (v{VERSION}) with config: model={model!r}", where="core.py")
    _log(f"Starting to load model {model}...", where="gpu_model_runner.py")
    time.sleep(step)
    _log(f"Loading weights took {step:.2f} seconds", where="default_loader.py")
    _log("Compiling a graph for dynamic shape takes 0.50 s", where="backends.py")
    time.sleep(step)
    _log("Available KV cache memory: 58.12 GiB", where="gpu_worker.py")
    time.sleep(step)
    print("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%| 67/67", flush=True)
    time.sleep(step)

    if env.get("FAKE_VLLM_NEVER_READY") == "1":
        while True:
            time.sleep(3600)

    from tests.fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(
        model=model,
        api_key=api_key,
        token_delay=float(env.get("FAKE_VLLM_TOKEN_DELAY", "0")),
        host=host,
        port=port,
    )
    server.start()
    _log(f"Starting vLLM API server 0 on http://{host}:{port}")
    print("(APIServer) INFO:     Application startup complete.", flush=True)

    late = int(env.get("FAKE_VLLM_LATE_API_SERVERS", "0"))
    if late:  # vLLM's other API server processes log their start once the first is serving

        def log_late_servers() -> None:
            while server.completed < 1:
                time.sleep(0.02)
            for n in range(1, late + 1):
                _log(f"Starting vLLM API server {n} on http://{host}:{port}")
                pid = os.getpid() + n
                print(f"(APIServer pid={pid}) INFO:     Started server process", flush=True)

        threading.Thread(target=log_late_servers, daemon=True).start()

    if env.get("FAKE_VLLM_ACCESS_LOG") == "1":

        def log_requests() -> None:
            logged = 0
            while True:
                while logged < server.completed:
                    logged += 1
                    print(
                        f"(APIServer pid={os.getpid()}) INFO:     127.0.0.1:0 - "
                        f'"POST /v1/chat/completions HTTP/1.1" 200 OK',
                        flush=True,
                    )
                time.sleep(0.01)

        threading.Thread(target=log_requests, daemon=True).start()

    crash_after = int(env.get("FAKE_VLLM_CRASH_AFTER", "0"))
    marker = state / "crashed"
    if crash_after and not marker.exists():

        def crash_when_done() -> None:
            while server.completed < crash_after:
                time.sleep(0.02)
            time.sleep(0.2)  # `completed` counts before the answer is sent: let it go out
            marker.write_text("crashed once\n")
            _log("Engine core proc EngineCore_DP0 died unexpectedly, shutting down.", "ERROR")
            os._exit(1)

        threading.Thread(target=crash_when_done, daemon=True).start()

    while True:
        time.sleep(3600)
