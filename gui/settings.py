"""The app's settings: one table of defaults, stored with QSettings; the API key in a keyring.

`Settings` reads and writes typed values by key; every key and its default is in `DEFAULTS`. The
remote API key goes to the platform keyring when `keyring` is importable and has a working
backend; otherwise it is kept in QSettings and `key_storage()` says so, so the dialog can tell.
Because the key may be in it, the settings file is readable by its owner only (0600).

`ocrdesk gui --server URL` puts a remote server in force for the session without saving it
(`override_server`): `get` answers with it, and the dialog shows it, until a person changes the
engine in Settings.

`QueueState` is what the window keeps between sessions that is not a setting: the queued
documents not yet finished (queued again at the next start) and the export folders of documents
a person removed (history leaves them out). It is a small JSON file in the user's state folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from PySide6.QtCore import QSettings, QStandardPaths

from ocrdesk.engine import APP_NAME, DEFAULT_DPI, DEFAULT_FORMATS, DEFAULT_MODEL, settings_path

KEYRING_SERVICE = "OCRDesk"
KEYRING_USER = "remote-api-key"
STATE_FILE = "queue.json"
SETTINGS_MODE = 0o600  # the file may hold the API key in clear

log = logging.getLogger(__name__)

#: The keys that say which engine the window uses: a change to one of them reconnects it.
ENGINE_KEYS = frozenset(
    {
        "engine/mode",
        "engine/model",
        "engine/vllm",
        "engine/gpus",
        "engine/gpu_memory_utilization",
        "engine/concurrency",
        "engine/url",
        "engine/api_key",
    }
)


def _default_output() -> str:
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return str(Path(docs or Path.home()) / "OCRDesk")


#: key -> (default, type). The one place where a setting and its default are named.
DEFAULTS: dict[str, tuple[Any, type]] = {
    "engine/mode": ("local", str),  # "local" (a vLLM the app starts) or "remote"
    "engine/model": (DEFAULT_MODEL, str),  # local: hub id or folder
    "engine/vllm": ("", str),  # local: vllm executable ("" = find it)
    # local: the GPUs, as engine/gpus.py parses them ("all", "2", "0,2"); the CLI reads it too
    "engine/gpus": ("all", str),
    "engine/gpu_memory_utilization": (0.9, float),
    "engine/concurrency": (
        0,
        int,
    ),  # pages in flight; 0: found from the server (engine/concurrency.py)
    "engine/url": ("", str),  # remote: base URL
    "run/task": ("markdown", str),
    "run/family": ("auto", str),  # "auto", "deepseek-ocr", "deepseek-ocr-2"
    "run/dpi": (DEFAULT_DPI, int),
    # Ask for token log-probabilities: each block's confidence, low ones tinted (off by default
    # as in the CLI: it costs the client ~11 % of its ceiling, engine/tasks.py Sampling.logprobs)
    "run/confidence": (False, bool),
    "output/folder": (None, str),  # None: Documents/OCRDesk, decided at read time
    "export/formats": (",".join(DEFAULT_FORMATS), str),  # the export dialog's last choice
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
        # One INI file on every platform, at the path the engine reads the vLLM setting from
        # (engine/app_settings.py; on Linux the file QSettings(APP_NAME, APP_NAME) used).
        self.q = qsettings or QSettings(str(settings_path()), QSettings.Format.IniFormat)
        # The app's own settings keep their state in the user's state folder; settings given
        # as a file (tests, the screenshot script) keep it beside that file.
        self.state_path = (
            platformdirs.user_state_path(APP_NAME) / STATE_FILE
            if qsettings is None
            else Path(self.q.fileName()).parent / STATE_FILE
        )
        self._override: dict[str, Any] = {}
        self._override_key: str | None = None
        self._protect(create=True)

    def _file(self) -> Path | None:
        path = Path(self.q.fileName())
        return path if os.name == "posix" and path.is_absolute() else None

    def _protect(self, create: bool = False) -> None:
        """Make the settings file 0600, creating it empty first (QSettings keeps the mode of
        the file it rewrites), so that no key is ever in a file others can read."""
        path = self._file()
        if path is None:
            return
        try:
            if create and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SETTINGS_MODE))
            if path.exists() and path.stat().st_mode & 0o777 != SETTINGS_MODE:
                path.chmod(SETTINGS_MODE)
        except OSError as exc:
            log.info("cannot make %s private: %s", path, exc.strerror)

    # -- a server given on the command line ---------------------------------------------------

    def override_server(self, url: str, api_key: str | None = None) -> None:
        """Use the remote server `url` for this session, without saving it."""
        self._override = {"engine/mode": "remote", "engine/url": url}
        self._override_key = api_key

    def end_override(self) -> None:
        self._override, self._override_key = {}, None

    @property
    def server_override(self) -> str | None:
        """The URL given on the command line while it is in force, else None."""
        url = self._override.get("engine/url")
        return str(url) if url is not None else None

    def get(self, key: str) -> Any:
        if key in self._override:
            return self._override[key]
        default, kind = DEFAULTS[key]
        if key == "output/folder" and default is None:
            default = _default_output()
        value = self.q.value(key, default)
        if value is None:
            return default
        if kind is bool and isinstance(value, str):  # an INI file gives "true" / "false" back
            return value.strip().lower() in ("true", "1", "yes")
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
        self._protect()

    # -- the API key ---------------------------------------------------------------------------

    def key_storage(self) -> str:
        """Where the API key is kept: "keyring" or "settings" (in clear)."""
        return "keyring" if _keyring() is not None else "settings"

    def api_key(self) -> str:
        if self._override_key is not None:
            return self._override_key
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
        self.sync()


@dataclass
class QueueState:
    """What the window keeps between sessions: the unfinished documents queued (paths) and
    the export folders of removed documents (history leaves them out)."""

    path: Path
    queued: list[str] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> QueueState:
        """The state at `path`; an empty one when there is none or it cannot be read."""
        state = cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            log.info("ignoring the queue state in %s: %s", path, exc)
            return state
        if isinstance(data, dict):
            state.queued = [str(p) for p in data.get("queued", []) if isinstance(p, str)]
            state.removed = {str(p) for p in data.get("removed", []) if isinstance(p, str)}
        return state

    def is_removed(self, folder: Path) -> bool:
        return str(folder.resolve()) in self.removed

    def remove(self, folders: Iterable[Path]) -> None:
        self.removed.update(str(f.resolve()) for f in folders)

    def restore(self, folders: Iterable[Path]) -> None:
        """These folders are written again: they are no longer removed."""
        self.removed.difference_update(str(f.resolve()) for f in folders)

    def save(self) -> None:
        data = {"queued": self.queued, "removed": sorted(self.removed)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(self.path.name + ".tmp")
            temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            temp.replace(self.path)
        except OSError as exc:
            log.warning("cannot keep the queue in %s: %s", self.path, exc.strerror)
