"""The local vLLM supervisor against the fake `vllm` (tests/fakes/vllm): no GPU needed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import openai
import pytest

from ocrdesk.engine.errors import EngineStartError
from ocrdesk.engine.local_server import (
    LOGITS_PROCESSOR,
    LocalServer,
    LocalServerConfig,
    ServerState,
    ServerStatus,
    build_command,
    free_port,
    httpx,
    needs_trust_remote_code,
)

REPO = Path(__file__).resolve().parents[2]
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalServerConfig:
    # The fake's `#!/usr/bin/env python3` must find this interpreter (it has the fake's deps).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    for name in [name for name in os.environ if name.startswith("FAKE_VLLM_")]:
        monkeypatch.delenv(name)
    return LocalServerConfig(
        vllm=str(FAKE_VLLM),
        env={"FAKE_VLLM_STATE_DIR": str(tmp_path)},
        log_dir=tmp_path / "logs",
        start_timeout=30.0,
        stop_timeout=5.0,
        restart_backoff=0.1,
    )


def gone(pid: int) -> bool:
    """The process does not exist any more (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def chat(server: LocalServer) -> str:
    client = openai.AsyncOpenAI(base_url=server.url, api_key=server.api_key, max_retries=0)
    try:
        response = await client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "OCR this"}]
        )
    finally:
        await client.close()
    return response.choices[0].message.content or ""


# LocalServer.ensure_running warns once per restart of a server that died.
RESTART_WARNING = r"^local vLLM died \(.+\): restarting$"


# -- the command ------------------------------------------------------------------------------


def test_build_command_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    command = build_command(LocalServerConfig(), 8123)
    assert command == [
        "vllm",
        "serve",
        "deepseek-ai/DeepSeek-OCR",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--logits_processors",
        LOGITS_PROCESSOR,
        "--no-enable-prefix-caching",
        "--mm-processor-cache-gb",
        "0",
        "--max-model-len",
        "8192",
        "--api-server-count",
        "4",
    ]


def test_default_api_server_count() -> None:
    from ocrdesk.engine.local_server import default_api_server_count

    assert [default_api_server_count(n) for n in (1, 4, 8, 16, 64)] == [1, 1, 2, 4, 4]


def test_build_command_with_every_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRDESK_VLLM", "/ignored/when/config/names/one")
    config = LocalServerConfig(
        model="/models/ocr",
        vllm="python3 -m vllm.entrypoints.cli.main",
        gpu_memory_utilization=0.85,
        max_model_len=4096,
        max_num_seqs=32,
        max_num_batched_tokens=16384,
        tensor_parallel_size=2,
        data_parallel_size=4,
        trust_remote_code=True,
        attention_backend="TRITON_ATTN",
        api_server_count=2,
        extra_args=["--load-format", "dummy"],
    )
    command = build_command(config, 9000)
    assert command[:5] == ["python3", "-m", "vllm.entrypoints.cli.main", "serve", "/models/ocr"]
    tail = command[command.index("--max-model-len") :]
    assert tail == [
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.85",
        "--max-num-seqs",
        "32",
        "--max-num-batched-tokens",
        "16384",
        "--tensor-parallel-size",
        "2",
        "--data-parallel-size",
        "4",
        "--attention-backend",
        "TRITON_ATTN",
        "--api-server-count",
        "2",
        "--trust-remote-code",
        "--load-format",
        "dummy",
    ]


def test_vllm_comes_from_ocrdesk_vllm_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRDESK_VLLM", "/opt/vllm-env/bin/python -m vllm.entrypoints.cli.main")
    command = build_command(LocalServerConfig(), 1)
    assert command[:4] == ["/opt/vllm-env/bin/python", "-m", "vllm.entrypoints.cli.main", "serve"]


