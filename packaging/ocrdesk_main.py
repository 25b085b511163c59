"""Entry point of the PyInstaller bundle: `ocrdesk` as the wheel's console script is, plus one
job the frozen executable has to do itself.

The engine starts a local vLLM as `sys.executable engine/watchdog.py -- vllm serve ...` (see
engine/local_server.py). In a bundle `sys.executable` is this program, not a Python, and
watchdog.py is no file on disk but a module in the archive; so a first argument naming
engine/watchdog.py runs that module's main here. Its child, vLLM, gets the library path the user
had, not the bundle's (PyInstaller keeps the original in LD_LIBRARY_PATH_ORIG).

Likewise the GUI runs its conversions in a child process (engine/run_worker.py), started as
`sys.executable --ocrdesk-run-worker FD`, pages render in `sys.executable --ocrdesk-render-worker`
processes (engine/mupdf.py), and `ocrdesk doctor`'s window check runs
`sys.executable -m ocrdesk.gui.platform_check [...]` (the one module run with -m in a bundle).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path


def _is_watchdog_call(argv: list[str]) -> bool:
    if not argv:
        return False
    path = Path(argv[0])
    return path.name == "watchdog.py" and path.parent.name == "engine"


def _restore_library_path() -> None:
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)


def main() -> int:
    argv = sys.argv[1:]
    if getattr(sys, "frozen", False) and _is_watchdog_call(argv):
        from ocrdesk.engine import watchdog

        _restore_library_path()
        watchdog.main(argv[1:])  # exits with vLLM's status
        return 0
    if getattr(sys, "frozen", False) and argv[:1] == ["--ocrdesk-run-worker"]:
        # The GUI's conversion worker (engine/run_worker.py), started as this program.
        from ocrdesk.engine import run_worker

        return run_worker.main(argv[1:])
    if getattr(sys, "frozen", False) and argv[:1] == ["--ocrdesk-render-worker"]:
        # A render process of engine/mupdf.py (pages rendered with a time limit), as this program.
        from ocrdesk.engine import mupdf

        return mupdf.worker_main()
    if getattr(sys, "frozen", False) and argv[:1] == ["-m"]:
        from ocrdesk.gui import platform_check

        if argv[1:2] == [platform_check.MODULE]:
            return platform_check.main(argv[2:])
    from ocrdesk.main import main as ocrdesk_main

    return ocrdesk_main(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless on Linux; needed should anything use it on Windows
    sys.exit(main())
