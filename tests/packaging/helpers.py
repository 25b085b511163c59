"""What the packaging tests share: the validators, installed from Debian's packages where they
are missing and this is root. (The environment and window helpers for `ocrdesk` child processes
are in tests/processes.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess

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
