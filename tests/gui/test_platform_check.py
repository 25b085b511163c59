"""gui/platform_check.py (`ocrdesk doctor`'s window check) and packaging/run_setup.py (`make
run`'s set-up): a missing system library of Qt's xcb plugin is found, every one of them is named,
and the fix installs them all in one command; the CLI's commands never need them.

`ldd` and `apt-get` are stood in for by tests/fakes/system (a process boundary) where a test
needs a machine that lacks the libraries, whatever this one has."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.gui import platform_check
from tests.conftest import REPO

FAKE_SYSTEM = REPO / "tests" / "fakes" / "system"
LDD_MISSING = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]  # what the fake ldd reports


@functools.cache
def _run_setup() -> Any:
    """packaging/run_setup.py (a script, loaded by path)."""
    spec = importlib.util.spec_from_file_location("run_setup", REPO / "packaging" / "run_setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """ldd says two xcb libraries are missing; apt-get only writes down its calls (the path of
    that log is returned). No display, Qt's default platform."""
    monkeypatch.setenv("PATH", f"{FAKE_SYSTEM}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_LOG", str(tmp_path / "apt.log"))
    monkeypatch.delenv("QT_QPA_PLATFORM")
    for name in platform_check.DISPLAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "apt.log"


def test_every_missing_library_is_named(fresh_machine: Path) -> None:
    missing = platform_check.missing_libraries()
    assert missing[:2] == LDD_MISSING  # each once, though ldd lists one twice
    assert set(missing) <= set(platform_check.XCB_LIBRARIES.values())


def test_the_fix_installs_all_the_libraries_in_one_command(fresh_machine: Path) -> None:
    fix = platform_check.fix_for(LDD_MISSING, display=True, error="")
    assert platform_check.install_command() in fix
    assert platform_check.install_command().split()[-10:] == list(
        platform_check.XCB_DEBIAN_PACKAGES
    )


def test_the_check_says_whether_a_window_can_start(tmp_path: Path) -> None:
    """The check agrees with a QApplication started the way a person's `ocrdesk` starts it
    (QT_QPA_PLATFORM unset), where `import PySide6` alone said nothing."""
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    code = "from PySide6.QtWidgets import QApplication; QApplication([])"
    direct = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    result = subprocess.run(
        [sys.executable, "-m", platform_check.MODULE],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    found = platform_check.PlatformCheck.from_json(result.stdout)
    assert found.ok == (direct.returncode == 0), result.stdout
    assert result.returncode == (0 if found.ok else 1)
    if not found.ok:
        assert found.error and found.fix
        assert json.loads(result.stdout)["missing_libraries"] == found.missing_libraries


def test_make_run_installs_the_libraries_as_root(
    fresh_machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("installing with apt-get is for root (CI is root)")
    assert _run_setup().main([]) == 2  # the fake apt-get installs nothing: still missing
    calls = fresh_machine.read_text().splitlines()
    assert calls[0].split() == ["install", "-y", "-q", *platform_check.XCB_DEBIAN_PACKAGES]
    assert "apt-get install -y " + " ".join(platform_check.XCB_DEBIAN_PACKAGES) in (
        capsys.readouterr().err
    )


def test_make_run_as_a_user_stops_with_the_command(
    fresh_machine: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _run_setup().main(["scan.pdf"]) == 2
    assert not fresh_machine.exists()  # apt-get was not run
    err = capsys.readouterr().err
    assert "sudo apt-get install -y " + " ".join(platform_check.XCB_DEBIAN_PACKAGES) in err
    assert all(library in err for library in LDD_MISSING)


@pytest.mark.parametrize("args", [["convert", "scan.pdf"], ["doctor"], ["--version"]])
def test_make_run_of_a_cli_command_needs_no_libraries(fresh_machine: Path, args: list[str]) -> None:
    assert _run_setup().main(args) == 0
    assert not fresh_machine.exists()


def test_make_run_with_a_platform_chosen_by_hand_is_left_alone(
    fresh_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert _run_setup().main([]) == 0
    assert not fresh_machine.exists()
