"""A kept result drawn on again at the turn it was read at (engine/rotation.py's `read_turns`):
`ocrdesk convert` into a folder whose pages a person turned (resumed: a page turned since it was
read is read again), `ocrdesk export` redrawing a turned page's edited layout, and the searchable
PDF of a run's turned page, whose words poppler finds in their blocks."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from ocrdesk.engine import edits
from ocrdesk.engine.cli import main
from ocrdesk.engine.documents import open_document
from ocrdesk.engine.edits import EditStore
from ocrdesk.engine.export import draw_layout
from ocrdesk.engine.results import PageResult
from ocrdesk.engine.rotation import Rotation, RotationStore, render_turned
from tests.engine.test_rotation import _poppler_words
from tests.fakes.openai_server import PAGES_DIR, FakeOpenAIServer

fitz: Any = pymupdf

LECTURE = PAGES_DIR / "lecture-006.jpg"
LECTURE_RAW = PAGES_DIR / "lecture-006.raw.txt"
UPRIGHT = (1760, 990)  # the lecture page as it is sent: a size the model's cap leaves alone


def _upright() -> Image.Image:
    return Image.open(LECTURE).convert("RGB").resize(UPRIGHT)


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    diff = ImageChops.difference(a.convert("L"), b.convert("L"))
    return float(ImageStat.Stat(diff).mean[0])


def _pdf(path: Path, images: list[Image.Image]) -> Path:
    """A PDF of `images`, one page each, 2 px per point (144 dpi renders them at their size)."""
    doc = fitz.open()
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        page = doc.new_page(width=image.width / 2, height=image.height / 2)
        page.insert_image(page.rect, stream=buffer.getvalue())
    doc.save(path)
    doc.close()
    return path


class _Recorder:
    """The loopback server's answer: `raw` for every page, the image of each request kept."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.images: list[Image.Image] = []

    def __call__(self, body: dict[str, Any]) -> str:
        for part in body["messages"][0]["content"]:
            if part.get("type") == "image_url":
                _, _, data = part["image_url"]["url"].partition(",")
                self.images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        return self.raw


def _convert(server: FakeOpenAIServer, *args: str) -> None:
    argv = ["convert", *args, "--retry", "none", "--server", server.url]
    status = main([*argv, "--api-key", server.api_key or ""])
    assert status == 0


def _page(folder: Path, number: int) -> PageResult:
    data = json.loads((folder / "pages" / f"{number:04d}.json").read_text(encoding="utf-8"))
    return PageResult.from_json(data["page"])


# -- the store's rules ---------------------------------------------------------------------------


def test_read_turns_are_the_turns_each_kept_result_was_read_at(tmp_path: Path) -> None:
    store = RotationStore(tmp_path / "scan", "scan.pdf")
    assert store.read_turns() == {}
    store.set(1, Rotation.RIGHT)  # turned before it was read: read turned
    store.set(2, Rotation.LEFT, read=True)  # read as it lay, turned since
    store.set(3, Rotation.HALF)
    store.set(3, Rotation.RIGHT, read=True)  # read half turned, turned since
    assert store.load() == {1: Rotation.RIGHT, 2: Rotation.LEFT, 3: Rotation.RIGHT}
    assert store.read_turns() == {1: Rotation.RIGHT, 3: Rotation.HALF}
    kept = {1: "one", 2: "two", 3: "three", 4: "four"}
    # A resumed run keeps the pages not turned since they were read, and edited ones.
    assert store.kept(kept, edited={3}) == {1: "one", 3: "three", 4: "four"}
    store.fresh(2)
    assert store.read_turns() == {1: Rotation.RIGHT, 2: Rotation.LEFT, 3: Rotation.HALF}


