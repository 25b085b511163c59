"""Edits kept like finished pages: a document converted through the CLI against the loopback
server, edited with engine/edits.py, then rebuilt (`ocrdesk export`, `DocumentExport.finish`):
every file has the edited text and not the old, the JSON keeps the model's raw output and marks
the edited blocks, the layout image and figure crops are drawn again, resume never asks for an
edited page again, and history says which documents are edited."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine import edits
from ocrdesk.engine.cli import main
from ocrdesk.engine.edits import EditStore
from ocrdesk.engine.export import (
    DocumentExport,
    ExportFailed,
    export_folder,
    label_color,
    read_export,
    read_exports,
    source_id,
)
from ocrdesk.engine.parser import parse
from ocrdesk.engine.relayout import blocks_tag, drawn_tag
from ocrdesk.engine.results import Block, BlockSource, PageResult, PageStatus
from tests.engine.test_export_command import GROUNDED, scanned_pdf
from tests.fakes.openai_server import FakeOpenAIServer

OLD = "Revenue grew steadily."
NEW = "Revenue fell sharply."


def convert(server: FakeOpenAIServer, *args: str) -> int:
    return main(["convert", *args, "--server", server.url, "--api-key", server.api_key or "", "-q"])


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    """OUT/scan of a two-page scanned PDF, each page answered with GROUNDED."""
    pdf = scanned_pdf(tmp_path / "scan.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(tmp_path / "out")) == 0
    return tmp_path / "out" / "scan"


def edit_page_one(folder: Path) -> list[Block]:
    """Page 1 retyped, its figure deleted and its title moved: as the window would save it."""
    export = DocumentExport.from_journal(folder)
    blocks = export.results[1].blocks
    assert [b.label for b in blocks] == ["title", "text", "image", "image_caption"]
    blocks = edits.set_text(blocks, 1, NEW)
    blocks = edits.delete(blocks, 2)
    blocks = edits.set_box(blocks, 0, (300.0, 600.0, 900.0, 700.0))
    EditStore(folder).save(1, blocks)
    return blocks


def export_cli(folder: Path, *formats: str) -> int:
    return main(["export", str(folder), *(("--formats", ",".join(formats)) if formats else ())])


def test_ocrdesk_export_rebuilds_every_file_with_the_edits(
    converted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = converted
    assert (folder / "images" / "p0001_0.png").exists()  # the model's figure
    blocks = edit_page_one(folder)
    assert export_cli(folder, "+hocr,alto,html,docx") == 0, capsys.readouterr().err

    md = (folder / "scan.md").read_text("utf-8")
    page1, page2 = md.split("<!-- page 2 -->")
    assert NEW in page1 and OLD not in page1
    assert "images/p0001_0.png" not in page1  # the figure was deleted
    assert OLD in page2 and "images/p0002_0.png" in page2  # page 2 is as the model said

    data = json.loads((folder / "scan.json").read_text("utf-8"))
    one, two = data["pages"]
    assert one["edited"] is True and "edited" not in two
    assert one["raw"] == GROUNDED  # what the model said, kept
    assert [b["text"] for b in one["blocks"]] == ["# Quarterly Report", NEW, "Figure 1."]
    assert [b.get("source") for b in one["blocks"]] == ["edited", "edited", None]
    assert one["blocks"][0]["box"] == [300.0, 600.0, 900.0, 700.0]
    assert OLD not in one["markdown"] and NEW in one["markdown"]
    assert (folder / "scan.raw.mmd").read_text("utf-8").count(OLD) == 2  # the raw: the model's

    with pymupdf.open(folder / "scan.searchable.pdf") as doc:
        assert doc[0].search_for("fell sharply") and not doc[0].search_for("grew steadily")
        assert doc[1].search_for("grew steadily")
    hocr = (folder / "scan.hocr").read_text("utf-8")
    alto = (folder / "scan.alto.xml").read_text("utf-8")
    html = (folder / "scan.html").read_text("utf-8")
    with zipfile.ZipFile(folder / "scan.docx") as docx:
        word = docx.read("word/document.xml").decode("utf-8")
    for text in (hocr, alto, html, word):
        assert "sharply" in text and text.count("steadily") == 1  # page 2's only

    # The figure of page 1 is gone with its block; page 2's stays. The layout image shows the
    # title where it was moved to, in the title's colour, drawn on the page image.
    assert not (folder / "images" / "p0001_0.png").exists()
    assert (folder / "images" / "p0002_0.png").exists()
    layout = folder / "pages" / "0001.layout.jpg"
    assert drawn_tag(layout) == blocks_tag(blocks)
    x1, y1, x2, y2 = DocumentExport.from_journal(folder).results.unedited(1).blocks[0].boxes[0]
    with Image.open(layout) as img:
        rgb = img.convert("RGB")
        outline = rgb.getpixel((600, 600 + 1))  # the top edge of the moved title box
        old_title = rgb.getpixel((round(x1 + x2) // 2, round(y1 + y2) // 2))  # blank now
    assert _near(outline, label_color("title"))
    assert _near(old_title, (255, 255, 255))
    with pymupdf.open(folder / "scan.layout.pdf") as doc:
        assert doc.page_count == 2


def _near(a: object, b: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(a, tuple)
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_clearing_the_edits_draws_the_models_blocks_again(converted: Path) -> None:
    folder = converted
    edit_page_one(folder)
    DocumentExport.from_journal(folder).finish()
    assert not (folder / "images" / "p0001_0.png").exists()
    EditStore(folder).clear(1)
    DocumentExport.from_journal(folder).finish()
    assert drawn_tag(folder / "pages" / "0001.layout.jpg") is None  # as `add_page` draws
    assert (folder / "images" / "p0001_0.png").exists()
    md = (folder / "scan.md").read_text("utf-8")
    assert NEW not in md and md.count(OLD) == 2
    data = json.loads((folder / "scan.json").read_text("utf-8"))
    assert not any("edited" in p for p in data["pages"])


def test_a_rebuild_with_nothing_edited_draws_nothing_again(converted: Path) -> None:
    layout = converted / "pages" / "0001.layout.jpg"
    before = layout.stat().st_mtime_ns
    DocumentExport.from_journal(converted).finish()
    assert layout.stat().st_mtime_ns == before


def test_redraw_page_uses_the_image_it_is_given(converted: Path, tmp_path: Path) -> None:
    """The window hands the page image it shows (at any scale); the source need not be there."""
    folder = converted
    edit_page_one(folder)
    shutil.move(tmp_path / "scan.pdf", tmp_path / "elsewhere.pdf")  # the source is gone
    export = DocumentExport.from_journal(folder, formats=["md", "layout"])
    assert export.redraw_page(1, Image.new("RGB", (120, 170), "red"))
    with Image.open(folder / "pages" / "0001.layout.jpg") as img:
        assert img.size == (export.results[1].width, export.results[1].height)
        assert _near(img.convert("RGB").getpixel((5, img.height - 5)), (255, 0, 0))
    export.finish()  # drawn already: nothing is left to draw, nothing fails


def test_without_a_page_image_the_rebuild_says_so_and_writes_the_rest(
    converted: Path, tmp_path: Path
) -> None:
    folder = converted
    edit_page_one(folder)
    shutil.move(tmp_path / "scan.pdf", tmp_path / "elsewhere.pdf")
    export = DocumentExport.from_journal(folder, formats=["md", "json", "layout"])
    with pytest.raises(ExportFailed) as failed:
        export.finish()
    (reason,) = failed.value.reasons
    assert "page(s) 1" in reason and "source document" in reason
    assert NEW in (folder / "scan.md").read_text("utf-8")


def test_a_changed_source_is_not_drawn_on(converted: Path, tmp_path: Path) -> None:
    folder = converted
    edit_page_one(folder)
    scanned_pdf(tmp_path / "scan.pdf", 3)  # another document at the same path
    with pytest.raises(ExportFailed):
        DocumentExport.from_journal(folder, formats=["md"]).finish()


def test_a_pasted_image_kept_in_the_journal_is_drawn_on(tmp_path: Path) -> None:
    """A document of bytes has its page images in the journal (for its searchable PDF)."""
    blank = Image.new("RGB", (800, 1000), "white")
    buffer = io.BytesIO()
    blank.save(buffer, format="PNG")
    data = buffer.getvalue()
    folder = tmp_path / "pasted"
    export = DocumentExport(
        folder, source="pasted.png", model="m", task="t", source_id=source_id(data, "pasted.png")
    )
    export.origin = data
    parsed = parse(GROUNDED, 800, 1000, "p0001_")
    export.add_page(
        PageResult(1, 800, 1000, PageStatus.DONE, raw=GROUNDED, markdown=parsed.markdown,
                   blocks=parsed.blocks),
        blank,
    )  # fmt: skip
    assert export.page_image_path(1).exists()
    EditStore(folder).save(1, edits.delete(parsed.blocks, 0))
    rebuilt = DocumentExport.from_journal(folder, formats=["md", "layout"])
    rebuilt.finish()  # no origin and no file: the kept page image is drawn on
    assert drawn_tag(folder / "pages" / "0001.layout.jpg") is not None


def test_resume_never_asks_for_an_edited_page_again(converted: Path, tmp_path: Path) -> None:
    folder = converted
    edit_page_one(folder)
    with FakeOpenAIServer([GROUNDED]) as server:
        # Another task: page 2 is done again with it, page 1 is the person's.
        status = convert(
            server, str(tmp_path / "scan.pdf"), "-o", str(tmp_path / "out"), "--resume",
            "--task", "free",
        )  # fmt: skip
        assert status == 0
        assert len(server.requests) == 1
    md = (folder / "scan.md").read_text("utf-8")
    assert NEW in md.split("<!-- page 2 -->")[0]
    assert json.loads((folder / "pages" / "0001.json").read_text("utf-8"))["task"] != "free"


def test_an_edited_failed_page_is_reused_and_shown(tmp_path: Path) -> None:
    folder = tmp_path / "doc"
    ident = source_id(b"the document", "doc.pdf")
    export = DocumentExport(folder, source="doc.pdf", model="m", task="t", source_id=ident)
    export.add_page(PageResult(1, 600, 800, PageStatus.FAILED, error="server gone"), None)
    typed = [Block("text", ((10, 10, 200, 40),), "typed by hand", BlockSource.EDITED)]
    EditStore(folder).save(1, typed)
    again = DocumentExport(folder, source="doc.pdf", model="other", task="t", source_id=ident)
    reused = again.load_finished()
    assert list(reused) == [1] and reused[1].blocks == typed and reused[1].edited
    other_document = source_id(b"another document", "doc.pdf")
    elsewhere = DocumentExport(
        folder, source="doc.pdf", model="m", task="t", source_id=other_document
    )
    assert elsewhere.load_finished() == {}  # edits of another document are not this one's
    elsewhere.add_page(PageResult(2, 600, 800, PageStatus.FAILED, error="again"), None)
    assert EditStore(folder).edited_pages() == set()  # removed with that document's journal


def test_a_page_edited_mid_run_keeps_its_edit_when_the_run_ends(tmp_path: Path) -> None:
    """The window saves an edit of page 1 while page 2 is still running; the files written
    when the run ends have it."""
    folder = tmp_path / "doc"
    export = DocumentExport(folder, source="doc", model="m", task="t", formats=["md", "json"])
    image = Image.new("RGB", (999, 1998), "white")

    def result(number: int) -> PageResult:
        parsed = parse(GROUNDED, 999, 1998, f"p{number:04d}_")
        return PageResult(number, 999, 1998, PageStatus.DONE, raw=GROUNDED,
                          markdown=parsed.markdown, blocks=parsed.blocks)  # fmt: skip

    export.add_page(result(1), image)
    store = EditStore(folder)
    store.save(1, edits.set_text(export.results[1].blocks, 1, NEW))
    # The window's own export of the document, on its own thread, draws the page it shows.
    window = DocumentExport(folder, source="doc", model="m", task="t", formats=["md", "json"])
    window.results.update({1: result(1)})
    assert window.redraw_page(1, image)
    export.add_page(result(2), image)
    export.finish()
    md = (folder / "doc.md").read_text("utf-8")
    assert NEW in md and md.count(OLD) == 1
    assert drawn_tag(folder / "pages" / "0001.layout.jpg") is not None


def test_a_page_answered_again_is_drawn_with_its_edits(tmp_path: Path) -> None:
    folder = tmp_path / "doc"
    export = DocumentExport(folder, source="doc", model="m", task="t")
    parsed = parse(GROUNDED, 999, 1998, "p0001_")
    page = PageResult(1, 999, 1998, PageStatus.DONE, raw=GROUNDED, markdown=parsed.markdown,
                      blocks=parsed.blocks)  # fmt: skip
    blocks = edits.delete(parsed.blocks, 2)
    EditStore(folder).save(1, blocks)
    export.add_page(page, Image.new("RGB", (999, 1998), "white"))
    assert drawn_tag(export.page_layout_path(1)) == blocks_tag(blocks)
    assert not (folder / "images" / "p0001_0.png").exists()
    # the journal keeps the model's answer
    entry = json.loads((folder / "pages" / "0001.json").read_text("utf-8"))
    assert len(entry["page"]["blocks"]) == 4 and "edited" not in entry["page"]


def test_history_says_which_documents_are_edited(converted: Path, tmp_path: Path) -> None:
    folder = converted
    (saved,) = read_exports(tmp_path / "out")
    assert not saved.edited and saved.edited_pages == frozenset()
    edit_page_one(folder)  # after the combined JSON was written: the journal is newer
    again = read_export(folder)
    assert again is not None and again.edited and again.edited_pages == {1}
    assert again.results[0].edited and again.results[0].blocks[1].text == NEW
    assert not again.results[1].edited


def test_edits_files_are_not_journal_entries(converted: Path, tmp_path: Path) -> None:
    """An edits file beside the journal does not make the folder another document's."""
    edit_page_one(converted)
    ident = source_id(tmp_path / "scan.pdf")
    assert export_folder(tmp_path / "out", "scan", set(), ident) == converted
