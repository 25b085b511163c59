"""packaging/build.sh builds the PyInstaller bundle and the .deb; `dpkg -i` installs it on this
machine (root, as CI is), the installed `ocrdesk` converts a document against the loopback test
server, runs a local "vLLM" (the stand-in) through the bundle's own watchdog, runs the window's
conversion process, opens its window offscreen and runs doctor's window check; `dpkg -r` then
leaves none of its files behind.

Marked `packaging`: about 3 minutes on CI's 2 cores (build environment, PyInstaller, zstd)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrdesk.engine import ConvertOptions, __version__, protocol
from ocrdesk.engine.run_worker import FROZEN_FLAG, ClientSpec, JobSpec, RunWorker
from ocrdesk.gui import platform_check
from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer
from tests.processes import convert_against_test_server, isolated_env, sigterm_window

pytestmark = pytest.mark.packaging

INSTALLED = Path("/usr/bin/ocrdesk")
PAGE_TEXT = "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# A page\n\nSome words."
FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fakes' / 'vllm'}"


def _dpkg_status() -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", "ocrdesk"], capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else ""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not here (Debian's dpkg)")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh")],
        env={**os.environ, "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out


#: Two CI runs on one machine install the same system package: the second waits for the first
#: to have removed it (instead of skipping these tests, as it did).
DEB_LOCK = Path(tempfile.gettempdir()) / "ocrdesk-deb-tests.lock"
DEB_LOCK_SECONDS = 900


@contextlib.contextmanager
def _deb_lock() -> Iterator[None]:
    with open(DEB_LOCK, "a") as handle:
        deadline = time.monotonic() + DEB_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run held {DEB_LOCK} for {DEB_LOCK_SECONDS} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def installed(built: Path) -> Iterator[list[Path]]:
    """The .deb installed with dpkg -i; yields its files (dpkg -L); removes it afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing the .deb needs root (CI is root)")
    with _deb_lock():
        if "installed" in _dpkg_status():
            pytest.skip("an ocrdesk package is installed here already; not touching it")
        deb = next(built.glob(f"ocrdesk_{__version__}_*.deb"))
        result = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True)
        try:
            assert result.returncode == 0, result.stdout + result.stderr
            listed = subprocess.run(["dpkg", "-L", "ocrdesk"], capture_output=True, text=True)
            yield [Path(line) for line in listed.stdout.splitlines() if line.startswith("/")]
        finally:
            subprocess.run(["dpkg", "-r", "ocrdesk"], capture_output=True)


def test_bundle_is_lean(built: Path) -> None:
    bundle = built / "ocrdesk"
    for name in ("vllm", "torch", "onnxruntime", "numpy"):
        assert not (bundle / "_internal" / name).exists(), name
    assert not list((bundle / "_internal").glob("PySide6/Qt/qml"))
    assert (bundle / "_internal" / "ocrdesk" / "resources" / "katex" / "katex.min.js").is_file()


