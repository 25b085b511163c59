"""`ocrdesk gui` as a process: SIGTERM closes the window the normal way and the process exits 0
(the run is stopped, the engine closed), instead of dying by the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer


def has_child(pid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            return True
    return False


def test_sigterm_closes_the_window_cleanly(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", 2)
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "gui.log"
    with FakeOpenAIServer(token_delay=0.01) as server, log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "gui", str(pdf), "--server", server.url],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not has_child(proc.pid):  # the window's web view started its Chromium process
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            assert proc.poll() is None, log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(30)
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()
