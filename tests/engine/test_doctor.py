"""`ocrdesk doctor`'s checks with a fake vllm, a fake nvidia-smi, fake hubs and fake servers; the
window check with tests/fakes/system's `ldd` standing in for a machine without Qt's libraries."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine.doctor import (
    WINDOW,
    Check,
    check_window,
    doctor_exit_code,
    format_checks,
    run_checks,
    window_check,
)
from ocrdesk.engine.local_server import free_port
from ocrdesk.gui.platform_check import DISPLAY_VARIABLES, XCB_DEBIAN_PACKAGES
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"
FAKE_SYSTEM = REPO / "tests" / "fakes" / "system"
H100 = "NVIDIA H100 80GB HBM3, 81559, 80871"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin folder on PATH with `vllm` (the fake) and `nvidia-smi` (an H100); a cached model."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").symlink_to(FAKE_VLLM)
    write_nvidia_smi(bin_dir, H100)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    monkeypatch.setenv("PATH", path)
    for name in ("OCRDESK_VLLM", "HF_HOME", "HF_HUB_OFFLINE", "FAKE_VLLM_VERSION"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "hub"
    snapshot = cache / "models--deepseek-ai--DeepSeek-OCR" / "snapshots" / "1a2b3c"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model-00001-of-000001.safetensors").write_bytes(b"\0")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    return bin_dir


def write_nvidia_smi(bin_dir: Path, *lines: str, returncode: int = 0) -> None:
    """A fake nvidia-smi that prints `lines` for the doctor's query (and refuses other ones)."""
    script = bin_dir / "nvidia-smi"
    output = "\n".join(lines)
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=name,memory.total,memory.free*--format=csv,noheader,nounits*)'
        " ;; *) echo unexpected arguments: $* ; exit 9 ;; esac\n"
        f"cat <<'EOF'\n{output}\nEOF\nexit {returncode}\n"
    )
    script.chmod(0o755)