def test_trust_remote_code_is_automatic_for_deepseek_ocr_2(tmp_path: Path) -> None:
    assert not needs_trust_remote_code("deepseek-ai/DeepSeek-OCR")
    assert needs_trust_remote_code("deepseek-ai/DeepSeek-OCR-2")
    folder = tmp_path / "any-name"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["DeepseekOCR2ForCausalLM"], "auto_map": {"AutoModel": "x"}})
    )
    assert needs_trust_remote_code(str(folder))
    assert "--trust-remote-code" in build_command(LocalServerConfig(model=str(folder)), 1)
    (folder / "config.json").write_text(json.dumps({"architectures": ["DeepseekOCRForCausalLM"]}))
    assert not needs_trust_remote_code(str(folder))
    config = LocalServerConfig(model="deepseek-ai/DeepSeek-OCR-2", trust_remote_code=False)
    assert "--trust-remote-code" not in build_command(config, 1)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# -- start, use, stop ---------------------------------------------------------------------------


async def test_start_serve_with_the_key_and_stop(config: LocalServerConfig, tmp_path: Path) -> None:
    args_file = tmp_path / "args.json"
    config.env["FAKE_VLLM_ARGS_FILE"] = str(args_file)
    statuses: list[str] = []
    async with LocalServer(config, on_status=statuses.append) as server:
        assert server.is_running()
        assert server.status == "ready"
        assert statuses[0] == "starting vLLM"
        assert statuses[-1] == "ready"
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        assert server.pid is not None
        pid, port = server.pid, server.port

        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{server.url}/models")
            assert refused.status_code == 401
            wrong = await client.get(
                f"{server.url}/models", headers={"Authorization": "Bearer wrong"}
            )
            assert wrong.status_code == 401
            models = await client.get(
                f"{server.url}/models", headers={"Authorization": f"Bearer {server.api_key}"}
            )
            assert models.status_code == 200
            assert [m["id"] for m in models.json()["data"]] == ["deepseek-ai/DeepSeek-OCR"]
        assert await chat(server)

        argv = json.loads(args_file.read_text())
        assert argv == build_command(config, port)[1:]
        log_text = server.log_path.read_text()
        assert "Application startup complete" in log_text
        assert server.api_key not in log_text
        assert "Application startup complete" in server.log_tail(5)

    assert server.status == "stopped"
    assert not server.is_running()
    assert wait_gone([pid])
    assert port_refuses(port)
    await server.stop()  # idempotent
    assert server.log_path.exists()  # the log is kept


async def test_the_state_is_typed_with_its_message_beside_it(config: LocalServerConfig) -> None:
    states: list[ServerStatus] = []
    async with LocalServer(config, on_state=states.append) as server:
        assert server.state is ServerState.READY
        assert server.current == ServerStatus(ServerState.READY)
        assert states[0] == ServerStatus(ServerState.STARTING, "starting vLLM")
        assert ServerStatus(ServerState.STARTING, "loading weights") in states
        assert states[-1].state is ServerState.READY
    assert [s.state for s in states[-2:]] == [ServerState.STOPPING, ServerState.STOPPED]
    assert server.state is ServerState.STOPPED and server.status == "stopped"

    config.env["FAKE_VLLM_CRASH_AT_START"] = "RuntimeError: No CUDA GPUs are available"
    with pytest.raises(EngineStartError) as caught:
        await server.start()
    assert server.current == ServerStatus(ServerState.FAILED, caught.value.reason)
    assert states[-1] == server.current
    assert server.status == f"failed: {caught.value.reason}"  # the text form, as before


async def test_ready_stays_ready_when_more_api_servers_log_their_start(
    config: LocalServerConfig,
) -> None:
    config.env["FAKE_VLLM_LATE_API_SERVERS"] = "3"
    states: list[ServerStatus] = []
    async with LocalServer(config, on_state=states.append) as server:
        assert server.state is ServerState.READY
        ready_at = len(states)
        await chat(server)  # the first answer: the fake's other API servers start now
        for _ in range(200):
            if sum("Starting vLLM API server" in line for line in server._lines) >= 4:
                break
            await asyncio.sleep(0.02)
        assert sum("Starting vLLM API server" in line for line in server._lines) >= 4
        await asyncio.sleep(0.1)  # the log reader has taken the lines
        assert server.current == ServerStatus(ServerState.READY)
        assert states[ready_at:] == []


