"""`ocrdesk convert` end to end against the loopback test server: files, exit codes, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest

from ocrdesk.engine.cli import main
from tests.conftest import REAL_PAGE_PDF, REAL_PAGE_RAW, REPO, need
from tests.engine.helpers import make_pdf, make_png
from tests.fakes.openai_server import FakeOpenAIServer

GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nSome text, x \\coloneqq y.\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 500, 600, 900]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[100, 910, 600, 950]]<|/det|>\n"
    "Figure 1.<｜end▁of▁sentence｜>"
)


def run_cli(*args: str) -> int:
    return main(["convert", *args])


def test_convert_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", 2)
    out = tmp_path / "out"
    with FakeOpenAIServer([GROUNDED]) as server:
        status = run_cli(
            str(pdf), "-o", str(out), "--server", server.url, "--api-key", server.api_key or ""
        )
    assert status == 0, capsys.readouterr().err
    folder = out / "report"
    md = (folder / "report.md").read_text(encoding="utf-8")
    assert md.startswith("<!-- page 1 -->")
    assert "\n\n<!-- page 2 -->\n\n" in md
    assert "# Report" in md and "x := y" in md and "<|ref|>" not in md
    assert "![](images/p0001_0.png)" in md and "<｜end▁of▁sentence｜>" not in md
    assert (folder / "images" / "p0001_0.png").exists()
    assert (folder / "images" / "p0002_0.png").exists()
    raw = (folder / "report.raw.mmd").read_text(encoding="utf-8")
    assert raw.count("<--- Page Split --->") == 2 and "<|ref|>title" in raw
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert (
        data["source"] == str(pdf) and data["task"] == "markdown" and data["model"] == server.model
    )
    page = data["pages"][0]
    assert set(page) >= {
        "number",
        "width",
        "height",
        "status",
        "finish_reason",
        "error",
        "raw",
        "markdown",
        "blocks",
    }
    assert page["status"] == "done" and page["finish_reason"] == "stop"
    assert (page["width"], page["height"]) == (1190, 1684)  # A4 at 144 dpi
    title = page["blocks"][0]
    assert title["label"] == "title"
    assert title["box"] == pytest.approx(
        [100 / 999 * 1190, 50 / 999 * 1684, 900 / 999 * 1190, 120 / 999 * 1684], abs=0.1
    )
    with pymupdf.open(folder / "report.layout.pdf") as layout:
        assert layout.page_count == 2


def test_real_page_boxes_land_on_the_page(tmp_path: Path) -> None:
    """The real DeepSeek-OCR-2 output of a real page, rendered at the 180 dpi it was sent at."""
    pdf, raw = need(REAL_PAGE_PDF), need(REAL_PAGE_RAW).read_text(encoding="utf-8")
    out = tmp_path / "out"
    with FakeOpenAIServer([raw], model="deepseek-ai/DeepSeek-OCR-2") as server:
        assert (
            run_cli(
                str(pdf),
                "-o",
                str(out),
                "--server",
                server.url,
                "--dpi",
                "180",
                "--api-key",
                server.api_key or "",
            )
            == 0
        )
    data = json.loads((out / "medical-report-p1" / "medical-report-p1.json").read_text("utf-8"))
    page = data["pages"][0]
    assert abs(page["width"] - 1487) <= 1 and abs(page["height"] - 2105) <= 1
    tables = [b for b in page["blocks"] if b["label"] == "table"]
    assert tables and all(0 <= b["box"][0] < b["box"][2] <= page["width"] for b in tables)
    assert "<table>" in (out / "medical-report-p1" / "medical-report-p1.md").read_text("utf-8")


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_png(tmp_path / "in" / "good.png")
    broken = tmp_path / "in" / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 garbage")
    with FakeOpenAIServer([GROUNDED]) as server:
        key = server.api_key or ""
        assert (
            run_cli(str(good), "-o", str(tmp_path / "a"), "--server", server.url, "--api-key", key)
            == 0
        )
        capsys.readouterr()
        status = run_cli(
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "b"),
            "--server",
            server.url,
            "--api-key",
            key,
        )
        err = capsys.readouterr().err
        assert status == 1
        assert "broken.pdf" in err and "Traceback" not in err
        assert (tmp_path / "b" / "good" / "good.md").exists()
        status = run_cli(
            str(good),
            "-o",
            str(tmp_path / "c"),
            "--server",
            server.url,
            "--api-key",
            key,
            "--pages",
            "2-1",
        )
        assert status == 1
    with pytest.raises(SystemExit) as usage:
        run_cli(str(good), "-o", str(tmp_path / "d"), "--local", "--server", "http://x")
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        run_cli(str(good), "-o", str(tmp_path / "d"), "--server", "http://x", "--task", "locate")
    assert usage.value.code == 2


def test_unreachable_server_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_png(tmp_path / "good.png")
    status = run_cli(str(good), "-o", str(tmp_path / "o"), "--server", "http://127.0.0.1:9/v1")
    err = capsys.readouterr().err
    assert status == 1 and "127.0.0.1:9" in err and "Traceback" not in err


def test_killed_run_resumes_without_redoing_pages(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", 8)
    out = tmp_path / "out"
    journal = out / "long" / "pages"
    with FakeOpenAIServer([GROUNDED], token_delay=0.005) as server:
        cmd = [
            sys.executable,
            "-m",
            "ocrdesk",
            "convert",
            str(pdf),
            "-o",
            str(out),
            "--server",
            server.url,
            "--api-key",
            server.api_key or "",
            "--concurrency",
            "1",
            "-q",
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while len(list(journal.glob("*.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = sorted(p.name for p in journal.glob("*.json"))
        assert 3 <= len(done_before) < 8
        requests_before = len(server.requests)
        # every finished page is already in the combined files' journal; now resume
        status = subprocess.run(
            [*cmd, "--resume"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120
        ).returncode
        assert status == 0
        resumed_requests = len(server.requests) - requests_before
    assert resumed_requests == 8 - len(done_before)
    data = json.loads((out / "long" / "long.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == list(range(1, 9))
    assert all(p["status"] == "done" for p in data["pages"])


def test_stats_file(tmp_path: Path) -> None:
    png = make_png(tmp_path / "a.png")
    stats = tmp_path / "stats.json"
    with FakeOpenAIServer([GROUNDED]) as server:
        key = server.api_key or ""
        assert run_cli(str(png), "-o", str(tmp_path / "o"), "--server", server.url, "--api-key",
                       key, "--stats", str(stats), "-q") == 0  # fmt: skip
    data = json.loads(stats.read_text(encoding="utf-8"))
    assert data["pages"] == 1 and data["failed"] == 0
    assert data["pages_per_second"] > 0 and data["first_page_seconds"] > 0
