"""`python -m build` gives a wheel and an sdist that carry resources/; the wheel installs into a
fresh virtualenv, where `ocrdesk --version`, `ocrdesk convert` against the loopback test server
and the window's open-and-close (offscreen, `ocrdesk FILE` with the file queued) all work.

The venv gets the app's dependencies from the package index (PySide6 among them): about a
minute. The venv's Python runs from a folder outside the checkout, so nothing is imported from
the source tree."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrdesk.engine import __version__
from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer
from tests.processes import convert_against_test_server, isolated_env

RESOURCE_NAMES = [
    "__init__.py",
    "ocrdesk.svg",
    "ocrdesk.desktop",
    "io.github.ocrdesk.OCRDesk.metainfo.xml",
    "result.html",
    "result.css",
    "result.js",
    "katex/katex.min.js",
    "katex/katex.min.css",
    "katex/contrib/auto-render.min.js",
    "katex/fonts/KaTeX_Main-Regular.woff2",
]
#: Where they are in the wheel (under the one import name) and in the sdist (the repository).
WHEEL_RESOURCES = [f"ocrdesk/resources/{name}" for name in RESOURCE_NAMES]
SDIST_RESOURCES = [f"resources/{name}" for name in RESOURCE_NAMES]

#: Run in the installed venv: open the window the way `ocrdesk FILE --server URL` does, and close
#: it from a timer once the event loop runs (what a person's click on the close button does).
GUI_SCRIPT = """
import sys
from PySide6 import QtWebEngineWidgets  # noqa: F401  (must be imported before the QApplication)
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
from ocrdesk.main import main

app = QApplication(sys.argv[:1])

def close():
    windows = [w for w in app.topLevelWidgets() if isinstance(w, QMainWindow) and w.isVisible()]
    print("WINDOWS", [w.windowTitle() for w in windows], flush=True)
    for w in windows:
        w.close()

QTimer.singleShot(3000, close)
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    wheel = next(dist.glob("ocrdesk-*.whl"))
    result = subprocess.run(
        [root / "bin" / "python", "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    yield root


def test_wheel_and_sdist_carry_resources(dist: Path) -> None:
    wheel = next(dist.glob(f"ocrdesk-{__version__}-py3-none-any.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"ocrdesk/main.py", "ocrdesk/engine/cli.py", "ocrdesk/gui/app.py"} <= names
    assert set(WHEEL_RESOURCES) <= names
    assert len([n for n in names if n.startswith("ocrdesk/resources/katex/fonts/")]) == 20
    # One import name: everything but the dist-info lives under ocrdesk/.
    assert {n.split("/")[0] for n in names} == {"ocrdesk", f"ocrdesk-{__version__}.dist-info"}
    entry_points = zipfile.ZipFile(wheel).read(f"ocrdesk-{__version__}.dist-info/entry_points.txt")
    assert b"ocrdesk = ocrdesk.main:main" in entry_points
    with tarfile.open(dist / f"ocrdesk-{__version__}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert set(SDIST_RESOURCES) <= members and "pyproject.toml" in members


def test_install_adds_one_import_name(venv: Path) -> None:
    """Installed beside other packages (OCRmyPDF's environment, say), OCRDesk adds `ocrdesk` and
    its dist-info to site-packages and no generic name such as `engine` or `gui`."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "show", "-f", "ocrdesk"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = [line.strip() for line in installed.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert tops == {"ocrdesk", f"ocrdesk-{__version__}.dist-info"}, tops
    assert (site / "ocrdesk" / "engine" / "__init__.py").is_file()
    assert not (site / "engine").exists() and not (site / "gui").exists()


def test_installed_version(venv: Path) -> None:
    result = subprocess.run(
        [venv / "bin" / "ocrdesk", "--version"], capture_output=True, text=True, cwd=venv
    )
    assert result.returncode == 0 and result.stdout.strip() == f"ocrdesk {__version__}"


def test_installed_convert(venv: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", 2)
    out = tmp_path / "out"
    result = convert_against_test_server([venv / "bin" / "ocrdesk"], pdf, out, tmp_path / "home")
    assert result.returncode == 0, result.stderr
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "<!-- page 2 -->" in md
    assert (out / "report" / "report.layout.pdf").is_file()


def test_installed_window_opens_and_closes(venv: Path, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", 1)
    with FakeOpenAIServer() as server:
        result = subprocess.run(
            [venv / "bin" / "python", "-c", GUI_SCRIPT, str(pdf), "--server", server.url],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=isolated_env(tmp_path / "home"),
            timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WINDOWS ['OCRDesk" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr


#: Run in the installed venv: the window's conversion process (engine/run_worker.py), started as
#: the window starts it, converts a document against the test server at argv[1].
WORKER_SCRIPT = """
import json, sys, time
from pathlib import Path
from ocrdesk import engine
from ocrdesk.engine import ClientSpec, ConvertOptions, JobSpec, RunWorker, protocol as p

pdf, out = Path(sys.argv[2]), Path(sys.argv[3])
worker = RunWorker.spawn()
worker.run(ClientSpec(sys.argv[1]), ConvertOptions(), [
    JobSpec(1, str(pdf), pdf.name, out, str(pdf), "m", "markdown")
])
messages = []
deadline = time.monotonic() + 90
while not any(isinstance(m, p.Ended) for m in messages) and time.monotonic() < deadline:
    messages += worker.receive()
    time.sleep(0.02)
worker.close()
print(json.dumps({
    "engine": engine.__file__,
    "pages": sorted(m.result.number for m in messages if isinstance(m, p.PageDone)),
    "end": [m.error for m in messages if isinstance(m, p.Ended)],
    "exit": worker.exit_code(),
}))
"""


def test_installed_conversion_worker(venv: Path, tmp_path: Path) -> None:
    """The window's conversion process from the installed wheel (no source tree on its path)."""
    pdf = make_pdf(tmp_path / "report.pdf", 2)
    with FakeOpenAIServer() as server:
        result = subprocess.run(
            [
                venv / "bin" / "python",
                "-c",
                WORKER_SCRIPT,
                server.url,
                str(pdf),
                str(tmp_path / "o"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=isolated_env(tmp_path / "home"),
            timeout=150,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "site-packages" in report["engine"]
    assert report["pages"] == [1, 2] and report["end"] == [None] and report["exit"] == 0
    assert (tmp_path / "o" / "o.md").is_file()


def test_resources_found_where_the_gui_looks(venv: Path) -> None:
    """gui/result_view.py finds ocrdesk/resources/ in site-packages."""
    code = (
        "from ocrdesk.gui.result_view import RESOURCES, SHELL; print(RESOURCES); "
        "assert SHELL.is_file()"
    )
    result = subprocess.run(
        [venv / "bin" / "python", "-c", code],
        capture_output=True,
        text=True,
        cwd=venv,
        env=isolated_env(venv / "home"),
    )
    assert result.returncode == 0, result.stderr
    assert "site-packages" in result.stdout
