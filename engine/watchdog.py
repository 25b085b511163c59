"""A tiny process between OCRDesk and `vllm serve` that makes sure vLLM never outlives OCRDesk.

    python engine/watchdog.py [--grace SECONDS] -- COMMAND [ARGS...]

It is run as a script by path (not `-m engine.watchdog`) and imports nothing from OCRDesk, so it
works whatever the child's working directory and sys.path are.

What it does:
- starts COMMAND in a new session, hence its own process group whose id is the child's pid, so
  that one killpg reaches vLLM *and* the engine-core / worker processes it spawns;
- on Linux also sets PR_SET_PDEATHSIG=SIGKILL in that child, so that vLLM's main process dies even
  if this watchdog is SIGKILLed itself;
- holds its stdin, a pipe whose only writer is the OCRDesk process. When OCRDesk exits, crashes or
  is SIGKILLed, the kernel closes that pipe, the read returns EOF, and the watchdog stops the group;
- stops the group on SIGTERM or SIGHUP too (OCRDesk's normal stop), ignores SIGINT (Ctrl-C in a
  terminal reaches the whole foreground group; OCRDesk decides what happens then, and if it exits
  the pipe tells us);
- stopping = SIGTERM to the group, up to --grace seconds for vLLM to shut down cleanly, then
  SIGKILL to the group (which also takes any straggling grandchildren);
- when COMMAND exits on its own it SIGKILLs what is left of the group and exits with the same
  status: the same exit code, or killed by the same signal, so the supervisor sees -8 for SIGFPE.

The first line it prints is `[ocrdesk-watchdog] started pid N`, which is how the supervisor learns
vLLM's pid (and process group). COMMAND's stdout and stderr are the watchdog's own.

COMMAND carries no secret: the argv of this watchdog and of COMMAND is in /proc/PID/cmdline, which
every local user can read. The API key comes in the environment (VLLM_API_KEY), which COMMAND
inherits and only the same user can read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

PREFIX = "[ocrdesk-watchdog]"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGKILL the child when its parent dies, or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exit_like(returncode: int) -> None:
    """Exit with `returncode`; a negative one means: die by that signal, as the child did."""
    sys.stdout.flush()
    if returncode >= 0:
        os._exit(returncode)
    number = -returncode
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file for a re-raised SIGFPE
    with contextlib.suppress(Exception):
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    os._exit(128 + number)


def main(argv: list[str]) -> None:
    grace = 15.0
    if argv[:1] == ["--grace"]:
        grace = float(argv[1])
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(f"{PREFIX} usage: watchdog.py [--grace S] -- COMMAND [ARGS...]", file=sys.stderr)
        os._exit(2)

    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    try:
        child = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_parent())
    except OSError as exc:
        print(f"{PREFIX} cannot run {argv[0]!r}: {exc}", flush=True)
        os._exit(127)
    print(f"{PREFIX} started pid {child.pid}", flush=True)

    def watch_parent() -> None:
        with contextlib.suppress(OSError):
            while os.read(sys.stdin.fileno(), 4096):
                pass
        stop.set()

    def watch_child() -> None:
        child.wait()
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    threading.Thread(target=watch_child, daemon=True).start()
    while not stop.wait(1.0):
        pass

    if child.poll() is None:
        _killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"{PREFIX} pid {child.pid} ignored SIGTERM for {grace:g} s: SIGKILL", flush=True)
    _killpg(child.pid, signal.SIGKILL)  # the group: vLLM if still there, and any stragglers
    returncode = child.wait()
    print(f"{PREFIX} pid {child.pid} exited with status {returncode}", flush=True)
    _exit_like(returncode)


if __name__ == "__main__":
    main(sys.argv[1:])
