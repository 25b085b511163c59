"""`make run`'s set-up of the machine: the system libraries OCRDesk's window needs.

    python packaging/run_setup.py [OCRDESK ARGS...]    # the same arguments `ocrdesk` gets

When those arguments open the window (ocrdesk.main's rule: no command, `gui`, or files) on
Linux with Qt's default platform (QT_QPA_PLATFORM unset or xcb), the libraries that Qt's xcb
plugin cannot find (ocrdesk.gui.platform_check) are installed with apt-get when this is root on
a machine that has it; otherwise it stops (exit 2) with the one command that installs them all.
The CLI's commands (`convert`, `doctor`, ...) need none of this and pass at once. Without a
display the libraries are still installed (`xvfb-run -a make run` needs them), then it stops
saying that there is no screen to open the window on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ocrdesk.gui import platform_check
from ocrdesk.main import GUI_COMMAND, with_default_command


def opens_the_window(args: list[str]) -> bool:
    return with_default_command(args)[:1] == [GUI_COMMAND]


def say(text: str) -> None:
    print(f"make run: {text}", file=sys.stderr)


def install(packages: tuple[str, ...]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("installing the libraries Qt's window needs: apt-get install -y " + " ".join(packages))
    command = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(command, env=env, check=False).returncode != 0:
        # A fresh container has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(command, env=env, check=False)


def main(args: list[str], *, dry_run: bool = False) -> int:
    if not opens_the_window(args) or not sys.platform.startswith("linux"):
        return 0
    if os.environ.get("QT_QPA_PLATFORM", "xcb") != "xcb":
        return 0  # a platform chosen by hand (offscreen, wayland): its own business
    missing = platform_check.missing_libraries()
    if missing:
        can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
        if can_install and not dry_run:
            install(platform_check.XCB_DEBIAN_PACKAGES)
            missing = platform_check.missing_libraries()
        if missing:
            say("the window needs system libraries this machine lacks: " + " ".join(missing))
            say(platform_check.fix_for(missing, display=True, error=""))
            return 2
    if not platform_check.has_display():
        say(platform_check.fix_for([], display=False, error=""))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
