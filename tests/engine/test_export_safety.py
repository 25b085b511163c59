"""The export under hostile input: failing writes, model text that looks like markers, file
names that look like paths, answers with huge numbers of boxes, page ranges past the end."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from ocrdesk.engine import export, label_color
from ocrdesk.engine.cli import main
from ocrdesk.engine.results import Block, PageResult, PageStatus
from tests.engine.helpers import make_pdf, make_png
from tests.engine.test_cli import GROUNDED
from tests.fakes.openai_server import FakeOpenAIServer


def convert(server: FakeOpenAIServer, *args: str) -> int:
    return main(["convert", *args, "--server", server.url, "--api-key", server.api_key or "", "-q"])


def failing_temp_files(monkeypatch: pytest.MonkeyPatch, code: int, when: str = "") -> None:
    """The export's temporary files fail with `code` (for names containing `when`): a full or
    read-only disk, as seen by the process (tests run as root, whom chmod does not stop)."""
    create = export.create_temp

    def create_temp(path: Path) -> tuple[int, str]:
        if when in f".{path.name[:40]}.":
            raise OSError(code, os.strerror(code), str(path.parent))
        return create(path)

    monkeypatch.setattr(export, "create_temp", create_temp)


def test_lone_surrogate_in_model_text_is_written_as_replacement_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = make_pdf(tmp_path / "s.pdf", 1)
    answer = "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 500]]<|/det|>\nbad \ud800 half pair"
    with FakeOpenAIServer([answer]) as server:
        status = convert(server, str(pdf), "-o", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert status == 0, err
    assert "Traceback" not in err
    folder = tmp_path / "out" / "s"
    assert "bad \ufffd half pair" in (folder / "s.md").read_text(encoding="utf-8")
    entry = json.loads((folder / "pages" / "0001.json").read_text(encoding="utf-8"))
    assert entry["page"]["raw"].endswith("bad \ufffd half pair")


def test_full_disk_fails_that_page_only_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make_pdf(tmp_path / "full.pdf", 3)
    failing_temp_files(monkeypatch, errno.ENOSPC, when=".0002.json.")
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(pdf), "-o", str(tmp_path / "out"), "--concurrency", "1")
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    assert "page 2 of" in err and "0002.json" not in err.split("could not write")[0]
    assert "No space left on device" in err
    folder = tmp_path / "out" / "full"
    assert sorted(p.name for p in (folder / "pages").glob("*.json")) == ["0001.json", "0003.json"]
    data = json.loads((folder / "full.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in data["pages"]] == [1, 3]


def test_read_only_output_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make_pdf(tmp_path / "ro.pdf", 2)
    good = make_png(tmp_path / "other" / "good.png")
    failing_temp_files(monkeypatch, errno.EROFS)
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(pdf), str(good), "-o", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    assert "Read-only file system" in err
    assert f"could not write {tmp_path / 'out' / 'ro'}" in err
    assert "good.png" in err  # the second document was tried too


def test_output_folder_that_cannot_be_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_png(tmp_path / "good.png")
    (tmp_path / "file").write_text("not a folder")
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(good), "-o", str(tmp_path / "file" / "out"))
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert f"could not write {tmp_path / 'file' / 'out'}" in err


def test_model_text_cannot_forge_page_markers(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "forge.pdf", 2)
    answer = (
        "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 500]]<|/det|>\n"
        "before\n<!-- page 999 -->\nmiddle\n<--- Page Split --->\n<\\--- Page Split --->\nafter"
    )
    with FakeOpenAIServer([answer]) as server:
        assert convert(server, str(pdf), "-o", str(tmp_path / "out")) == 0
    folder = tmp_path / "out" / "forge"
    raw = (folder / "forge.raw.mmd").read_text(encoding="utf-8")
    assert raw.count(export.PAGE_SPLIT) == 2
    expected_raw = answer.split("\n", 1)[1]
    assert [p.split("\n", 1)[1] for p in export.split_raw(raw)] == [expected_raw, expected_raw]
    md = (folder / "forge.md").read_text(encoding="utf-8")
    assert [n for n, _ in export.split_markdown(md)] == [1, 2]


@pytest.mark.parametrize(
    "text",
    ["<!-- page 3 -->", "<--- Page Split --->", "<\\!-- page 3 -->", "<\\\\--- Page Split --->",
     "a <!--page 1--> b", "plain < text <!-- other comment -->"],
)  # fmt: skip
def test_marker_escaping_round_trips(text: str) -> None:
    escaped = export.escape_markers(text)
    assert "<!-- page" not in escaped and "<--- Page Split" not in escaped
    assert export.unescape_markers(escaped) == text


def undecodable_pdf(folder: Path) -> Path:
    """A one-page PDF in `folder` whose name is not UTF-8 (Latin-1 `café.pdf`)."""
    folder.mkdir(exist_ok=True)
    name = os.path.join(os.fsencode(folder), b"caf\xe9.pdf")
    os.rename(make_pdf(folder / "plain.pdf", 1), name)
    return Path(os.fsdecode(name))


NAMES = ["...pdf", "..pdf", ".pdf", "a\nb\x07c.pdf", "back\\slash.pdf", " .. .pdf"]


def test_every_export_path_stays_inside_the_output_folder(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in NAMES:
        make_pdf(inputs / name, 1)
    out = tmp_path / "out" / "sub"
    with FakeOpenAIServer([GROUNDED]) as server:
        convert(server, *(str(p) for p in sorted(inputs.iterdir())), "-o", str(out))
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and inputs not in p.parents and out not in p.parents
    ]
    assert outside == []
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == len(NAMES)  # one folder each
    for folder in folders:
        assert folder.parent == out and not folder.name.startswith(".")
        folder.name.encode("utf-8")  # a name any tool can show
        assert (folder / f"{folder.name}.md").is_file()


def test_safe_name() -> None:
    assert export.safe_name("..") == "document"
    assert export.safe_name(".") == "document"
    assert export.safe_name("a/b\x00c") == "a_b_c"
    assert export.safe_name("caf\udce9") == "caf\ufffd"
    assert len(export.safe_name("x" * 1000).encode()) == export.MAX_STEM_BYTES


def test_file_name_with_undecodable_bytes_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weird = undecodable_pdf(tmp_path / "in")
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(weird), "-o", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert status == 0, err
    assert (tmp_path / "out" / "caf\ufffd" / "caf\ufffd.md").is_file()


def test_layout_draws_a_bounded_number_of_boxes() -> None:
    """Past MAX_DRAWN_BOXES, boxes are not drawn: a runaway answer costs a bounded time."""
    cap = export.MAX_DRAWN_BOXES
    image = Image.new("RGB", (400, 400), "white")
    early = Block("text", ((10.0, 10.0, 20.0, 20.0),) * cap, "")
    late = Block("title", ((300.0, 300.0, 390.0, 390.0),), "")
    page = PageResult(1, 400, 400, PageStatus.DONE, blocks=[early, late])
    drawn = export.draw_layout(image, page)
    assert drawn.getpixel((345, 345)) == (255, 255, 255)
    assert drawn.getpixel((15, 15)) != (255, 255, 255)


def test_layout_tints_each_box_once_in_its_label_colour() -> None:
    image = Image.new("RGB", (400, 400), "white")
    text = Block("text", ((10.0, 10.0, 200.0, 100.0),), "")
    title = Block("title", ((250.0, 300.0, 390.0, 390.0),), "")
    page = PageResult(1, 400, 400, PageStatus.DONE, blocks=[text, title])
    drawn = export.draw_layout(image, page)

    def tinted(color: tuple[int, int, int]) -> tuple[int, ...]:
        return tuple((255 * (255 - 28) + c * 28 + 127) // 255 for c in color)

    for block, inside in ((text, (100, 60)), (title, (320, 350))):
        got = drawn.getpixel(inside)
        assert isinstance(got, tuple)
        want = tinted(label_color(block.label))
        assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)
    assert drawn.getpixel((230, 200)) == (255, 255, 255)  # between the boxes: untouched


def test_figure_boxes_name_the_crops_the_markdown_links() -> None:
    blocks = [
        Block("text", ((0.0, 0.0, 5.0, 5.0),), "t"),
        Block("image", ((10.2, 20.7, 30.4, 40.6),), ""),
        Block("image", (), ""),
        Block("image", ((1.0, 1.0, 1.0, 1.0),), ""),
    ]
    assert export.figure_boxes(blocks) == [(1, (10, 20, 30, 41)), (3, (1, 1, 2, 2))]


def test_read_export_reads_the_journal_of_a_stopped_run(tmp_path: Path) -> None:
    doc = export.DocumentExport(tmp_path / "d", source="d.pdf", model="m", task="markdown")
    for n in (2, 1):
        doc.add_page(PageResult(n, 10, 10, PageStatus.DONE, raw=f"r{n}", markdown=f"m{n}"), None)
    saved = export.read_export(tmp_path / "d")  # no combined files yet
    assert saved is not None and [r.number for r in saved.results] == [1, 2]
    doc.finish()
    saved = export.read_export(tmp_path / "d")
    assert saved is not None and saved.source == "d.pdf" and saved.model == "m"
    assert [r.markdown for r in saved.results] == ["m1", "m2"]
    assert [r.number for r in export.read_exports(tmp_path)[0].results] == [1, 2]


def test_pages_past_the_end_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = make_pdf(tmp_path / "three.pdf", 3)
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(pdf), "-o", str(tmp_path / "out"), "--pages", "7-9")
        assert server.requests == []
    err = capsys.readouterr().err
    assert status == 1
    assert "'7-9' selects no page: the document has 3 pages" in err


def test_clean_markdown_is_sanitised_and_raw_files_keep_the_model_text(tmp_path: Path) -> None:
    png = make_png(tmp_path / "x.png")
    answer = "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 500]]<|/det|>\nhi <script>alert(1)</script>"
    with FakeOpenAIServer([answer]) as server:
        assert convert(server, str(png), "-o", str(tmp_path / "out")) == 0
    folder = tmp_path / "out" / "x"
    assert "<script>" not in (folder / "x.md").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" in (folder / "x.raw.mmd").read_text(encoding="utf-8")
