"""What the packaging tests share: the validators (installed from Debian's packages where they
are missing and this is root), a small PDF, and a GUI environment that runs offscreen and
touches nothing of the real user's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

APT_PACKAGES = {"desktop-file-validate": "desktop-file-utils", "appstreamcli": "appstream"}


def need_tool(name: str) -> str:
    """The path of `name`; as root with apt-get, its Debian package is installed first if needed;
    otherwise the test is skipped."""
    found = shutil.which(name)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get") and name in APT_PACKAGES:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["update", "-q"], ["install", "-y", "-q", APT_PACKAGES[name]]):
            subprocess.run(["apt-get", *command], env=env, capture_output=True, check=False)
        found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package {APT_PACKAGES.get(name, name)})")
    return found


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for a child `ocrdesk`: its own HOME and XDG folders, offscreen Qt,
    Chromium without its sandbox (root in CI cannot have one; tests only), no keyring."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "QT_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        QT_QPA_PLATFORM="offscreen",
        QTWEBENGINE_CHROMIUM_FLAGS="--no-sandbox",
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    env.update(extra)
    return env
