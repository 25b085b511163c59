"""The window's local engine on a machine of two GPUs (tests/fakes/system's nvidia-smi lists
them): one stand-in vLLM per GPU, a run's pages reach both, and the server of GPU 1, crashing
mid-run, is the only one restarted while the run finishes with every page."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import PageStatus
from ocrdesk.engine.local_server import WARM_UP_REQUESTS, ServerState, ServerStatus
from ocrdesk.gui.engine_link import EngineState
from tests.conftest import REPO
from tests.engine.helpers import isolate_fake_vllm, make_pdf
from tests.gui.conftest import arun, wait_until

FAKE_SYSTEM = REPO / "tests" / "fakes" / "system"
FAKE_VLLM = REPO / "tests" / "fakes" / "vllm"
PAGES = 10
REQUEST = '"POST /v1/chat/completions HTTP/1.1" 200'


@pytest.fixture
def two_gpus(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two GPUs; a `vllm` that appends {"gpus", "pid"} to the returned file at each start and
    runs the stand-in, logging each request it answers; on GPU 1 the first one crashes after
    two answers. The window's settings point at it."""
    isolate_fake_vllm(monkeypatch, tmp_path)
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "FAKE_NVIDIA_GPUS"):
        monkeypatch.delenv(name, raising=False)
    path = os.pathsep.join([str(FAKE_SYSTEM), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("FAKE_VLLM_ACCESS_LOG", "1")
    monkeypatch.setenv("FAKE_VLLM_TOKEN_DELAY", "0.002")
    starts = tmp_path / "starts.jsonl"
    wrapper = tmp_path / "vllm"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "gpus = os.environ.get('CUDA_VISIBLE_DEVICES')\n"
        f"with open({str(starts)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'gpus': gpus, 'pid': os.getpid()}) + '\\n')\n"
        "if gpus == '1':  # its crash marker in a folder of its own\n"
        f"    os.environ['FAKE_VLLM_CRASH_AFTER'] = '{WARM_UP_REQUESTS + 2}'\n"
        f"    os.environ['FAKE_VLLM_STATE_DIR'] = {str(tmp_path / 'gpu1')!r}\n"
        f"    os.makedirs({str(tmp_path / 'gpu1')!r}, exist_ok=True)\n"
        # Its restart takes 2 s, so that the window is seen serving on GPU 0 meanwhile
        # however late a loaded machine lets it hear the events.
        f"    if os.path.exists({str(tmp_path / 'gpu1' / 'crashed')!r}):\n"
        "        os.environ['FAKE_VLLM_START_DELAY'] = '2'\n"
        f"os.execv(sys.executable, [sys.executable, {str(FAKE_VLLM)!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)
    settings.set("engine/mode", "local")
    settings.set("engine/vllm", str(wrapper))
    settings.set("engine/model", "deepseek-ai/DeepSeek-OCR")
    settings.set("engine/concurrency", 4)
    return starts


def started(record: Path) -> list[str | None]:
    lines = record.read_text().splitlines() if record.exists() else []
    return sorted(json.loads(line)["gpus"] for line in lines)


def requests_per_gpu(tmp_path: Path) -> dict[str, int]:
    """The pages each GPU's servers answered, from their logs (one per start, each with its
    warm-up's requests first)."""
    counts: dict[str, int] = {}
    for log in tmp_path.rglob("vllm-*.log"):
        gpu = re.search(r"-gpu(\d+)\.log$", log.name)
        key = gpu.group(1) if gpu else "?"
        answered = log.read_text(errors="replace").count(REQUEST)
        counts[key] = counts.get(key, 0) + answered - WARM_UP_REQUESTS
    return counts


@pytest.mark.allow_log(r"^local vLLM died ")  # the stand-in of GPU 1 crashes once, on purpose
def test_the_window_runs_a_vllm_on_each_gpu_and_restarts_only_the_one_that_died(
    qloop: Any, qtbot: Any, settings: Any, two_gpus: Path, tmp_path: Path
) -> None:
    from ocrdesk.gui.app import build

    pdf = make_pdf(tmp_path / "doc.pdf", PAGES)
    controller, window = build([str(pdf)], settings=settings, history=False)
    states: list[tuple[EngineState, str]] = []
    controller.engineStatus.connect(lambda state, detail: states.append((state, detail)))
    qtbot.addWidget(window)
    window.show()
    arun(qtbot, wait_until(lambda: controller.state in ("ready", "error"), timeout=60))
    assert controller.state == "ready", controller.detail
    group = controller.link.group
    assert group is not None and len(group.servers) == 2
    assert started(two_gpus) == ["0", "1"]
    assert len({s.url for s in group.servers}) == 2, "each GPU's server has a port of its own"
    assert controller.detail.endswith(" on GPUs 0, 1"), controller.detail
    first_pid = group.servers[0].pid
    log = controller.engine_log()
    assert "== GPU 0 (" in log and "== GPU 1 (" in log, "the Log button shows both servers"

    doc = controller.docs[controller.order[0]]
    arun(qtbot, wait_until(lambda: doc.page_count == PAGES, what="opened"))
    window.run()
    arun(qtbot, wait_until(lambda: doc.finished == PAGES, timeout=120, what="all pages"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert (tmp_path / "gpu1" / "crashed").exists(), "GPU 1's server was meant to crash once"
    # While GPU 1's server came back, GPU 0's served: the engine stayed ready (Run usable),
    # saying what GPU 1's was doing.
    since_ready = states[[state for state, _ in states].index(EngineState.READY) :]
    assert {state for state, _ in since_ready} == {EngineState.READY}, since_ready
    back = re.compile(r"local vLLM on GPU 0; GPU 1 (restarting|starting): ")
    assert any(back.match(detail) for _, detail in since_ready), since_ready
    assert doc.count(PageStatus.DONE) == PAGES
    assert started(two_gpus) == ["0", "1", "1"], "only GPU 1's server was started again"
    assert group.servers[0].pid == first_pid and group.servers[0].is_running()
    counts = requests_per_gpu(tmp_path)
    assert counts.get("0", 0) >= 1 and counts.get("1", 0) >= 2, counts  # 2 before the crash
    assert sum(counts.values()) >= PAGES
    arun(qtbot, wait_until(lambda: controller.state == "ready", what="ready again"))
    # A restart's "warming up" heard only after the server became ready (a busy GUI thread):
    # the servers as they are now decide, and nothing raises.
    controller.link._local_state(group, ServerStatus(ServerState.STARTING, "warming up"))
    assert controller.state == "ready"
    assert controller.detail == "local vLLM: deepseek-ai/DeepSeek-OCR on GPUs 0, 1"
    arun(qtbot, controller.close())
    assert not any(server.is_running() for server in group.servers)
