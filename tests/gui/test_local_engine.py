"""The window in local mode: it starts the stand-in `vllm` (tests/fakes/vllm, a child process
that serves the loopback OpenAI API) through the real LocalServer supervisor, shows what the
server is doing, converts through it, survives a crash mid-run, and stops it on close. A start
that fails says why, with the log one click away."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import PageStatus
from ocrdesk.engine.local_server import WARM_UP_REQUESTS
from tests.conftest import REPO
from tests.engine.helpers import isolate_fake_vllm, make_pdf
from tests.gui.conftest import arun, wait_until

FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fakes' / 'vllm'}"


@pytest.fixture
def local_settings(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    isolate_fake_vllm(monkeypatch, tmp_path)
    settings.set("engine/mode", "local")
    settings.set("engine/vllm", FAKE_VLLM)
    settings.set("engine/model", "deepseek-ai/DeepSeek-OCR")
    settings.set("engine/concurrency", 2)
    return settings


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.allow_log(r"^local vLLM died ")  # the stand-in crashes once, on purpose
def test_local_engine_starts_converts_restarts_and_stops(
    qloop: Any, qtbot: Any, local_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrdesk.gui.app import build

    # The server dies after its warm-up and two pages, once.
    monkeypatch.setenv("FAKE_VLLM_CRASH_AFTER", str(WARM_UP_REQUESTS + 2))
    monkeypatch.setenv("FAKE_VLLM_TOKEN_DELAY", "0.002")
    states: list[tuple[str, str]] = []
    pdf = make_pdf(tmp_path / "doc.pdf", 5)
    controller, window = build([str(pdf)], settings=local_settings, history=False)
    controller.engineStatus.connect(lambda state, detail: states.append((state, detail)))
    qtbot.addWidget(window)
    window.show()
    arun(qtbot, wait_until(lambda: controller.state in ("ready", "error"), timeout=60))
    assert controller.state == "ready", controller.detail
    assert any(s == "starting" and "local vLLM" in d for s, d in states)
    assert "local vLLM: deepseek-ai/DeepSeek-OCR" in window.engine_label.text()
    assert not window.engine_log_item.isVisible()  # the log button is for errors
    server_pid = controller.local.pid
    assert server_pid is not None and alive(server_pid)

    doc = controller.docs[controller.order[0]]
    arun(qtbot, wait_until(lambda: doc.page_count == 5, what="opened"))
    window.run()
    arun(qtbot, wait_until(lambda: doc.finished == 5, timeout=90, what="all pages"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert (tmp_path / "crashed").exists(), "the stand-in server was meant to crash once"
    assert doc.count(PageStatus.DONE) == 5
    assert controller.state == "ready"
    # the window's own client (region OCR) follows the server to its new port and key
    link = controller.link
    arun(
        qtbot,
        wait_until(
            lambda: link.client is not None and link.client.url == controller.local.url,
            what="client follows",
        ),
    )

    new_pid = controller.local.pid
    arun(qtbot, controller.close())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (alive(new_pid) or alive(server_pid)):
        time.sleep(0.05)
    assert not alive(new_pid) and not alive(server_pid)


def test_a_local_start_failure_is_explained(
    qloop: Any, qtbot: Any, local_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrdesk.gui.app import build

    monkeypatch.setenv(
        "FAKE_VLLM_CRASH_AT_START",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
    )
    controller, window = build([], settings=local_settings, history=False)
    qtbot.addWidget(window)
    window.show()
    arun(qtbot, wait_until(lambda: controller.state == "error", timeout=60, what="error"))
    assert "gpu memory" in controller.detail.lower()
    # (checked on the tool bar's actions: a narrow window moves them to the overflow menu)
    assert window.engine_log_item.isVisible() and window.engine_settings_item.isVisible()
    assert "OutOfMemoryError" in controller.engine_log()
    assert not window.run_action.isEnabled()
    arun(qtbot, controller.close())


def test_a_missing_vllm_points_to_settings(qloop: Any, qtbot: Any, local_settings: Any) -> None:
    """No vLLM where Settings say: the window says so in its own terms (Settings, not the
    CLI's --server) and offers the Settings button."""
    from ocrdesk.gui.app import build

    local_settings.set("engine/vllm", "/nonexistent/bin/vllm")
    controller, window = build([], settings=local_settings, history=False)
    qtbot.addWidget(window)
    window.show()
    arun(qtbot, wait_until(lambda: controller.state in ("error", "none"), timeout=30, what="error"))
    assert "Settings" in controller.detail and "--server" not in controller.detail
    assert window.engine_settings_item.isVisible()
    assert not window.run_action.isEnabled()
    arun(qtbot, controller.close())


def test_the_engine_can_be_stopped_and_started_again(
    qloop: Any, qtbot: Any, local_settings: Any
) -> None:
    """Run > Stop engine frees the GPU (the local server's process ends) and says "stopped";
    Run > Start engine brings it back."""
    from ocrdesk.gui.app import build

    controller, window = build([], settings=local_settings, history=False)
    qtbot.addWidget(window)
    window.show()
    arun(qtbot, wait_until(lambda: controller.state == "ready", timeout=60, what="ready"))
    first_pid = controller.local.pid
    assert window.engine_stop_action.isEnabled() and not window.engine_start_action.isEnabled()

    window.engine_stop_action.trigger()
    arun(qtbot, wait_until(lambda: controller.state == "stopped", timeout=30, what="stopped"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(first_pid):
        time.sleep(0.05)
    assert not alive(first_pid) and controller.local is None
    assert "stopped" in window.engine_label.text()
    assert not window.run_action.isEnabled() and window.engine_start_action.isEnabled()

    window.engine_start_action.trigger()
    arun(qtbot, wait_until(lambda: controller.state == "ready", timeout=60, what="ready again"))
    assert controller.local.pid != first_pid and alive(controller.local.pid)
    assert window.run_action.isEnabled()
    arun(qtbot, controller.close())


def test_stopping_the_engine_while_it_starts(qloop: Any, qtbot: Any, local_settings: Any) -> None:
    from ocrdesk.gui.app import build

    controller, window = build([], settings=local_settings, history=False)
    qtbot.addWidget(window)
    window.show()
    arun(
        qtbot,
        wait_until(
            lambda: controller.state == "starting" and controller.local and controller.local.pid,
            timeout=30,
            what="the server process started",
        ),
    )
    pid = controller.local.pid
    window.engine_stop_action.trigger()
    arun(qtbot, wait_until(lambda: controller.state == "stopped", timeout=30, what="stopped"))
    arun(qtbot, wait_until(lambda: True))  # a turn for anything the start left behind
    assert controller.state == "stopped" and controller.local is None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    assert not alive(pid)
    arun(qtbot, controller.close())
