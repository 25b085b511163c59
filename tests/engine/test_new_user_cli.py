"""The figures `ocrdesk convert` ends with (issue 11, item 21): no "0 output tokens/s" from a server
that reports no usage, and no pages/s for a run in which no page finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrdesk.engine.cli import main
from tests.engine.helpers import make_png
from tests.engine.test_cli import GROUNDED
from tests.fakes.openai_server import FakeOpenAIServer


def convert(server: FakeOpenAIServer, tmp_path: Path, *args: str) -> int:
    png = make_png(tmp_path / "page.png")
    stats = ["--stats", str(tmp_path / "stats.json")]
    return main(["convert", str(png), "-o", str(tmp_path / "out"), "--server", server.url,
                 "--api-key", server.api_key or "", *stats, *args])  # fmt: skip


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_figures_of_a_good_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, tmp_path) == 0
    line = last_line(capsys)
    assert line.startswith("1 page in ") and " pages/s, first page after " in line
    assert line.endswith(" output tokens/s")
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["output_tokens"] > 0 and stats["output_tokens_per_second"] > 0


def test_no_tokens_said_when_the_server_reports_no_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_usage = 'stream_options={"include_usage": false}'  # as servers that send no usage chunk
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, tmp_path, "--request-field", no_usage) == 0
    line = last_line(capsys)
    assert " pages/s" in line and "tokens" not in line, line
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["output_tokens"] is None and stats["output_tokens_per_second"] is None


def test_no_pages_per_second_when_the_only_page_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer([GROUNDED]) as server:
        server.fail_next("400", count=100)
        assert convert(server, tmp_path) == 1
    line = last_line(capsys)
    assert line.startswith("1 page (1 failed) in ") and line.endswith(": no page finished"), line
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["failed"] == 1 and stats["pages_per_second"] is None
