"""The desktop entry and metainfo pass Debian's validators; `ocrdesk install-desktop` writes them
(and the icon) into the XDG data folder and `--uninstall` takes them away; `ocrdesk FILE` opens
the window with FILE queued, as the entry's `Exec=ocrdesk %F` needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import desktop_install
from ocrdesk.main import main, with_default_command
from tests.conftest import REPO
from tests.packaging.helpers import need_tool

RESOURCES = REPO / "resources"
INSTALLED = [
    Path("applications/ocrdesk.desktop"),
    Path("icons/hicolor/scalable/apps/ocrdesk.svg"),
    Path("metainfo/io.github.ocrdesk.OCRDesk.metainfo.xml"),
]


def validate_desktop(path: Path) -> None:
    tool = need_tool("desktop-file-validate")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_desktop_file_validates() -> None:
    validate_desktop(RESOURCES / "ocrdesk.desktop")


def test_metainfo_validates() -> None:
    tool = need_tool("appstreamcli")
    metainfo = RESOURCES / "io.github.ocrdesk.OCRDesk.metainfo.xml"
    result = subprocess.run(
        [tool, "validate", "--no-net", str(metainfo)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_entry_opens_pdfs_and_images() -> None:
    text = (RESOURCES / "ocrdesk.desktop").read_text(encoding="utf-8")
    keys = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert keys["Exec"] == "ocrdesk %F" and keys["Icon"] == "ocrdesk"
    mime = set(keys["MimeType"].rstrip(";").split(";"))
    assert {"application/pdf", "image/png", "image/jpeg", "image/tiff"} <= mime


def test_install_desktop_and_uninstall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["install-desktop"]) == 0
    for rel in INSTALLED:
        assert (tmp_path / "data" / rel).is_file(), rel
    assert "wrote" in capsys.readouterr().out
    entry = tmp_path / "data" / INSTALLED[0]
    exec_line = next(x for x in entry.read_text().splitlines() if x.startswith("Exec="))
    command = exec_line.removeprefix("Exec=").removesuffix(" %F")
    assert command.strip('"').endswith("ocrdesk")
    validate_desktop(entry)
    if shutil.which("update-desktop-database"):  # the MIME cache names the entry for PDFs
        cache = (tmp_path / "data" / "applications" / "mimeinfo.cache").read_text()
        assert "application/pdf=ocrdesk.desktop;" in cache.splitlines()
    svg = (tmp_path / "data" / INSTALLED[1]).read_bytes()
    assert svg == (RESOURCES / "ocrdesk.svg").read_bytes()

    assert main(["install-desktop", "--uninstall"]) == 0
    for rel in INSTALLED:
        assert not (tmp_path / "data" / rel).exists(), rel
    assert main(["install-desktop", "--uninstall"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_exec_line_points_at_the_running_command(tmp_path: Path) -> None:
    entry = desktop_install.desktop_entry(
        "[Desktop Entry]\nExec=ocrdesk %F\nTryExec=ocrdesk\nName=X\n", "/opt/my apps/ocrdesk"
    )
    assert 'Exec="/opt/my apps/ocrdesk" %F' in entry
    assert "TryExec=/opt/my apps/ocrdesk" in entry and entry.count("TryExec") == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["gui"]),
        (["scan.pdf"], ["gui", "scan.pdf"]),
        (["/tmp/a b.png", "c.jpg"], ["gui", "/tmp/a b.png", "c.jpg"]),
        (["--server", "http://h/v1", "x.pdf"], ["gui", "--server", "http://h/v1", "x.pdf"]),
        (["convert", "x.pdf", "-o", "out"], ["convert", "x.pdf", "-o", "out"]),
        (["--version"], ["--version"]),
        (["conver"], ["conver"]),  # a mistyped command stays an error, not a file
    ],
)
def test_default_command(argv: list[str], expected: list[str]) -> None:
    assert with_default_command(argv) == expected


def test_files_on_the_bare_command_reach_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ocrdesk FILE` hands FILE to gui.app.run (stood in for here: the real window is opened
    from an installed wheel in test_wheel.py)."""
    calls: list[tuple[list[str], dict[str, Any]]] = []
    fake = types.ModuleType("ocrdesk.gui.app")
    fake.run = lambda files, **kw: calls.append((files, kw)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ocrdesk.gui.app", fake)
    pdf = tmp_path / "scan.pdf"
    assert main([str(pdf), "--server", "http://h:8000/v1"]) == 0
    assert calls == [([str(pdf)], {"server": "http://h:8000/v1", "api_key": None})]


def test_mistyped_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["conver"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
