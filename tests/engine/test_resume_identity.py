"""`--resume` reuses only pages of the same document; two documents never share a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ocrdesk.engine.cli import main
from tests.engine.helpers import make_pdf
from tests.engine.test_cli import GROUNDED
from tests.fakes.openai_server import FakeOpenAIServer


def convert(server: FakeOpenAIServer, *args: str) -> int:
    return main(["convert", *args, "--server", server.url, "--api-key", server.api_key or "", "-q"])


def pages_of(folder: Path) -> list[int]:
    data = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
    return [p["number"] for p in data["pages"]]


def test_resume_with_another_file_of_the_same_name_reuses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_pdf((tmp_path / "a").mkdir() or tmp_path / "a" / "report.pdf", 5, text="A")
    b = make_pdf((tmp_path / "b").mkdir() or tmp_path / "b" / "report.pdf", 3, text="B")
    out = tmp_path / "out"
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(a), "-o", str(out)) == 0
        before = len(server.requests)
        capsys.readouterr()
        assert convert(server, str(b), "-o", str(out), "--resume") == 0
        assert len(server.requests) - before == 3  # every page of b asked for
        err = capsys.readouterr().err
    assert "holds the pages of another document" in err and str(a) in err
    assert pages_of(out / "report") == [1, 2, 3, 4, 5]  # a's export is untouched
    assert pages_of(out / "report-2") == [1, 2, 3]
    data = json.loads((out / "report-2" / "report-2.json").read_text(encoding="utf-8"))
    assert data["source"] == str(b) and data["source_id"]["page_count"] == 3


def test_resume_of_a_changed_file_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", 4, text="first")
    out = tmp_path / "out"
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(out)) == 0
        make_pdf(tmp_path / "other.pdf", 2, text="second")
        shutil.move(tmp_path / "other.pdf", pdf)  # the same path, other bytes
        before = len(server.requests)
        capsys.readouterr()
        assert convert(server, str(pdf), "-o", str(out), "--resume") == 0
        assert len(server.requests) - before == 2
        err = capsys.readouterr().err
    assert "4 page(s) not reused: made from another document" in err
    assert pages_of(out / "report") == [1, 2]
    # the old version's pages 3 and 4 are gone from the journal, which is read back as the export
    assert sorted(p.name for p in (out / "report" / "pages").glob("*.json")) == [
        "0001.json",
        "0002.json",
    ]


def test_resume_of_the_same_file_reuses_its_pages(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "report.pdf", 3)
    out = tmp_path / "out"
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(out), "--pages", "1-2") == 0
        moved = tmp_path / "moved" / "report.pdf"
        moved.parent.mkdir()
        shutil.copy(pdf, moved)  # found again at another path: the same bytes
        before = len(server.requests)
        assert convert(server, str(moved), "-o", str(out), "--resume") == 0
        assert len(server.requests) - before == 1
    assert pages_of(out / "report") == [1, 2, 3]


def test_two_inputs_with_one_stem_in_one_run_and_again_on_resume(tmp_path: Path) -> None:
    a = make_pdf((tmp_path / "a").mkdir() or tmp_path / "a" / "report.pdf", 2)
    b = make_pdf((tmp_path / "b").mkdir() or tmp_path / "b" / "report.pdf", 1)
    out = tmp_path / "out"
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(a), str(b), "-o", str(out)) == 0
        before = len(server.requests)
        # in the other order: each still finds its own folder, and nothing is asked again
        assert convert(server, str(b), str(a), "-o", str(out), "--resume") == 0
        assert len(server.requests) == before
    assert pages_of(out / "report") == [1, 2]
    assert pages_of(out / "report-2") == [1]
