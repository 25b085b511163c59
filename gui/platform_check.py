"""Can Qt open OCRDesk's window here? The check behind `ocrdesk doctor` and `make run`.

    python -m ocrdesk.gui.platform_check            # JSON (PlatformCheck); exit 0 when it can
    python gui/platform_check.py --debian-packages  # the Debian packages xcb needs, one line

Importing PySide6 proves little: on Linux, Qt's xcb platform plugin (the window on X11) loads
system libraries that the PySide6 wheel does not carry, and when one is missing Qt aborts the
process naming only the first. So the check starts a QApplication in a child process with
QT_QPA_PLATFORM unset (Qt's own choice of platform, as for a person), and, on Linux, lists every
library the xcb plugin cannot find: those `ldd` reports "not found" plus those Qt opens at run
time (dlopen, invisible to ldd). The fix installs all of them with one command.

This module imports only the standard library at its top (PySide6 inside functions), so shell
scripts can run it as a file for XCB_DEBIAN_PACKAGES.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The Debian packages Qt's xcb platform plugin needs (DESIGN.md, "Qt on a headless Linux
#: machine"), with the library each one provides. packaging/build.sh and the Makefile's `run`
#: read the package list from here.
XCB_LIBRARIES = {
    "libxcb-cursor0": "libxcb-cursor.so.0",
    "libxcb-icccm4": "libxcb-icccm.so.4",
    "libxcb-keysyms1": "libxcb-keysyms.so.1",
    "libxcb-image0": "libxcb-image.so.0",
    "libxcb-render-util0": "libxcb-render-util.so.0",
    "libxcb-xkb1": "libxcb-xkb.so.1",
    "libxkbcommon-x11-0": "libxkbcommon-x11.so.0",
    "libxcb-shape0": "libxcb-shape.so.0",
    "libxcb-randr0": "libxcb-randr.so.0",
    "libxcb-xinerama0": "libxcb-xinerama.so.0",
}
XCB_DEBIAN_PACKAGES = tuple(XCB_LIBRARIES)
#: Opened by the plugin at run time (dlopen, since Qt 6.5), so `ldd` does not list it.
OPENED_AT_RUN_TIME = ("libxcb-cursor.so.0",)
DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY")
MODULE = "ocrdesk.gui.platform_check"
PROBE_FLAG = "--probe"
PROBE_TIMEOUT_S = 60


@dataclass(frozen=True)
class PlatformCheck:
    """What the check found. `ok`: a QApplication started with Qt's own choice of platform."""

    ok: bool
    #: Qt's message when it could not start (its last lines), else "".
    error: str = ""
    #: Libraries the xcb plugin needs and cannot find (file names), Linux only.
    missing_libraries: list[str] = field(default_factory=list)
    #: Whether DISPLAY or WAYLAND_DISPLAY is set (without either there is no screen to open on).
    display: bool = False
    #: What to do about it, one line; "" when ok.
    fix: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PlatformCheck:
        return cls(**json.loads(text))


def install_command() -> str:
    """The one command that installs them all (with sudo unless this is root)."""
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y " + " ".join(XCB_DEBIAN_PACKAGES)


def has_display(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in DISPLAY_VARIABLES)


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the PySide6 in use, if it has one (Linux)."""
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    found = sorted((plugins / "platforms").glob("libqxcb*.so*"))
    return found[0] if found else None


def _loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def missing_libraries() -> list[str]:
    """The libraries the xcb plugin needs that this machine lacks ([] off Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    missing: list[str] = []
    plugin = xcb_plugin()
    if plugin is not None and shutil.which("ldd"):
        listed = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=False)
        for line in listed.stdout.splitlines():
            name, _, where = line.strip().partition(" => ")
            if where.strip() == "not found" and name not in missing:
                missing.append(name)
    for library in OPENED_AT_RUN_TIME:
        if library not in missing and not _loadable(library):
            missing.append(library)
    return missing


def probe_command() -> list[str]:
    """A child that starts a QApplication and exits 0 (in a PyInstaller bundle the executable
    understands `-m MODULE` for this module: packaging/ocrdesk_main.py)."""
    return [sys.executable, "-m", MODULE, PROBE_FLAG]


def probe() -> int:
    from PySide6.QtWidgets import QApplication

    QApplication([])
    return 0


def fix_for(missing: list[str], display: bool, error: str) -> str:
    if missing:
        known = set(XCB_LIBRARIES.values())
        if shutil.which("apt-get") and set(missing) <= known:
            return f"install the libraries Qt's xcb plugin needs: {install_command()}"
        return "install your system's packages for: " + " ".join(missing)
    if not display:
        return (
            "no display (DISPLAY and WAYLAND_DISPLAY are unset): open OCRDesk in a desktop "
            "session, or under a virtual one (xvfb-run -a ocrdesk)"
        )
    return "Qt could not start: see the error" if error else ""


def check(timeout: float = PROBE_TIMEOUT_S) -> PlatformCheck:
    """Start a QApplication in a child process as a person's `ocrdesk` would; what happened."""
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    try:
        import PySide6  # noqa: F401
    except ImportError as exc:
        return PlatformCheck(ok=False, error=str(exc), fix="install OCRDesk with its GUI (PySide6)")
    try:
        child = subprocess.run(
            probe_command(), env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        ok, error = child.returncode == 0, "" if child.returncode == 0 else child.stderr
    except subprocess.TimeoutExpired:
        ok, error = False, f"starting a QApplication took over {timeout:.0f} s"
    missing = missing_libraries()
    display = has_display(env)
    error = "\n".join(error.strip().splitlines()[-6:])
    return PlatformCheck(
        ok=ok,
        error=error,
        missing_libraries=missing,
        display=display,
        fix="" if ok else fix_for(missing, display, error),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == [PROBE_FLAG]:
        return probe()
    if args == ["--debian-packages"]:
        print(" ".join(XCB_DEBIAN_PACKAGES))
        return 0
    if args:
        print(__doc__, file=sys.stderr)
        return 2
    result = check()
    print(result.to_json())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
