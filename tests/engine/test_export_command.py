"""The delivery formats end to end through the CLI against the loopback test server:
`ocrdesk convert --formats ... --text-layer ...` and `ocrdesk export OUT/<stem>`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pymupdf
import pytest
from PIL import Image, ImageDraw

from ocrdesk.engine.cli import main
from tests.engine.helpers import make_pdf, make_png
from tests.fakes.openai_server import FakeOpenAIServer

GROUNDED = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Quarterly Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nRevenue grew steadily.\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 500, 600, 900]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[100, 910, 600, 950]]<|/det|>\n"
    "Figure 1.<｜end▁of▁sentence｜>"
)


def scanned_pdf(path: Path, pages: int) -> Path:
    """A PDF of page images only (a scan): no text of its own."""
    doc = pymupdf.open()
    for i in range(pages):
        img = Image.new("RGB", (1190, 1684), "white")
        ImageDraw.Draw(img).text((150, 100), f"scan {i + 1}", fill="black")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        page = doc.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(path)
    doc.close()
    return path


def convert(server: FakeOpenAIServer, *args: str) -> int:
    return main(["convert", *args, "--server", server.url, "--api-key", server.api_key or "", "-q"])


def test_default_formats_give_a_searchable_pdf_of_the_original_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = scanned_pdf(tmp_path / "scan.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(server, str(pdf), "-o", str(tmp_path / "out"))
    assert status == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "scan"
    for name in ("scan.md", "scan.raw.mmd", "scan.json", "scan.layout.pdf"):
        assert (folder / name).exists(), name
    for name in ("scan.docx", "scan.html", "scan.epub", "scan.hocr", "scan.alto.xml"):
        assert not (folder / name).exists(), name
    with pymupdf.open(folder / "scan.searchable.pdf") as doc, pymupdf.open(pdf) as original:
        assert doc.page_count == 2
        for page, source in zip(doc, original, strict=True):
            assert page.rect == source.rect
            assert len(page.get_images()) == 1  # the scan's image, not a re-render
            hits = page.search_for("Revenue")
            assert hits
            # the text lies in its block's box: x 100..900, y 150..400 of 999, on a 595x842 page
            assert hits[0].x0 >= 595 * 100 / 999 - 1 and hits[0].y1 <= 842 * 400 / 999 + 1
    assert not list((folder / "pages").glob("*.page.png"))  # a PDF needs no page images


def test_plus_formats_add_docx_hocr_and_alto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = scanned_pdf(tmp_path / "scan.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(
            server, str(pdf), "-o", str(tmp_path / "out"), "--formats", "+docx,hocr,alto"
        )
    assert status == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "scan"
    assert (folder / "scan.md").exists() and (folder / "scan.searchable.pdf").exists()
    with zipfile.ZipFile(folder / "scan.docx") as docx:
        body = docx.read("word/document.xml").decode("utf-8")
        assert "Revenue grew steadily." in body and "Quarterly Report" in body
        assert any(n.startswith("word/media/") for n in docx.namelist())  # the figure
        assert "<!--" not in body and "page 1" not in body  # no page-marker comments
    hocr = (folder / "scan.hocr").read_text(encoding="utf-8")
    assert hocr.count("class='ocr_page'") + hocr.count('class="ocr_page"') == 2
    assert "Revenue" in hocr
    alto = ElementTree.parse(folder / "scan.alto.xml").getroot()
    words = [
        s.get("CONTENT") for s in alto.iter("{http://www.loc.gov/standards/alto/ns-v4#}String")
    ]
    assert "Revenue" in words
    assert not (folder / "scan.html").exists() and not (folder / "scan.epub").exists()


def test_a_plain_list_is_exactly_those_formats(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png")
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(png), "-o", str(tmp_path / "out"), "--formats", "md,html") == 0
    folder = tmp_path / "out" / "shot"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["shot.html", "shot.md"]
    html = (folder / "shot.html").read_text(encoding="utf-8")
    assert "Revenue grew steadily." in html and "data:image/png;base64," in html


def test_an_unknown_format_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "x.pdf", "-o", str(tmp_path), "--formats", "+docs"])
    assert exit_.value.code == 2
    assert "unknown format 'docs'" in capsys.readouterr().err


def test_an_image_input_gives_one_page_at_its_size(tmp_path: Path) -> None:
    png = make_png(tmp_path / "shot.png", (600, 400))
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(png), "-o", str(tmp_path / "out")) == 0
    with pymupdf.open(tmp_path / "out" / "shot" / "shot.searchable.pdf") as doc:
        assert doc.page_count == 1
        assert (doc[0].rect.width, doc[0].rect.height) == (300, 200)
        assert doc[0].search_for("Revenue")


def test_a_pandoc_failure_is_a_clear_error_and_the_other_files_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pypandoc

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError('Pandoc died with exitcode "83" during conversion: out of memory')

    monkeypatch.setattr(pypandoc, "convert_text", broken)
    pdf = scanned_pdf(tmp_path / "scan.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        status = convert(
            server, str(pdf), "-o", str(tmp_path / "out"), "--formats", "+docx,epub,hocr"
        )
    err = capsys.readouterr().err
    folder = tmp_path / "out" / "scan"
    assert status == 1
    assert "Traceback" not in err
    assert f"could not write {folder / 'scan.docx'}: pandoc failed (" in err
    assert f"could not write {folder / 'scan.epub'}: pandoc failed (" in err
    assert not (folder / "scan.docx").exists() and not (folder / "scan.epub").exists()
    for name in ("scan.md", "scan.json", "scan.searchable.pdf", "scan.hocr", "scan.layout.pdf"):
        assert (folder / name).exists(), name
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_text_layer_skip_leaves_pages_with_text_and_replace_adds_the_layer(
    tmp_path: Path,
) -> None:
    pdf = make_pdf(tmp_path / "born.pdf", 1)  # has its own text ("Page 1")
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(tmp_path / "a")) == 0
        assert convert(server, str(pdf), "-o", str(tmp_path / "b"), "--text-layer", "replace") == 0
    with pymupdf.open(tmp_path / "a" / "born" / "born.searchable.pdf") as doc:
        assert not doc[0].search_for("Revenue") and doc[0].search_for("Page 1")
    with pymupdf.open(tmp_path / "b" / "born" / "born.searchable.pdf") as doc:
        assert doc[0].search_for("Revenue") and doc[0].search_for("Page 1")


def test_export_rebuilds_the_files_from_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = scanned_pdf(tmp_path / "scan.pdf", 2)
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(tmp_path / "out"), "--pages", "2") == 0
    folder = tmp_path / "out" / "scan"
    md = (folder / "scan.md").read_text(encoding="utf-8")
    for name in ("scan.md", "scan.json", "scan.searchable.pdf"):
        (folder / name).unlink()
    capsys.readouterr()
    assert main(["export", str(folder), "--formats", "+alto"]) == 0, capsys.readouterr().err
    assert (folder / "scan.md").read_text(encoding="utf-8") == md
    data = json.loads((folder / "scan.json").read_text(encoding="utf-8"))
    assert data["source"] == str(pdf) and [p["number"] for p in data["pages"]] == [2]
    assert (folder / "scan.alto.xml").exists()
    with pymupdf.open(folder / "scan.searchable.pdf") as doc:
        assert doc.page_count == 2  # the whole original, the converted page with its layer
        assert not doc[0].search_for("Revenue") and doc[1].search_for("Revenue")


def test_export_says_when_the_source_moved_and_writes_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = scanned_pdf(tmp_path / "scan.pdf", 1)
    with FakeOpenAIServer([GROUNDED]) as server:
        assert convert(server, str(pdf), "-o", str(tmp_path / "out")) == 0
    folder = tmp_path / "out" / "scan"
    (folder / "scan.md").unlink()
    pdf.rename(tmp_path / "elsewhere.pdf")
    capsys.readouterr()
    assert main(["export", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"could not write {folder / 'scan.searchable.pdf'}: the source document {pdf}" in err
    assert "is not there any more" in err
    assert (folder / "scan.md").exists()


def test_export_of_a_folder_without_a_journal_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no journal" in err and "Traceback" not in err
