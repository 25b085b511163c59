"""`ocrdesk convert --local`, `serve` and `doctor` with the stand-in vllm executable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocrdesk.engine.cli import main
from ocrdesk.engine.local_server import WARM_UP_REQUESTS
from tests.conftest import REPO
from tests.engine.helpers import isolate_fake_vllm, make_pdf
from tests.fakes.openai_server import FakeOpenAIServer

FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fakes' / 'vllm'}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_fake_vllm(monkeypatch, tmp_path)


# LocalServer.ensure_running warns when it restarts the server that died under the run.
@pytest.mark.allow_log(r"^local vLLM died \(.+\): restarting$")
def test_convert_local_survives_a_server_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 5)
    # It dies after the warm-up and two pages, once.
    monkeypatch.setenv("FAKE_VLLM_CRASH_AFTER", str(WARM_UP_REQUESTS + 2))
    monkeypatch.setenv("FAKE_VLLM_TOKEN_DELAY", "0.002")
    out = tmp_path / "out"
    status = main(
        ["convert", str(pdf), "-o", str(out), "--local", "--vllm", FAKE_VLLM,
         "--concurrency", "2", "--start-timeout", "60"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 0, err
    assert (tmp_path / "crashed").exists(), "the fake server was meant to crash once"
    assert "ready" in err
    data = json.loads((out / "doc" / "doc.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == [1, 2, 3, 4, 5]
    assert all(p["status"] == "done" for p in data["pages"])
    logs = list((tmp_path / "state").rglob("*.log"))
    assert len(logs) >= 2, "a second server should have been started after the crash"


def test_convert_local_reports_a_start_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    monkeypatch.setenv(
        "FAKE_VLLM_CRASH_AT_START",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
    )
    status = main(["convert", str(pdf), "-o", str(tmp_path / "o"), "--vllm", FAKE_VLLM])
    err = capsys.readouterr().err
    assert status == 1
    assert "out of GPU memory" in err.lower() or "out of gpu memory" in err.lower()
    assert "fix:" in err and "Traceback" not in err


def test_serve_runs_until_terminated(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrdesk", "serve", "--vllm", FAKE_VLLM, "--model", "m/ocr"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = lines[1].split()[-1]
        key = lines[2].split()[-1]
        import openai

        models = openai.OpenAI(base_url=url, api_key=key).models.list()
        assert [m.id for m in models.data] == ["m/ocr"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_doctor_remote(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer(api_key="k") as server:
        assert main(["doctor", "--server", server.url, "--api-key", "k"]) == 0
        assert "ok" in capsys.readouterr().out
        assert main(["doctor", "--server", server.url, "--api-key", "wrong"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("ocrdesk 0.1.0")
