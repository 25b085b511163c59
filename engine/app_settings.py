"""Where the window keeps its settings, and reading the few of them the headless commands use too.

The window (gui/settings.py) stores its settings with QSettings in the INI file `settings_path()`
names; the engine never imports Qt, so `ocrdesk convert --local` and `ocrdesk doctor` read the
vLLM executable and the GPUs a person chose in Settings from that file with `configparser`. Only
plain values are read: QSettings writes a string that needs it in double quotes with backslash
escapes, and one that is not a plain string as `@Type(...)`, which is taken as not set.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import platformdirs

__all__ = ["APP_NAME", "saved_gpus", "saved_setting", "saved_vllm", "settings_path"]

APP_NAME = "OCRDesk"
VLLM_KEY = ("engine", "vllm")
GPUS_KEY = ("engine", "gpus")


def settings_path() -> Path:
    """The window's settings file: OCRDesk.conf in the user's config folder (on Linux
    $XDG_CONFIG_HOME/OCRDesk, where QSettings keeps a native settings file too)."""
    return platformdirs.user_config_path(APP_NAME, appauthor=False) / f"{APP_NAME}.conf"


def _unquote(value: str) -> str | None:
    value = value.strip()
    if value.startswith("@"):
        return None  # a QVariant of another type, or an escaped "@" string: not ours to read
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, escaped = [], False
        for ch in value[1:-1]:
            if escaped:
                out.append({"n": "\n", "t": "\t", "r": "\r"}.get(ch, ch))
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return value


def saved_setting(section: str, key: str, path: Path | None = None) -> str | None:
    """A plain string the window saved under `section/key`; None when it is not there or the
    file cannot be read."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # QSettings keys keep their case
    try:
        with open(path or settings_path(), encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    if not parser.has_option(section, key):
        return None
    return _unquote(parser.get(section, key))


def saved_vllm(path: Path | None = None) -> str | None:
    """The vLLM executable chosen in the window's Settings; None when none was chosen."""
    return saved_setting(*VLLM_KEY, path=path) or None


def saved_gpus(path: Path | None = None) -> str | None:
    """The GPUs chosen in the window's Settings, as written there ("all", "2", "0,2"); None when
    none were chosen."""
    return saved_setting(*GPUS_KEY, path=path) or None