def test_keep_read_copies_the_read_turns_none_stale(tmp_path: Path) -> None:
    copy = RotationStore(tmp_path / "copy", "scan.pdf")
    copy.keep_read({})
    assert not copy.path.exists()  # nothing turned: no file
    copy.keep_read({2: Rotation.LEFT, 3: Rotation.NONE})
    assert copy.load() == {2: Rotation.LEFT} and copy.stale() == {}
    copy.keep_read({})  # a copy made again with nothing turned: the old turns go
    assert copy.load() == {}


def test_the_store_knows_its_file_named_another_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window keeps the path a person dropped; `ocrdesk convert` may name it relatively."""
    scan = tmp_path / "docs" / "scan.pdf"
    scan.parent.mkdir()
    scan.write_bytes(b"%PDF-1.4\n")
    other = tmp_path / "docs" / "other.pdf"
    other.write_bytes(b"%PDF-1.4\n")
    RotationStore(tmp_path / "out", str(scan)).set(1, Rotation.RIGHT)
    monkeypatch.chdir(scan.parent)
    assert RotationStore(tmp_path / "out", "scan.pdf").load() == {1: Rotation.RIGHT}
    assert RotationStore(tmp_path / "out", os.path.join("..", "docs", "scan.pdf")).load()
    assert RotationStore(tmp_path / "out", "other.pdf").load() == {}
    assert RotationStore(tmp_path / "out", "pasted image").load() == {}


# -- ocrdesk convert and ocrdesk export ------------------------------------------------------------


def test_convert_resumes_a_folder_whose_page_was_turned_since_it_was_read(
    tmp_path: Path,
) -> None:
    """Page 1 lies on its side and is read as it lies; a person turns it in the window; a
    resumed `ocrdesk convert` reads it again, upright, and keeps page 2."""
    upright = _upright()
    pdf = _pdf(tmp_path / "lectures.pdf", [upright.transpose(Image.Transpose.ROTATE_90), upright])
    out = tmp_path / "out"
    folder = out / "lectures"
    answer = _Recorder(LECTURE_RAW.read_text(encoding="utf-8"))
    with FakeOpenAIServer(answer) as server:
        _convert(server, str(pdf), "-o", str(out))
        assert len(answer.images) == 2
        assert (_page(folder, 1).width, _page(folder, 1).height) == (990, 1760)

        store = RotationStore(folder, str(pdf))
        store.set(1, Rotation.RIGHT, read=True)  # what the window does
        assert store.stale() == {1: Rotation.NONE}
        _convert(server, str(pdf), "-o", str(out), "--resume")

    assert len(answer.images) == 3  # page 1 again, page 2 kept
    sent = answer.images[2]
    assert sent.size == UPRIGHT
    # The two pages of the first run may have been asked in either order.
    (page_two,) = [image for image in answer.images[:2] if image.size == UPRIGHT]
    assert _mean_difference(sent, page_two) < 3  # upright, as page 2 is
    result = _page(folder, 1)
    assert (result.width, result.height) == UPRIGHT
    assert store.stale() == {} and store.load() == {1: Rotation.RIGHT}
    assert store.read_turns() == {1: Rotation.RIGHT}
    with Image.open(folder / "pages" / "0001.layout.jpg") as layout:
        assert layout.size == UPRIGHT
    # The searchable PDF, written when the run ended, shows page 1 as it was read again: turned
    # (the sink marked it read before the combined files were written).
    with pymupdf.open(folder / "lectures.searchable.pdf") as searchable:
        assert searchable[0].rotation == 90 and searchable[1].rotation == 0


def test_export_redraws_an_edited_turned_page_turned(tmp_path: Path) -> None:
    """`ocrdesk export` draws an edited page's layout image again, on the page rendered from
    the document: turned as it was read, not the page as it lies squashed to its size."""
    sideways = _upright().transpose(Image.Transpose.ROTATE_90)
    pdf = _pdf(tmp_path / "lecture.pdf", [sideways])
    out = tmp_path / "out"
    folder = out / "lecture"
    RotationStore(folder, str(pdf)).set(1, Rotation.RIGHT)  # turned before the first run
    answer = _Recorder(LECTURE_RAW.read_text(encoding="utf-8"))
    with FakeOpenAIServer(answer) as server:
        _convert(server, str(pdf), "-o", str(out), "--formats", "md,json,layout")
    assert answer.images[0].size == UPRIGHT  # the first run sent it turned
    result = _page(folder, 1)
    assert (result.width, result.height) == UPRIGHT

    EditStore(folder).save(1, edits.delete(result.blocks, 0))  # the title taken out
    assert main(["export", str(folder), "--formats", "md,json,layout"]) == 0

    shown = EditStore(folder).apply(result)
    with open_document(pdf) as document:
        page = render_turned(document, 1, 144, Rotation.RIGHT)
        squashed = document.render(1, 144).resize(UPRIGHT)
    with Image.open(folder / "pages" / "0001.layout.jpg") as img:
        assert str(img.info.get("comment", b"")).find("ocrdesk-edits:") >= 0  # drawn again
        layout = img.convert("RGB")
    assert layout.size == UPRIGHT
    assert _mean_difference(layout, draw_layout(page, shown)) < 2  # 0.4: the JPEG's loss
    assert _mean_difference(layout, draw_layout(squashed, shown)) > 5  # 10.7


# -- the searchable PDF of a run's turned page -----------------------------------------------------

#: Two blocks far apart, each with its own word, in 0..999 of the turned (landscape) page.
TWO_BLOCKS = (
    "<|ref|>title<|/ref|><|det|>[[60, 60, 460, 200]]<|/det|>\n# Alpha\n\n"
    "<|ref|>text<|/ref|><|det|>[[520, 700, 940, 900]]<|/det|>\nOmega\n"
)


def _sideways_page(width: int, height: int) -> Image.Image:
    """A page lying on its side: ink where the blocks lie once it is turned right."""
    turned = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(turned)
    draw.rectangle((60, 36, 460, 120), fill="black")
    draw.rectangle((520, 420, 940, 540), fill="black")
    return turned.transpose(Image.Transpose.ROTATE_90)  # lying anticlockwise


@pytest.mark.parametrize("kind", ["pdf", "png", "tiff"])
def test_searchable_pdf_of_a_turned_page_has_its_words_in_their_blocks(
    tmp_path: Path, kind: str
) -> None:
    """A page turned right before it was read: the searchable PDF shows it upright and poppler
    finds each word inside its block, whether the PDF is laid over the source PDF, the source
    image, or (a TIFF) the page image kept in the journal, which is turned already."""
    page = _sideways_page(1000, 600)
    if kind == "pdf":
        source = _pdf(tmp_path / "scan.pdf", [page])
    else:
        source = tmp_path / f"scan.{kind}"
        page.save(source)
    out = tmp_path / "out"
    folder = out / "scan"
    RotationStore(folder, str(source)).set(1, Rotation.RIGHT)
    with FakeOpenAIServer([TWO_BLOCKS]) as server:
        _convert(server, str(source), "-o", str(out), "--formats", "json,searchable")
    result = _page(folder, 1)
    assert (result.width, result.height) == (1000, 600)
    pdf = folder / "scan.searchable.pdf"
    with fitz.open(pdf) as doc:
        shown = (doc[0].rect.width, doc[0].rect.height)
    assert shown[0] > shown[1]  # shown upright: landscape
    scale = shown[0] / result.width  # pixels of the image read -> points of the page shown
    boxes = {b.text.lstrip("# "): b.boxes[0] for b in result.blocks}
    words = _poppler_words(pdf)
    assert sorted(w for w, _ in words) == ["Alpha", "Omega"]
    for word, (x1, y1, x2, y2) in words:
        bx1, by1, bx2, by2 = (v * scale for v in boxes[word])
        slack = 0.5
        assert bx1 - slack <= x1 and by1 - slack <= y1, (word, (x1, y1, x2, y2), boxes[word])
        assert x2 <= bx2 + slack and y2 <= by2 + slack, (word, (x1, y1, x2, y2), boxes[word])