@pytest.fixture
def hub() -> Iterator[str]:
    """A stand-in for the Hugging Face hub API: knows deepseek-ai/DeepSeek-OCR only."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            known = self.path == "/api/models/deepseek-ai/DeepSeek-OCR"
            self.send_response(200 if known else 404)
            self.end_headers()
            self.wfile.write(b'{"id": "deepseek-ai/DeepSeek-OCR"}' if known else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def local(model: str | None = None, vllm: str | None = None) -> list[Check]:
    return await run_checks(model=model, server=None, api_key=None, vllm=vllm)


# -- local mode -----------------------------------------------------------------------------------


async def test_a_good_local_machine(machine: Path) -> None:
    checks = await local()
    names = [check.name for check in checks]
    assert names == ["Python", WINDOW, "vLLM", "vLLM version", "GPU", "model"]
    found = by_name(checks)
    assert all(check.ok for check in checks if check.required), format_checks(checks)
    assert found["vLLM"].detail == str(machine / "vllm")
    assert found["vLLM version"].detail.startswith("0.24.0 (known good for DeepSeek-OCR: >=0.11.1)")
    assert "NVIDIA H100 80GB HBM3, 79.0 of 79.6 GiB free" in found["GPU"].detail
    assert "Hugging Face cache" in found["model"].detail
    assert found[WINDOW].required is False  # the CLI needs no window
    assert doctor_exit_code(checks) == 0


async def test_the_window_check_does_not_load_qt(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name.startswith("PySide6")]:
        monkeypatch.delitem(sys.modules, name)  # pytest-qt has loaded it: forget it for a moment
    assert (await check_window()).name == WINDOW
    assert not any(name.startswith("PySide6") for name in sys.modules)


async def test_the_window_check_names_every_missing_library_and_one_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fresh Debian machine: `import PySide6` works, the window does not start (Qt's xcb plugin
    lacks libraries; here no display either), and the doctor says so with the one command that
    installs every library, not "[ ok ] PySide6"."""
    monkeypatch.setenv("PATH", f"{FAKE_SYSTEM}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # the check must try Qt's own choice
    for name in DISPLAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    checks = await run_checks(
        model=None, server=f"http://127.0.0.1:{free_port()}/v1", api_key=None, vllm=None
    )
    window = checks[1]
    assert not window.ok and not window.required, format_checks(checks)
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in window.detail  # what the fake ldd lacks
    assert "apt-get install -y " + " ".join(XCB_DEBIAN_PACKAGES) in window.fix
    report = format_checks(checks).splitlines()
    assert report[1].startswith(f"[warn] {WINDOW}") and "apt-get install" in report[2]


def test_the_window_checks_answer_as_a_line() -> None:
    ok = '{"ok": true, "error": "", "missing_libraries": [], "display": true, "fix": ""}'
    assert window_check(0, ok) == Check(WINDOW, True, "Qt can open the window here", "", False)
    no_display = json.dumps(
        {
            "ok": False,
            "error": "qt.qpa.xcb: could not connect to display",
            "missing_libraries": [],
            "display": False,
            "fix": "no display: open OCRDesk in a desktop session, or under xvfb-run -a ocrdesk",
        }
    )
    found = window_check(1, "a warning on stderr\n" + no_display)
    assert not found.ok and found.detail == "the window cannot open: no display to open it on"
    assert "xvfb-run" in found.fix
    broken = window_check(1, "Traceback (most recent call last):\nImportError: libGL.so.1")
    assert not broken.ok and "ImportError: libGL.so.1" in broken.detail
    assert "-m ocrdesk.gui.platform_check" in broken.fix
    assert "no answer within 90 s" in window_check(None, "no answer within 90 s").detail


async def test_vllm_given_as_an_argument_and_too_old(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (machine / "vllm").unlink()
    monkeypatch.setenv("FAKE_VLLM_VERSION", "0.10.2")
    checks = await local(vllm=str(FAKE_VLLM))
    found = by_name(checks)
    assert found["vLLM"].ok and found["vLLM"].detail == str(FAKE_VLLM)
    assert not found["vLLM version"].ok
    assert "0.10.2 is too old for DeepSeek-OCR (needs >=0.11.1)" in found["vLLM version"].detail
    assert "vllm>=0.11.1" in found["vLLM version"].fix
    assert doctor_exit_code(checks) == 1


async def test_deepseek_ocr_2_needs_a_newer_vllm(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VLLM_VERSION", "0.12.0")
    found = by_name(await local(model="deepseek-ai/DeepSeek-OCR-2"))
    assert not found["vLLM version"].ok
    assert "too old for DeepSeek-OCR-2 (needs >=0.16.0)" in found["vLLM version"].detail
    monkeypatch.setenv("FAKE_VLLM_VERSION", "0.26.0.dev3+gabc")
    found = by_name(await local(model="deepseek-ai/DeepSeek-OCR-2"))
    assert found["vLLM version"].ok
    assert "newer than the newest tried" in found["vLLM version"].detail


async def test_vllm_missing(machine: Path) -> None:
    (machine / "vllm").unlink()
    checks = await local()
    found = by_name(checks)
    assert not found["vLLM"].ok
    assert "'vllm' (from PATH) is not an executable" in found["vLLM"].detail
    assert "OCRDESK_VLLM" in found["vLLM"].fix
    assert "vLLM version" not in found
    assert doctor_exit_code(checks) == 1


async def test_vllm_that_cannot_say_its_version(machine: Path) -> None:
    broken = machine / "broken-vllm"
    broken.write_text("#!/bin/sh\necho 'ImportError: libcudart.so.12: cannot open' >&2\nexit 1\n")
    broken.chmod(0o755)
    found = by_name(await local(vllm=str(broken)))
    assert not found["vLLM version"].ok
    assert "libcudart" in found["vLLM version"].detail


async def test_no_nvidia_smi(machine: Path) -> None:
    (machine / "nvidia-smi").unlink()
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a real nvidia-smi on PATH")
    checks = await local()
    gpu = by_name(checks)["GPU"]
    assert not gpu.ok and "nvidia-smi not found" in gpu.detail
    assert "driver" in gpu.fix and "--server" in gpu.fix
    assert doctor_exit_code(checks) == 1


async def test_nvidia_smi_without_a_driver(machine: Path) -> None:
    write_nvidia_smi(
        machine,
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        returncode=9,
    )
    gpu = by_name(await local())["GPU"]
    assert not gpu.ok and "couldn't communicate" in gpu.detail


async def test_a_busy_gpu(machine: Path) -> None:
    write_nvidia_smi(machine, "NVIDIA GeForce RTX 4090, 24564, 10350", "NVIDIA T400, 2048, 2000")
    checks = await local()
    found = by_name(checks)
    assert found["GPU"].ok  # 10 GiB free is enough for the model
    assert (
        "0: NVIDIA GeForce RTX 4090, 10.1 of 24.0 GiB free; 1: NVIDIA T400" in found["GPU"].detail
    )
    memory = found["GPU memory for vLLM"]
    assert not memory.ok and not memory.required
    assert "--gpu-memory-utilization 0.35" in memory.fix
    assert doctor_exit_code(checks) == 0
    write_nvidia_smi(machine, "NVIDIA GeForce RTX 4090, 24564, 3000")
    assert not by_name(await local())["GPU"].ok


async def test_model_in_a_local_folder(machine: Path, tmp_path: Path) -> None:
    folder = tmp_path / "DeepSeek-OCR"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["DeepseekOCRForCausalLM"]}))
    model = by_name(await local(model=str(folder)))["model"]
    assert not model.ok and "no *.safetensors" in model.detail
    (folder / "model.safetensors").write_bytes(b"\0")
    model = by_name(await local(model=str(folder)))["model"]
    assert model.ok and model.detail == f"local folder {folder}"
    model = by_name(await local(model=str(tmp_path / "nowhere")))["model"]
    assert not model.ok and "no config.json" in model.detail


