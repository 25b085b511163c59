"""`ocrdesk` as a child process in tests: an environment that runs offscreen and touches nothing
of the real user's, a `convert` against the loopback test server, and the window opened and
then closed with SIGTERM once it says it is ready."""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ocrdesk.gui.app import LOG_LEVEL_VARIABLE, READY_MESSAGE
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


#: Generous: two `.ci/run`s side by side on two cores make the window take many times its usual
#: 2-3 s to open.
START_DEADLINE_S = 180


def wait_for(proc: subprocess.Popen[bytes], log: Path, condition: Callable[[str], bool]) -> str:
    """Poll until `condition(log text)` holds while `proc` lives; the log text then. Fails with
    the log when the process ends first or START_DEADLINE_S passes."""
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        text = log.read_text(errors="replace")
        if condition(text):
            return text
        assert proc.poll() is None, f"exited {proc.returncode} first:\n{text}"
        assert time.monotonic() < deadline, f"not within {START_DEADLINE_S} s:\n{text}"
        time.sleep(0.05)


def sigterm_window(
    command: Sequence[str | Path],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    after: str = READY_MESSAGE,
    web_view: bool = True,
) -> int:
    """Start the window with `command` (against a loopback test server), wait until it logs the
    line `after` (READY_MESSAGE: the window is shown and the stop signals are handled) and, with
    `web_view`, until its web view's Chromium process runs; send SIGTERM; the exit status."""
    env = {**env, LOG_LEVEL_VARIABLE: "DEBUG"}
    with FakeOpenAIServer() as server, log.open("w") as sink:
        proc = subprocess.Popen(
            [*command, "--server", server.url],
            stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=env,
        )  # fmt: skip
        try:
            wait_for(proc, log, lambda text: after in text)
            if web_view:
                wait_for(proc, log, lambda _: _startup_script().webengine_started(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    return status
