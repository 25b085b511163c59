"""`ocrdesk install-desktop`: put OCRDesk in the desktop's application menu for a pip, pipx or uv
install, which has no system places of its own.

    from ocrdesk.engine.desktop_install import install, uninstall
    written = install()      # ~/.local/share/applications/ocrdesk.desktop, the icon, the metainfo
    removed = uninstall()

Files go under the XDG data folder (`$XDG_DATA_HOME`, else ~/.local/share, as platformdirs
reads it): `applications/ocrdesk.desktop` (its `Exec=` names the `ocrdesk` that ran this, by its
full path, since a menu's PATH often lacks ~/.local/bin), `icons/hicolor/scalable/apps/ocrdesk.svg`
and `metainfo/io.github.ocrdesk.OCRDesk.metainfo.xml`. The caches that menus and file managers read
(`update-desktop-database`, `gtk-update-icon-cache`) are refreshed where those tools exist.
The Debian package installs the same three files in /usr/share instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ocrdesk.resources import RESOURCES

DESKTOP_FILE = "ocrdesk.desktop"
ICON_FILE = "ocrdesk.svg"
METAINFO_FILE = "io.github.ocrdesk.OCRDesk.metainfo.xml"


@dataclass(frozen=True)
class Placement:
    """Where one resource goes, relative to the XDG data folder."""

    source: str
    target: Path


PLACEMENTS = (
    Placement(DESKTOP_FILE, Path("applications") / DESKTOP_FILE),
    Placement(ICON_FILE, Path("icons/hicolor/scalable/apps") / ICON_FILE),
    Placement(METAINFO_FILE, Path("metainfo") / METAINFO_FILE),
)


def supported() -> bool:
    """Whether this platform has freedesktop menus (Linux and the BSDs; not Windows or macOS)."""
    return sys.platform not in ("win32", "cygwin", "darwin")


def data_home() -> Path:
    """The user's XDG data folder: $XDG_DATA_HOME, else ~/.local/share."""
    return platformdirs.user_data_path()


def launcher() -> str:
    """The command that starts this OCRDesk, for the desktop entry's Exec key.

    The frozen bundle's own executable; else the `ocrdesk` script that is running (argv[0]) or
    the one on PATH; else the plain name."""
    if getattr(sys, "frozen", False):
        return str(Path(sys.executable).resolve())
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "ocrdesk" and argv0.is_file():
        return str(argv0.absolute())
    found = shutil.which("ocrdesk")
    return str(Path(found).absolute()) if found else "ocrdesk"


def quote_exec_arg(arg: str) -> str:
    """`arg` quoted as the Desktop Entry spec wants inside Exec, when it needs quoting."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    if not any(c in reserved for c in arg):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def desktop_entry(text: str, command: str) -> str:
    """The packaged desktop entry with its Exec and TryExec pointing at `command`."""
    lines = []
    for line in text.splitlines():
        if line.startswith("Exec="):
            rest = line[len("Exec=") :].split(" ", 1)
            args = f" {rest[1]}" if len(rest) > 1 else ""
            line = f"Exec={quote_exec_arg(command)}{args}"
        elif line.startswith("TryExec="):
            continue
        lines.append(line)
    if Path(command).is_absolute():
        index = next(i for i, line in enumerate(lines) if line.startswith("Exec=")) + 1
        lines.insert(index, f"TryExec={command}")
    return "\n".join(lines) + "\n"


def _refresh_caches(base: Path) -> None:
    """Refresh the MIME and icon caches where the tools exist; a missing tool is no error."""
    commands = [
        ["update-desktop-database", "-q", str(base / "applications")],
        ["gtk-update-icon-cache", "-q", "-t", "-f", str(base / "icons" / "hicolor")],
    ]
    for command in commands:
        if shutil.which(command[0]) and Path(command[-1]).is_dir():
            subprocess.run(command, check=False, capture_output=True)


def install(base: Path | None = None, *, command: str | None = None) -> list[Path]:
    """Write the desktop entry, icon and metainfo under `base` (default: `data_home()`).

    Returns the files written. Raises FileNotFoundError when a resource is missing."""
    base = base or data_home()
    command = command or launcher()
    written = []
    for place in PLACEMENTS:
        source = RESOURCES / place.source
        target = base / place.target
        target.parent.mkdir(parents=True, exist_ok=True)
        if place.source == DESKTOP_FILE:
            text = desktop_entry(source.read_text(encoding="utf-8"), command)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, target)
        written.append(target)
    _refresh_caches(base)
    return written


def uninstall(base: Path | None = None) -> list[Path]:
    """Remove what `install` wrote under `base`; returns the files removed."""
    base = base or data_home()
    removed = []
    for place in PLACEMENTS:
        target = base / place.target
        if target.exists():
            target.unlink()
            removed.append(target)
    _refresh_caches(base)
    return removed
