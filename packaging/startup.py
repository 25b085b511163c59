"""Start-up time of two `ocrdesk` installs, side by side (for packaging/README.md).

    python packaging/startup.py dist/ocrdesk/ocrdesk /tmp/venv/bin/ocrdesk

For each command, after one untimed warm-up run (so both read their files from the page cache):
- `--version`: the wall time of `ocrdesk --version` (the interpreter and the CLI's imports);
- window: from the start of `ocrdesk` (offscreen Qt) until its web view's Chromium process
  (QtWebEngineProcess) is running, that is until the window and its result view are built; then
  SIGTERM.
One timed run each, as the numbers are meant to show a ratio, not a distribution.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def version_seconds(command: str) -> float:
    began = time.perf_counter()
    subprocess.run([command, "--version"], check=True, capture_output=True)
    return time.perf_counter() - began


def webengine_started(pid: int) -> bool:
    """Whether `pid` has a Chromium child (QtWebEngineProcess): its web view is up."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        if name.startswith("QtWebEngineProc") and int(rest.split()[1]) == pid:
            return True
    return False


def window_seconds(command: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": f"{home}/.config",
            "QT_QPA_PLATFORM": "offscreen",
            "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox",
        }
        began = time.perf_counter()
        proc = subprocess.Popen(
            [command, "--server", "http://127.0.0.1:9/v1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not webengine_started(proc.pid):
                if proc.poll() is not None or time.perf_counter() - began > 120:
                    raise RuntimeError(f"{command} did not open its window")
                time.sleep(0.02)
            return time.perf_counter() - began
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = []
    for command in argv:
        version_seconds(command)
        window_seconds(command)
        rows.append((command, version_seconds(command), window_seconds(command)))
    print(f"{'command':60} {'--version s':>12} {'window s':>10}")
    for command, version, window in rows:
        print(f"{command:60} {version:12.2f} {window:10.2f}")
    (_, v1, w1), (_, v2, w2) = rows
    print(f"{'ratio first/second':60} {v1 / v2:12.2f} {w1 / w2:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
