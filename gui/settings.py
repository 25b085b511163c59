"""The app's settings: one table of defaults, stored with QSettings; the API key in a keyring.

`Settings` reads and writes typed values by key; every key and its default is in `DEFAULTS`. The
remote API key goes to the platform keyring when `keyring` is importable and has a working
backend; otherwise it is kept in QSettings and `key_storage()` says so, so the dialog can tell.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths

from ocrdesk.engine import DEFAULT_DPI, DEFAULT_MODEL

KEYRING_SERVICE = "OCRDesk"
KEYRING_USER = "remote-api-key"


def _default_output() -> str:
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return str(Path(docs or Path.home()) / "OCRDesk")


#: key -> (default, type). The one place where a setting and its default are named.
DEFAULTS: dict[str, tuple[Any, type]] = {
    "engine/mode": ("local", str),  # "local" (a vLLM the app starts) or "remote"
    "engine/model": (DEFAULT_MODEL, str),  # local: hub id or folder
    "engine/vllm": ("", str),  # local: vllm executable ("" = find it)
    "engine/gpu_memory_utilization": (0.9, float),
    "engine/concurrency": (16, int),
    "engine/url": ("", str),  # remote: base URL
    "run/task": ("markdown", str),
    "run/family": ("auto", str),  # "auto", "deepseek-ocr", "deepseek-ocr-2"
    "run/dpi": (DEFAULT_DPI, int),
    "output/folder": (None, str),  # None: Documents/OCRDesk, decided at read time
}


def _keyring() -> Any | None:
    """The keyring module when it has a usable backend, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return None
    return keyring


class Settings:
    """Typed access to QSettings with the defaults of `DEFAULTS`."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings or QSettings("OCRDesk", "OCRDesk")

    def get(self, key: str) -> Any:
        default, kind = DEFAULTS[key]
        if key == "output/folder" and default is None:
            default = _default_output()
        value = self.q.value(key, default)
        if value is None:
            return default
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value: Any) -> None:
        if key not in DEFAULTS:
            raise KeyError(key)
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()

    # -- the API key ---------------------------------------------------------------------------

    def key_storage(self) -> str:
        """Where the API key is kept: "keyring" or "settings" (in clear)."""
        return "keyring" if _keyring() is not None else "settings"

    def api_key(self) -> str:
        ring = _keyring()
        if ring is not None:
            with contextlib.suppress(Exception):
                return str(ring.get_password(KEYRING_SERVICE, KEYRING_USER) or "")
        return str(self.q.value("engine/api_key", "") or "")

    def set_api_key(self, key: str) -> None:
        ring = _keyring()
        if ring is not None:
            try:
                if key:
                    ring.set_password(KEYRING_SERVICE, KEYRING_USER, key)
                else:
                    with contextlib.suppress(Exception):
                        ring.delete_password(KEYRING_SERVICE, KEYRING_USER)
                self.q.remove("engine/api_key")
                return
            except Exception:
                pass
        self.q.setValue("engine/api_key", key)