def test_a_status_reads_as_the_text_a_person_sees() -> None:
    assert str(ServerStatus(ServerState.STARTING, "loading weights")) == "loading weights"
    assert str(ServerStatus(ServerState.READY)) == "ready"
    assert str(ServerStatus(ServerState.FAILED, "no GPU")) == "failed: no GPU"
    assert str(ServerStatus(ServerState.RESTARTING, "it died")) == "crashed: it died; restarting"
    assert str(ServerStatus(ServerState.STOPPED)) == "stopped"


async def test_slow_start_reports_the_stages(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_START_DELAY"] = "2"
    statuses: list[str] = []
    server = LocalServer(config, on_status=statuses.append)
    started = time.monotonic()
    await server.start()
    try:
        assert time.monotonic() - started >= 2.0
        order = ["loading weights", "compiling (torch.compile)", "capturing CUDA graphs", "ready"]
        assert [status for status in statuses if status in order] == order
    finally:
        await server.stop()


async def test_never_ready_times_out_and_leaves_nothing(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_NEVER_READY"] = "1"
    config.start_timeout = 3.0
    server = LocalServer(config)
    with pytest.raises(EngineStartError) as caught:
        await server.start()
    assert "did not become ready within 3 s" in caught.value.reason
    assert "start timeout" in caught.value.fix
    assert "Capturing CUDA graphs" in caught.value.log_tail
    assert not server.is_running()
    assert server.pid is not None and wait_gone([server.pid])


async def test_stop_interrupts_a_start(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_START_DELAY"] = "20"
    loading = asyncio.Event()
    server = LocalServer(config, on_status=lambda s: s == "loading weights" and loading.set())
    starting = asyncio.create_task(server.start())
    await asyncio.wait_for(loading.wait(), 10)
    started = time.monotonic()
    await server.stop()
    with pytest.raises(EngineStartError) as caught:
        await starting
    assert caught.value.reason == "vLLM was stopped before it was ready"
    assert time.monotonic() - started < 5
    assert server.status == "stopped" and not server.is_running()
    assert server.pid is not None and wait_gone([server.pid])


async def test_crash_at_start_is_explained(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_CRASH_AT_START"] = (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a "
        "total capacity of 23.65 GiB of which 3.06 GiB is free."
    )
    statuses: list[str] = []
    server = LocalServer(config, on_status=statuses.append)
    with pytest.raises(EngineStartError) as caught:
        await server.start()
    error = caught.value
    assert "out of GPU memory" in error.reason
    assert "--gpu-memory-utilization" in error.fix and "--max-model-len" in error.fix
    assert "CUDA out of memory" in error.log_tail
    assert statuses[-1].startswith("failed: out of GPU memory")
    assert not server.is_running()


async def test_missing_vllm(config: LocalServerConfig, tmp_path: Path) -> None:
    config.vllm = str(tmp_path / "no-such-env" / "bin" / "vllm")
    with pytest.raises(EngineStartError) as caught:
        await LocalServer(config).start()
    assert caught.value.reason.startswith("vLLM not found")
    assert "OCRDESK_VLLM" in caught.value.fix and "--server" in caught.value.fix


async def test_missing_vllm_named_by_ocrdesk_vllm(
    config: LocalServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.vllm = None
    monkeypatch.setenv("OCRDESK_VLLM", "no-such-vllm-anywhere --flag")
    with pytest.raises(EngineStartError) as caught:
        await LocalServer(config).start()
    assert "'no-such-vllm-anywhere' (from OCRDESK_VLLM)" in caught.value.reason


# -- restart ------------------------------------------------------------------------------------


@pytest.mark.allow_log(RESTART_WARNING)
async def test_ensure_running_restarts_a_crashed_server(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_CRASH_AFTER"] = str(1 + config.warm_up_batch + 1)  # the warm-up, a page
    statuses: list[str] = []
    states: list[ServerStatus] = []
    async with LocalServer(config, on_status=statuses.append, on_state=states.append) as server:
        assert await server.ensure_running() is False
        first_url, first_key = server.url, server.api_key
        assert await chat(server)  # the fake dies right after this request
        for _ in range(100):
            if not server.is_running():
                break
            await asyncio.sleep(0.05)
        assert await server.ensure_running() is True
        assert server.status == "ready"
        assert (server.url, server.api_key) != (first_url, first_key)
        assert server.last_failure is not None
        assert server.last_failure[0].startswith("vLLM exited with code 1")
        assert "EngineCore_DP0 died unexpectedly" in server.last_failure[0]  # the last error line
        assert f"crashed: {server.last_failure[0]}; restarting" in statuses
        assert ServerStatus(ServerState.RESTARTING, server.last_failure[0]) in states
        assert await chat(server)  # the restarted fake finds its marker and keeps running
        assert await server.ensure_running() is False


@pytest.mark.allow_log(RESTART_WARNING)
async def test_ensure_running_gives_up_after_its_tries(config: LocalServerConfig) -> None:
    async with LocalServer(config) as server:
        assert server.pid is not None
        config.env["FAKE_VLLM_CRASH_AT_START"] = "RuntimeError: No CUDA GPUs are available"
        os.kill(server.pid, signal.SIGKILL)
        with pytest.raises(EngineStartError) as caught:
            await server.ensure_running()
        assert "could not be restarted (3 tries)" in caught.value.reason
        assert "no usable NVIDIA GPU" in caught.value.reason
        assert not server.is_running()


# -- no orphans ---------------------------------------------------------------------------------

PARENT = """
import asyncio, json, sys, types
from pathlib import Path

# Import engine.local_server without engine/__init__.py, which loads the whole engine (seconds).
package = types.ModuleType("ocrdesk.engine")
package.__path__ = [str(Path("engine").resolve())]
sys.modules["ocrdesk.engine"] = package
from ocrdesk.engine.local_server import LocalServer, LocalServerConfig

async def main():
    config = LocalServerConfig(**json.loads(sys.argv[1]))
    config.log_dir = Path(config.log_dir)
    server = LocalServer(config)
    await server.start()
    child = Path(config.env["FAKE_VLLM_CHILD_PID_FILE"]).read_text()
    print(json.dumps({"pid": server.pid, "child": int(child)}), flush=True)
    if sys.argv[2] == "exit":
        return  # a normal exit that forgot stop(): the atexit hook and the pipe handle it
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_no_orphans_when_ocrdesk_dies(config: LocalServerConfig, tmp_path: Path) -> None:
    """SIGKILL one OCRDesk, let another exit without stop(): no vLLM, no engine core is left."""
    parents: dict[str, subprocess.Popen[str]] = {}
    try:
        for how in ("sigkill", "exit"):  # both at once: each parent takes seconds to import
            env = {
                **config.env,
                "FAKE_VLLM_SPAWN_CHILD": "1",
                "FAKE_VLLM_CHILD_PID_FILE": str(tmp_path / f"{how}.child.pid"),
            }
            settings = {"vllm": config.vllm, "env": env, "log_dir": str(config.log_dir)}
            parents[how] = subprocess.Popen(
                [sys.executable, "-c", PARENT, json.dumps(settings), how],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
        pids = {}
        for how, parent in parents.items():
            assert parent.stdout is not None
            pids[how] = json.loads(parent.stdout.readline())
        # the "exit" parent may already be cleaning up; the SIGKILLed one must still be running
        assert not gone(pids["sigkill"]["pid"]) and not gone(pids["sigkill"]["child"])
        parents["sigkill"].send_signal(signal.SIGKILL)
        for parent in parents.values():
            parent.wait(10)
        for how in parents:
            assert wait_gone([pids[how]["pid"], pids[how]["child"]], timeout=5.0), how
    finally:
        for parent in parents.values():
            if parent.poll() is None:
                parent.kill()
                parent.wait()


async def test_stop_takes_the_engine_core_child_too(
    config: LocalServerConfig, tmp_path: Path
) -> None:
    config.env["FAKE_VLLM_SPAWN_CHILD"] = "1"
    async with LocalServer(config) as server:
        assert server.pid is not None
        pids = [server.pid, int((tmp_path / "child.pid").read_text())]
    assert wait_gone(pids, timeout=2.0)


# local_server._call_back logs the broken callback's exception, once per status change.
@pytest.mark.allow_log(r"^local server status callback failed$")
async def test_a_broken_status_callback_and_a_proxy_do_not_break_the_start(
    config: LocalServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a proxy that is not there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    def broken(status: str) -> None:
        raise RuntimeError("callback bug")

    async with LocalServer(config, on_status=broken) as server:
        assert server.status == "ready"


async def test_the_log_reader_splits_progress_bars_and_keeps_huge_lines(
    config: LocalServerConfig, tmp_path: Path
) -> None:
    server = LocalServer(config)
    stdout = asyncio.StreamReader()
    stdout.feed_data(b"Loading weights\rCapturing CUDA graphs: 10%\rCapturing CUDA graphs: 100%\n")
    stdout.feed_data(b"x" * 200_000 + b"\n\xff tail without newline")
    stdout.feed_eof()
    statuses: list[str] = []
    server.on_status = statuses.append
    with (tmp_path / "raw.log").open("wb") as server._log_file:
        await server._read_log(SimpleNamespace(stdout=stdout))  # type: ignore[arg-type]
    assert statuses == ["loading weights", "capturing CUDA graphs"]
    assert server.log_tail(3).splitlines()[0] == "Capturing CUDA graphs: 100%"
    assert len(server.log_tail(2).splitlines()[0]) == 200_000
    assert server.log_tail(1) == "\ufffd tail without newline"
    assert (tmp_path / "raw.log").stat().st_size > 200_000


async def _posts_logged(server: LocalServer, wait: float) -> int:
    """Chat requests the fake logged (FAKE_VLLM_ACCESS_LOG) within `wait` seconds."""
    await asyncio.sleep(wait)
    return server.log_tail(500).count("POST /v1/chat/completions")


async def test_a_fresh_server_is_warmed_up_before_it_is_ready(config: LocalServerConfig) -> None:
    # The first request a fresh vLLM answers compiles kernels (7.9 s on the H200 against 0.7 s
    # for a page on a warm server): it is made before the server is called ready, not by a page.
    config.env["FAKE_VLLM_ACCESS_LOG"] = "1"
    seen: list[ServerStatus] = []
    server = LocalServer(config, on_state=seen.append)
    await server.start()
    try:
        assert server.current.state is ServerState.READY
        assert await _posts_logged(server, 0.5) == 1 + config.warm_up_batch
        messages = [s.message for s in seen if s.state is ServerState.STARTING]
        assert messages[-1] == "warming up"
        assert "warm-up request failed" not in server.log_tail(500)
    finally:
        await server.stop()


async def test_warm_up_can_be_left_out(config: LocalServerConfig) -> None:
    config.env["FAKE_VLLM_ACCESS_LOG"] = "1"
    server = LocalServer(dataclasses.replace(config, warm_up=False))
    await server.start()
    try:
        assert server.current.state is ServerState.READY
        assert await _posts_logged(server, 0.5) == 0
    finally:
        await server.stop()
