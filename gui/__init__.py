"""OCRDesk's desktop GUI (PySide6 + qasync) over the headless `engine` package.

Workaround at import: PySide6 6.12's `SignalInstance.emit()` drops one reference to `True` per
call (repro in docs/gui.md). On Python 3.12+ `True` is immortal and nothing happens;
on 3.11 the interpreter aborts ("bool_dealloc") after a few hundred emits. There, the reference
counts of `True` and `False` are raised once, far beyond what any session can emit.
"""

from __future__ import annotations

import sys


def _guard_bool_refcounts() -> None:
    if sys.version_info >= (3, 12):
        return
    import ctypes

    for value in (True, False):
        ctypes.c_ssize_t.from_address(id(value)).value += 1 << 40


_guard_bool_refcounts()
