"""The vLLM executable chosen in the window's Settings is the one `ocrdesk convert --local` and
`ocrdesk doctor` run (issue 11, item 15): the window writes it with QSettings, the engine reads the
same file without Qt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocrdesk.engine.app_settings import saved_vllm, settings_path
from ocrdesk.engine.local_server import VllmSource, choose_vllm, default_vllm
from tests.conftest import REPO


@pytest.mark.parametrize(
    "value",
    [
        "/opt/vllm env/bin/vllm",
        "python3 -m vllm.entrypoints.cli.main",
        '/srv/a,b;c=d "quoted" \\back',
        "/opt/ünïcode/vllm",
    ],
)
def test_the_engine_reads_what_the_window_saved(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrdesk.gui.settings import Settings

    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    settings = Settings()
    assert Path(settings.q.fileName()) == settings_path()
    settings.set("engine/vllm", value)
    settings.q.sync()
    assert saved_vllm() == value
    assert choose_vllm(None) == (value, VllmSource.SAVED)
    assert default_vllm() == f"{value} (from the window's Settings)"
    # --vllm and $OCRDESK_VLLM still come first
    assert choose_vllm("/given/vllm") == ("/given/vllm", VllmSource.GIVEN)
    monkeypatch.setenv("OCRDESK_VLLM", "/env/vllm")
    assert choose_vllm(None) == ("/env/vllm", VllmSource.ENV)


def test_nothing_saved_is_vllm_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    assert saved_vllm() is None
    assert choose_vllm(None) == ("vllm", VllmSource.PATH)


def test_doctor_runs_the_saved_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocrdesk.gui.settings import Settings

    settings = Settings()
    settings.set("engine/vllm", str(tmp_path / "no-such-vllm"))
    settings.q.sync()
    env = {k: v for k, v in os.environ.items() if k != "OCRDESK_VLLM"}
    out = subprocess.run(
        [sys.executable, "-m", "ocrdesk", "doctor"],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"'{tmp_path / 'no-such-vllm'}' (from the window's Settings)" in out.stdout
