"""Tests for engine.ocrmypdf_plugin: OCRmyPDF itself, run as a child process, with OCRDesk as its
OCR engine (loaded from the installed entry point, no --plugin) against the loopback test server
replaying a real lecture page's output."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import unicodedata
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from ocrdesk.engine.cli import API_KEY_ENV
from ocrdesk.engine.parser import parse
from ocrdesk.engine.text_layer import block_lines
from tests.conftest import CORPUS, REPO, need
from tests.fakes.openai_server import FakeOpenAIServer

pytest.importorskip("ocrmypdf")  # Python 3.11 and later, as tomllib
tomllib = pytest.importorskip("tomllib")
img2pdf = pytest.importorskip("img2pdf")
pymupdf = pytest.importorskip("pymupdf")

PAGE = CORPUS / "pages" / "lecture-006.jpg"
RAW = CORPUS / "pages" / "lecture-006.raw.txt"
DPI = 150
PLUGIN = "ocrdesk.engine.ocrmypdf_plugin"
OCRMYPDF = (sys.executable, "-m", "ocrmypdf", "--ocr-engine", "ocrdesk")
# OCRmyPDF 17 checks for Tesseract at start-up whichever engine is chosen (its built-in
# Tesseract plugin's check_options), and makes PDF/A with Ghostscript when it must.
NEEDED_PROGRAMS = ("tesseract", "gs")


def _need_programs() -> None:
    missing = [p for p in NEEDED_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"OCRmyPDF needs {', '.join(missing)} (.ci/run installs them)")


def _scan(tmp_path: Path) -> Path:
    """A scanned PDF: the lecture page's photo as the only content of a page, at DPI."""
    pdf = tmp_path / "scan.pdf"
    layout = img2pdf.get_fixed_dpi_layout_fun((DPI, DPI))
    pdf.write_bytes(img2pdf.convert(str(need(PAGE)), layout_fun=layout))
    return pdf


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env.update(extra)
    return env


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_entry_point_is_declared_and_installed() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert declared["project"]["entry-points"]["ocrmypdf"] == {"ocrdesk": PLUGIN}
    installed = {ep.name: ep.value for ep in entry_points(group="ocrmypdf")}
    assert installed.get("ocrdesk") == PLUGIN, "reinstall: pip install -e '.[test]'"
    module = entry_points(group="ocrmypdf")["ocrdesk"].load()
    for hook in ("add_options", "register_options", "check_options", "get_ocr_engine"):
        assert hasattr(getattr(module, hook), "ocrmypdf_impl"), hook


def test_ocrmypdf_offers_the_engine_and_its_options_without_plugin_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ocrmypdf", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "{auto,tesseract,none,ocrdesk}" in text
    for option in ("--ocrdesk-server", "--ocrdesk-api-key", "--ocrdesk-model", "--ocrdesk-task"):
        assert option in text


def test_ocrdesk_engine_needs_a_server(tmp_path: Path) -> None:
    _need_programs()
    scan = _scan(tmp_path)
    out = tmp_path / "out.pdf"
    done = subprocess.run(
        [*OCRMYPDF, scan, out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # ExitCode.bad_args
    assert "--ocr-engine ocrdesk needs --ocrdesk-server URL" in done.stderr
    assert not out.exists()


def test_scanned_pdf_gets_the_text_where_the_ink_is(tmp_path: Path) -> None:
    _need_programs()
    scan = _scan(tmp_path)
    out = tmp_path / "out.pdf"
    raw = need(RAW).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw], api_key="secret-key") as server:
        done = subprocess.run(
            [*OCRMYPDF, "--ocrdesk-server", server.url, "--ocrdesk-task", "markdown", scan, out],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(**{API_KEY_ENV: "secret-key"}),  # the key from the environment
        )
        assert done.returncode == 0, done.stderr
        assert server.completed == 1
    with pymupdf.open(scan) as before, pymupdf.open(out) as after:
        assert after.page_count == 1
        page = after[0]
        assert page.rect == before[0].rect
        assert len(page.get_images()) == 1  # the scan is still the page
        words = page.get_text("words")
        width_px, height_px = (round(v * DPI / 72) for v in page.rect[2:])
        # the boxes the model gave, in pixels of the scan's image, then in points of the page
        blocks = parse(raw, width_px, height_px).blocks
        checked = 0
        for block in blocks:
            if block.label not in ("sub_title", "text") or block.box is None:
                continue
            x1, y1, x2, y2 = (v * 72 / DPI for v in block.box)
            inside = [
                w[4]
                for w in words
                if x1 - 2 <= (w[0] + w[2]) / 2 <= x2 + 2 and y1 - 2 <= (w[1] + w[3]) / 2 <= y2 + 2
            ]
            # OCRmyPDF's renderer writes text NFKC-normalised (a superscript 1 becomes "1")
            plain = unicodedata.normalize("NFKC", " ".join(block_lines(block.label, block.text)))
            expected = plain.split()
            assert inside == expected, block
            checked += 1
        assert checked >= 5
        assert "Grundlagen Logik" in page.get_text()
        assert "OCRDesk" in after.metadata["creator"]


def test_failing_server_fails_ocrmypdf_with_ocrdesks_reason(tmp_path: Path) -> None:
    _need_programs()
    scan = _scan(tmp_path)
    before = _digest(scan)
    out = tmp_path / "out.pdf"
    with FakeOpenAIServer() as server:
        server.fail_next("500", 100)
        done = subprocess.run(
            [*OCRMYPDF, "--ocrdesk-server", server.url, scan, out],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(),
        )
    assert done.returncode == 7, done.stderr  # ExitCode.child_process_error
    assert "OcrDeskFailed: OCRDesk: " in done.stderr
    assert "HTTP 500" in done.stderr
    assert _digest(scan) == before
    assert not out.exists()
