"""`pip install ocrdesk[ocrmypdf]` into a fresh virtualenv makes `ocrmypdf --ocr-engine ocrdesk`
work there with no `--plugin` (the wheel's `ocrmypdf` entry point): a scanned real lecture page
comes out with its text where its ink is, as poppler's `pdftotext -bbox` reads it, and a server
that fails makes OCRmyPDF fail with OCRDesk's reason, the input untouched.

The wheel is built from the checkout; the venv gets OCRmyPDF and the app's dependencies from the
package index, as tests/packaging/test_wheel.py's does (about two minutes the first time). Its
programs run from a folder outside the checkout, so nothing is imported from the source tree.
OCRmyPDF needs Ghostscript and Tesseract on the machine (.ci/run installs them)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from ocrdesk.engine.cli import API_KEY_ENV
from ocrdesk.engine.parser import parse
from ocrdesk.engine.text_layer import block_lines
from tests.conftest import REPO, need
from tests.fakes.openai_server import FakeOpenAIServer
from tests.processes import isolated_env

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(sys.version_info < (3, 11), reason="OCRmyPDF 17 needs Python 3.11"),
]

if sys.version_info >= (3, 11):  # the helpers' module needs OCRmyPDF, which needs 3.11
    from tests.engine.test_ocrmypdf_plugin import DPI, PAGE, RAW, _digest, _need_programs, _scan
    from tests.engine.test_searchable_pdf import _pdftotext_pages

#: Points a word's centre may sit outside its block's box (the plugin test's slack).
SLACK = 2.0


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("ocrdesk-*.whl"))
    root = tmp_path_factory.mktemp("ocrmypdf-venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    installed = subprocess.run(
        [root / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[ocrmypdf]"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=1500,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


def _ocrmypdf(venv: Path) -> list[str]:
    """The venv's own `ocrmypdf` with OCRDesk as its engine (no --plugin)."""
    return [str(venv / "bin" / "ocrmypdf"), "--ocr-engine", "ocrdesk"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = isolated_env(home, **extra)
    if API_KEY_ENV not in extra:
        env.pop(API_KEY_ENV, None)
    return env


def test_the_extra_installs_ocrmypdf_with_the_engine_offered(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import ocrdesk, ocrmypdf; print(ocrdesk.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv)  # the wheel's, not the checkout's
    done = subprocess.run(
        [venv / "bin" / "ocrmypdf", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(tmp_path / "home"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "{auto,tesseract,none,ocrdesk}" in text
    for option in ("--ocrdesk-server", "--ocrdesk-api-key", "--ocrdesk-model", "--ocrdesk-task"):
        assert option in text


def test_installed_ocrmypdf_puts_the_text_on_the_ink(venv: Path, tmp_path: Path) -> None:
    _need_programs()
    scan = _scan(tmp_path)
    out = tmp_path / "out.pdf"
    raw = need(RAW).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw], api_key="secret-key") as server:
        done = subprocess.run(
            [
                *_ocrmypdf(venv),
                "--ocrdesk-server",
                server.url,
                "--ocrdesk-api-key",
                "secret-key",
                "--ocrdesk-task",
                "markdown",
                scan,
                out,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path / "home"),
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.completed == 1
    (words,) = _pdftotext_pages(out)
    assert words
    with_points = [(text, ((x1 + x2) / 2, (y1 + y2) / 2)) for text, (x1, y1, x2, y2) in words]
    # The model's boxes, in pixels of the scan's image, then in points of the page.
    with Image.open(need(PAGE)) as image:
        width_px, height_px = image.size
    checked = 0
    for block in parse(raw, width_px, height_px).blocks:
        if block.label not in ("sub_title", "text") or block.box is None:
            continue
        x1, y1, x2, y2 = (v * 72 / DPI for v in block.box)
        inside = [
            text
            for text, (cx, cy) in with_points
            if x1 - SLACK <= cx <= x2 + SLACK and y1 - SLACK <= cy <= y2 + SLACK
        ]
        # OCRmyPDF's renderer writes text NFKC-normalised (a superscript 1 becomes "1").
        plain = unicodedata.normalize("NFKC", " ".join(block_lines(block.label, block.text)))
        assert inside == plain.split(), block
        checked += 1
    assert checked >= 5


def test_installed_ocrmypdf_fails_with_ocrdesks_reason(venv: Path, tmp_path: Path) -> None:
    _need_programs()
    scan = _scan(tmp_path)
    before = _digest(scan)
    out = tmp_path / "out.pdf"
    with FakeOpenAIServer() as server:
        server.fail_next("500", 100)
        done = subprocess.run(
            [*_ocrmypdf(venv), "--ocrdesk-server", server.url, str(scan), str(out)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(tmp_path / "home"),
            timeout=600,
        )
    assert done.returncode == 7, done.stderr[-3000:]  # ExitCode.child_process_error
    assert "OcrDeskFailed: OCRDesk: " in done.stderr and "HTTP 500" in done.stderr
    assert _digest(scan) == before
    assert not out.exists()
