"""`ocrdesk` as a child process in tests: an environment that runs offscreen and touches nothing
of the real user's, a `convert` against the loopback test server, and the window opened and
then closed with SIGTERM."""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.fakes.openai_server import FakeOpenAIServer


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a child `ocrdesk`: its own HOME and XDG folders, offscreen Qt,
    Chromium without its sandbox (root in CI cannot have one; tests only), no keyring."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "QT_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        QT_QPA_PLATFORM="offscreen",
        QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    env.update(extra)
    return env


def convert_against_test_server(
    command: Sequence[str | Path], pdf: Path, out: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    """`COMMAND convert PDF -o OUT` against a loopback test server, quietly."""
    with FakeOpenAIServer() as server:
        return subprocess.run(
            [*command, "convert", str(pdf), "-o", str(out), "--server", server.url,
             "--api-key", server.api_key or "", "-q"],
            capture_output=True,
            text=True,
            cwd=pdf.parent,
            env=isolated_env(home),
            timeout=120,
        )  # fmt: skip


@functools.cache
def _startup_script() -> Any:
    """packaging/startup.py, the start-up measurement (a script, not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("startup", REPO / "packaging" / "startup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sigterm_once_window_is_up(
    command: Sequence[str | Path], *, cwd: Path, env: dict[str, str], log: Path, settle: float
) -> int:
    """Start the window with `command`, wait until its web view's Chromium process runs, let it
    settle for `settle` s (still alive), send SIGTERM; the exit status."""
    with FakeOpenAIServer() as server, log.open("w") as sink:
        proc = subprocess.Popen(
            [*command, "--server", server.url],
            stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not _startup_script().webengine_started(proc.pid):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            time.sleep(settle)
            assert proc.poll() is None, log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(30)
    return status