async def test_model_not_cached_and_no_network(machine: Path) -> None:
    checks = await local(model="deepseek-ai/Other-OCR")
    found = by_name(checks)
    assert not found["model"].ok
    assert "is not downloaded yet" in found["model"].detail
    assert "cannot be reached" in found["model"].detail
    assert "local folder" not in found["model"].detail and "network" in found["model"].fix
    assert "disk for the download" in found
    assert doctor_exit_code(checks) == 1


async def test_model_not_cached_but_downloadable(
    machine: Path, tmp_path: Path, hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", hub)
    usage = shutil._ntuple_diskusage  # type: ignore[attr-defined]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(500e9, 400e9, 100e9))
    checks = await local()
    found = by_name(checks)
    assert found["model"].ok
    assert "the first start downloads about 6.7 GB" in found["model"].detail
    assert found["disk for the download"].ok
    assert "100.0 GB free on " + str(tmp_path) in found["disk for the download"].detail
    assert doctor_exit_code(checks) == 0

    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(500e9, 496e9, 4e9))
    disk = by_name(await local())["disk for the download"]
    assert not disk.ok and "HF_HOME" in disk.fix

    wrong = by_name(await local(model="deepseek-ai/DeepSeek-OCR-typo"))["model"]
    assert not wrong.ok and "HTTP 404" in wrong.detail and "model id" in wrong.fix

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = by_name(await local())["model"]
    assert not offline.ok and "HF_HUB_OFFLINE" in offline.detail


# -- remote mode ----------------------------------------------------------------------------------


@pytest.fixture
def remote() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model="deepseek-ai/DeepSeek-OCR", api_key="secret") as server:
        yield server


async def test_a_good_remote_server(remote: FakeOpenAIServer) -> None:
    checks = await run_checks(
        model="deepseek-ai/DeepSeek-OCR", server=remote.url, api_key="secret", vllm=None
    )
    assert [check.name for check in checks] == ["Python", WINDOW, "server", "model"]
    assert all(check.ok for check in checks if check.required), format_checks(checks)
    assert "serves deepseek-ai/DeepSeek-OCR" in by_name(checks)["server"].detail
    assert doctor_exit_code(checks) == 0
    without_v1 = remote.url.removesuffix("/v1")
    checks = await run_checks(model=None, server=without_v1, api_key="secret", vllm=None)
    assert by_name(checks)["server"].ok and "model" not in by_name(checks)


async def test_remote_server_wants_a_key(remote: FakeOpenAIServer) -> None:
    checks = await run_checks(model=None, server=remote.url, api_key=None, vllm=None)
    server = by_name(checks)["server"]
    assert not server.ok and "HTTP 401" in server.detail and "--api-key" in server.fix
    checks = await run_checks(model=None, server=remote.url, api_key="wrong", vllm=None)
    assert "the API key is wrong" in by_name(checks)["server"].fix
    assert doctor_exit_code(checks) == 1


async def test_remote_server_without_the_model(remote: FakeOpenAIServer) -> None:
    checks = await run_checks(
        model="deepseek-ai/DeepSeek-OCR-2", server=remote.url, api_key="secret", vllm=None
    )
    model = by_name(checks)["model"]
    assert not model.ok
    assert "not among deepseek-ai/DeepSeek-OCR" in model.detail
    assert doctor_exit_code(checks) == 1


async def test_dead_server() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    checks = await run_checks(model=None, server=url, api_key=None, vllm=None)
    server = by_name(checks)["server"]
    assert not server.ok and "does not answer" in server.detail and "firewall" in server.fix
    assert doctor_exit_code(checks) == 1


# -- the report -----------------------------------------------------------------------------------


def test_format_and_exit_code() -> None:
    checks = [
        Check("Python", True, "3.12.1"),
        Check("GPU", False, "nvidia-smi not found", "install the NVIDIA driver"),
        Check("PySide6 (GUI)", False, "not installed", "pip install PySide6", required=False),
    ]
    text = format_checks(checks)
    assert text.splitlines() == [
        "[ ok ] Python         3.12.1",
        "[FAIL] GPU            nvidia-smi not found",
        "                      fix: install the NVIDIA driver",
        "[warn] PySide6 (GUI)  not installed",
        "                      fix: pip install PySide6",
    ]
    assert doctor_exit_code(checks) == 1
    assert doctor_exit_code([checks[0], checks[2]]) == 0
    assert doctor_exit_code([]) == 0
