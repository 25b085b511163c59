"""The local server's API key leaks nowhere: no command line, no log, no file others can read.

These tests look at the processes as another local user would: /proc/PID/cmdline is readable by
everyone, so a key there is a key for anyone on the machine.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrdesk.engine.cli import main
from ocrdesk.engine.errors import EngineStartError
from ocrdesk.engine.local_server import API_KEY_ENV, LocalServer, LocalServerConfig, httpx
from ocrdesk.engine.vllm_log import MASK
from tests.conftest import REPO
from tests.engine.helpers import isolate_fake_vllm, make_pdf

FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fakes' / 'vllm'}"
# A key as LocalServer makes them (secrets.token_urlsafe(24)), for output where we do not know it.
KEY_LIKE = re.compile(r"[A-Za-z0-9_-]{32}")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalServerConfig:
    isolate_fake_vllm(monkeypatch, tmp_path)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    return LocalServerConfig(
        vllm=FAKE_VLLM,
        env={"FAKE_VLLM_STATE_DIR": str(tmp_path)},
        start_timeout=60.0,
        stop_timeout=5.0,
    )


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: files and folders would be world-writable if not made private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def parent_pid(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, hence the split at ")"
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
async def test_the_key_is_on_no_command_line_and_still_required(
    config: LocalServerConfig, tmp_path: Path
) -> None:
    config.env["FAKE_VLLM_SPAWN_CHILD"] = "1"  # like vLLM's engine core
    async with LocalServer(config) as server:
        assert server.pid is not None
        key = server.api_key.encode()
        vllm = server.pid
        watchdog = parent_pid(vllm)
        engine_core = int((tmp_path / "child.pid").read_text())
        for pid in (watchdog, vllm, engine_core):
            assert mode(f"/proc/{pid}/cmdline") == 0o444  # what every local user can read
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert cmdline, pid
            assert key not in cmdline, pid
        assert b"watchdog.py" in Path(f"/proc/{watchdog}/cmdline").read_bytes()
        # The key is in the environment, which only this user can read (the kernel's 0400).
        assert mode(f"/proc/{vllm}/environ") == 0o400
        assert f"{API_KEY_ENV}={server.api_key}".encode() in Path(
            f"/proc/{vllm}/environ"
        ).read_bytes().split(b"\0")
        assert API_KEY_ENV not in os.environ  # OCRDesk's own environment is left alone

        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"{server.url}/models")).status_code == 401
            wrong = await client.get(f"{server.url}/models", headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401
            right = await client.get(
                f"{server.url}/models", headers={"Authorization": f"Bearer {server.api_key}"}
            )
            assert right.status_code == 200


async def test_logs_and_the_state_folder_are_the_users_alone(
    config: LocalServerConfig, tmp_path: Path, open_umask: None
) -> None:
    state = tmp_path / "state" / "ocrdesk"  # XDG_STATE_HOME/ocrdesk (isolate_fake_vllm)
    logs = state / "logs"
    logs.mkdir(parents=True, mode=0o777)
    state.chmod(0o755)
    logs.chmod(0o755)
    old = logs / "vllm-20240101-000000-000000.log"
    old.write_text("# vllm serve m --api-key old-key\n")
    old.chmod(0o644)

    async with LocalServer(config) as server:
        assert server.log_path.parent == logs
        assert mode(state) == 0o700
        assert mode(logs) == 0o700
        assert mode(server.log_path) == 0o600
        assert mode(old) == 0o600  # written before OCRDesk made logs private: made so now

    config.log_dir = tmp_path / "chosen" / "logs"
    async with LocalServer(config) as server:
        assert mode(config.log_dir) == 0o700
        assert mode(server.log_path) == 0o600


async def test_the_key_is_masked_in_the_log_file_and_in_what_is_shown(
    config: LocalServerConfig,
) -> None:
    config.env["FAKE_VLLM_LOG_KEY"] = "1"  # a vLLM that prints its key among its arguments
    statuses: list[str] = []
    async with LocalServer(config, on_status=statuses.append) as server:
        key = server.api_key
        text = server.log_path.read_text()
        assert f"'api_key': ['{MASK}']" in text
        assert f"'api_key': ['{MASK}']" in server.log_tail(50)
        assert key not in text and key not in server.log_tail(500)

    config.env["FAKE_VLLM_CRASH_AT_START"] = "RuntimeError: the token {api_key} is refused"
    server = LocalServer(config, on_status=statuses.append)
    with pytest.raises(EngineStartError) as caught:
        await server.start()
    key, error = server.api_key, caught.value
    assert f"the token {MASK} is refused" in error.reason  # the last error line, masked
    for shown in (error.reason, error.fix, error.log_tail, str(error), server.log_tail(500)):
        assert key not in shown
    assert key not in server.log_path.read_text()
    assert not any(key in status for status in statuses)


def test_the_cli_shows_a_failed_start_with_the_key_masked(
    config: LocalServerConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_VLLM_LOG_KEY", "1")
    monkeypatch.setenv("FAKE_VLLM_CRASH_AT_START", "RuntimeError: the token {api_key} is refused")
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    status = main(["convert", str(pdf), "-o", str(tmp_path / "out"), "--vllm", FAKE_VLLM, "-q"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"the token {MASK} is refused" in err and f"'api_key': ['{MASK}']" in err
    assert not KEY_LIKE.search(err.replace(str(tmp_path), "")), err
