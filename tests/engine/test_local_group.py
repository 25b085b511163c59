"""The local engine on every GPU: a stand-in nvidia-smi (tests/fakes/system) lists two GPUs,
a wrapper in front of the stand-in vLLM writes down what each vLLM was started with (its
CUDA_VISIBLE_DEVICES and argv), and `convert --local` runs against them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ocrdesk.engine.cli import main
from ocrdesk.engine.doctor import run_checks
from ocrdesk.engine.errors import EngineStartError
from ocrdesk.engine.local_group import GPU_REPORT_NAME, LocalServerGroup
from ocrdesk.engine.local_server import LocalServerConfig, ServerState, default_api_server_count
from tests.conftest import REPO
from tests.engine.helpers import isolate_fake_vllm, make_pdf

FAKE_SYSTEM = REPO / "tests" / "fakes" / "system"
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"
WAIT = 60.0


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two GPUs; a `vllm` that appends {"gpus", "order", "argv"} to the returned file, one JSON
    line per start, then runs the stand-in (which fails to start on $FAIL_ON_GPU)."""
    isolate_fake_vllm(monkeypatch, tmp_path)
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "FAKE_NVIDIA_GPUS", "FAIL_ON_GPU"):
        monkeypatch.delenv(name, raising=False)
    path = os.pathsep.join([str(FAKE_SYSTEM), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    monkeypatch.setenv("PATH", path)
    starts = tmp_path / "starts.jsonl"
    wrapper = tmp_path / "vllm"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(starts)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'gpus': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
        "        'order': os.environ.get('CUDA_DEVICE_ORDER'), 'argv': sys.argv[1:]}) + '\\n')\n"
        "if os.environ.get('FAIL_ON_GPU', '-') == os.environ.get('CUDA_VISIBLE_DEVICES'):\n"
        "    os.environ['FAKE_VLLM_CRASH_AT_START'] = "
        "'torch.OutOfMemoryError: CUDA out of memory'\n"
        f"os.execv(sys.executable, [sys.executable, {str(FAKE_VLLM)!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("OCRDESK_VLLM", str(wrapper))
    return starts


def starts(record: Path) -> list[dict[str, object]]:
    lines = record.read_text().splitlines() if record.exists() else []
    return sorted((json.loads(line) for line in lines), key=lambda s: str(s["gpus"]))


def option(argv: object, name: str) -> str | None:
    assert isinstance(argv, list)
    return argv[argv.index(name) + 1] if name in argv else None


def config(tmp_path: Path, gpus: str | None = None, data_parallel: int = 1) -> LocalServerConfig:
    return LocalServerConfig(
        gpus=gpus,
        data_parallel_size=data_parallel,
        log_dir=tmp_path / "logs",
        start_timeout=WAIT,
        stop_timeout=5.0,
    )


def test_convert_local_runs_one_vllm_on_each_gpu(
    record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 8)
    out = tmp_path / "out"
    status = main(
        ["convert", str(pdf), "-o", str(out), "--local", "--concurrency", "4",
         "--start-timeout", str(WAIT)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    started = starts(record)
    assert [(s["gpus"], s["order"]) for s in started] == [("0", "PCI_BUS_ID"), ("1", "PCI_BUS_ID")]
    ports = {option(s["argv"], "--port") for s in started}
    assert len(ports) == 2, "each GPU's server listens on a port of its own"
    for s in started:
        assert option(s["argv"], "--data-parallel-size") is None
        # the API server processes are shared out among the servers
        cpus = (os.cpu_count() or 1) // 2
        assert option(s["argv"], "--api-server-count") == str(default_api_server_count(cpus))
    assert "GPU 1: " in err or "GPU 0: " in err, "the start-up stages name the GPU"
    data = json.loads((out / "doc" / "doc.json").read_text(encoding="utf-8"))
    assert [p["status"] for p in data["pages"]] == ["done"] * 8


@pytest.mark.parametrize(
    ("choice", "gpus"),
    [("device=1", ["1"]), ("1", ["0"]), ("1,0", ["0", "1"]), ("all", ["0", "1"])],
)
async def test_the_choice_restricts_the_servers(
    record: Path, tmp_path: Path, choice: str, gpus: list[str]
) -> None:
    group = LocalServerGroup(config(tmp_path, gpus=choice))
    async with group:
        assert group.state is ServerState.READY
        assert len(group.servers) == len(gpus)
    assert [s["gpus"] for s in starts(record)] == gpus


async def test_the_saved_setting_is_used(record: Path, tmp_path: Path) -> None:
    from ocrdesk.engine.app_settings import settings_path

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('[engine]\ngpus="device=1"\n', encoding="utf-8")
    async with LocalServerGroup(config(tmp_path)) as group:
        assert [gpu.index for gpu in group.servers[0].gpus] == [1]
    assert [s["gpus"] for s in starts(record)] == ["1"]


async def test_no_gpu_found_runs_one_vllm_as_before(
    record: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NVIDIA_GPUS", "0")
    async with LocalServerGroup(config(tmp_path)) as group:
        assert len(group.servers) == 1 and group.gpus == []
    assert [(s["gpus"], s["order"]) for s in starts(record)] == [(None, None)]


async def test_vllms_own_data_parallelism_gets_one_server_on_the_gpus(
    record: Path, tmp_path: Path
) -> None:
    async with LocalServerGroup(config(tmp_path, data_parallel=2)) as group:
        assert len(group.servers) == 1
    [started] = starts(record)
    assert started["gpus"] == "0,1" and option(started["argv"], "--data-parallel-size") == "2"


async def test_a_choice_of_gpus_not_there_fails_before_any_start(
    record: Path, tmp_path: Path
) -> None:
    with pytest.raises(EngineStartError, match="GPU 5 is not among the GPUs found") as caught:
        await LocalServerGroup(config(tmp_path, gpus="0,5")).start()
    assert "--gpus" in caught.value.fix
    assert starts(record) == []


@pytest.mark.allow_log(r"^local vLLM: failed: ")
async def test_one_gpu_failing_stops_the_others(
    record: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_ON_GPU", "1")
    states: list[str] = []
    group = LocalServerGroup(config(tmp_path), on_status=states.append)
    with pytest.raises(EngineStartError, match=r"(?i)^GPU 1: .*out of GPU memory") as caught:
        await group.start()
    assert caught.value.fix
    assert not any(server.is_running() for server in group.servers)
    assert group.state is ServerState.FAILED and states[-1].startswith("failed: GPU 1: ")
    assert [s["gpus"] for s in starts(record)] == ["0", "1"]


async def test_the_doctor_says_which_gpus_the_engine_uses(record: Path) -> None:
    checks = await run_checks(model=None, server=None, api_key=None, vllm=None)
    [used] = [check for check in checks if check.name == GPU_REPORT_NAME]
    assert used.ok
    assert used.detail == (
        "2 found (0: NVIDIA H200; 1: NVIDIA H200); one vLLM on each of 2: "
        "0: NVIDIA H200; 1: NVIDIA H200"
    )
    from ocrdesk.engine.app_settings import settings_path

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("[engine]\ngpus=3\n", encoding="utf-8")
    checks = await run_checks(model=None, server=None, api_key=None, vllm=None)
    [used] = [check for check in checks if check.name == GPU_REPORT_NAME]
    assert not used.ok and "3 GPUs asked for, 2 found" in used.detail and "--gpus" in used.fix