def test_deb_puts_files_in_their_places(installed: list[Path]) -> None:
    assert INSTALLED.is_symlink() and os.access(INSTALLED, os.X_OK)
    for path in (
        "/opt/ocrdesk/ocrdesk",
        "/usr/share/applications/ocrdesk.desktop",
        "/usr/share/icons/hicolor/scalable/apps/ocrdesk.svg",
        "/usr/share/metainfo/io.github.ocrdesk.OCRDesk.metainfo.xml",
    ):
        assert Path(path) in installed and Path(path).is_file(), path
    if shutil.which("update-desktop-database"):  # dpkg's trigger ran it: "Open with OCRDesk"
        cache = Path("/usr/share/applications/mimeinfo.cache").read_text(encoding="utf-8")
        pdf = next(line for line in cache.splitlines() if line.startswith("application/pdf="))
        assert "ocrdesk.desktop" in pdf
    version = subprocess.run([INSTALLED, "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"ocrdesk {__version__}"


def test_installed_convert(installed: list[Path], tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", 3)
    result = convert_against_test_server([INSTALLED], pdf, tmp_path / "out", tmp_path / "home")
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "out" / "report" / "report.md").read_text(encoding="utf-8")
    assert "<!-- page 3 -->" in md
    assert (tmp_path / "out" / "report" / "report.layout.pdf").is_file()


def test_installed_convert_with_a_local_vllm(installed: list[Path], tmp_path: Path) -> None:
    """--local: the bundle starts `vllm` (here the stand-in) under its own watchdog, which in a
    bundle is the bundle's executable (packaging/ocrdesk_main.py), and stops it at the end."""
    pdf = make_pdf(tmp_path / "report.pdf", 2)
    env = isolated_env(tmp_path / "home", FAKE_VLLM_STATE_DIR=str(tmp_path))
    result = subprocess.run(
        [INSTALLED, "convert", str(pdf), "-o", str(tmp_path / "out"), "--vllm", FAKE_VLLM, "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "report" / "report.md").is_file()


def test_installed_conversion_worker(installed: list[Path], tmp_path: Path) -> None:
    """The window's conversion process in the bundle: the bundle's executable started with
    --ocrdesk-run-worker FD (packaging/ocrdesk_main.py) converts a document and writes it."""
    pdf = make_pdf(tmp_path / "report.pdf", 2)
    worker = RunWorker.spawn([str(INSTALLED), FROZEN_FLAG])
    messages: list[object] = []
    try:
        with FakeOpenAIServer([PAGE_TEXT], token_delay=0) as server:
            out = tmp_path / "out"
            job = JobSpec(1, str(pdf), pdf.name, out, str(pdf), server.model, "markdown")
            worker.run(ClientSpec(server.url, api_key=server.api_key), ConvertOptions(), [job])
            deadline = time.monotonic() + 120
            ended = False
            while not ended and time.monotonic() < deadline:
                assert not worker.gone, f"the worker died: exit {worker.exit_code()}"
                messages.extend(worker.receive())
                ended = any(isinstance(m, protocol.Ended) for m in messages)
                time.sleep(0.02)
    finally:
        worker.close()
    assert protocol.Ended(None) in messages, messages[-5:]
    assert sorted(m.result.number for m in messages if isinstance(m, protocol.PageDone)) == [1, 2]
    assert (tmp_path / "out" / "out.md").is_file()
    assert worker.exit_code() == 0


def test_installed_window_opens(installed: list[Path], tmp_path: Path) -> None:
    """The window comes up (it logs that it is open, its web view's Chromium process runs),
    and SIGTERM closes it the normal way (exit 0)."""
    pdf = make_pdf(tmp_path / "scan.pdf", 1)
    log = tmp_path / "gui.log"
    env = isolated_env(tmp_path / "home")
    status = sigterm_window([INSTALLED, str(pdf)], cwd=tmp_path, env=env, log=log)
    assert status == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_installed_window_check(installed: list[Path], tmp_path: Path) -> None:
    """`ocrdesk doctor`'s window check runs in the bundle too (`-m ocrdesk.gui.platform_check`,
    packaging/ocrdesk_main.py): with Qt's default platform and no display, no window can open,
    and it says so with a fix."""
    env = isolated_env(tmp_path / "home")
    for name in ("QT_QPA_PLATFORM", *platform_check.DISPLAY_VARIABLES):
        env.pop(name, None)
    result = subprocess.run(
        [INSTALLED, "-m", platform_check.MODULE], capture_output=True, text=True, env=env
    )
    found = platform_check.PlatformCheck.from_json(result.stdout)
    assert (found.ok, found.display, result.returncode) == (False, False, 1), result.stderr
    assert found.error and found.fix


def test_dpkg_r_leaves_nothing(installed: list[Path]) -> None:
    """Run last in this module (pytest keeps file order): removes the package itself."""
    result = subprocess.run(["dpkg", "-r", "ocrdesk"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _dpkg_status() in ("", "unknown ok not-installed")  # no record left, not even config
    left = [p for p in installed if p.exists() and not p.is_dir()]
    assert not left
    assert not Path("/opt/ocrdesk").exists() and not INSTALLED.exists()
    owned_dirs = [p for p in installed if "ocrdesk" in str(p)]
    assert not [p for p in owned_dirs if p.exists()]
