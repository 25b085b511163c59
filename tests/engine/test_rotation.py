"""A page turned before it is OCRed (engine/rotation.py): the turn's geometry, where it is kept,
the pipeline sending the page upright, and the searchable PDF's page turned to match."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageDraw

from ocrdesk.engine import mupdf
from ocrdesk.engine.client import ModelClient, ServerPool
from ocrdesk.engine.documents import open_document
from ocrdesk.engine.pipeline import ConvertOptions, DocumentJob, PageFinished, Pipeline
from ocrdesk.engine.results import PageStatus
from ocrdesk.engine.rotation import (
    ROTATION_FILE,
    Rotation,
    RotationStore,
    render_turned,
    turn_box,
    turn_image,
    turned_fit,
)
from tests.fakes.openai_server import PAGES_DIR, FakeOpenAIServer

fitz: Any = pymupdf

LECTURE = PAGES_DIR / "lecture-006.jpg"
LECTURE_RAW = PAGES_DIR / "lecture-006.raw.txt"


def _decoded(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    assert head.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox() is None


# -- the turn ------------------------------------------------------------------------------------


def test_turns_step_by_quarters_and_parse_degrees() -> None:
    assert Rotation.NONE.turned(1) is Rotation.RIGHT
    assert Rotation.NONE.turned(-1) is Rotation.LEFT
    assert Rotation.LEFT.turned(1) is Rotation.NONE
    assert Rotation.RIGHT.turned(2) is Rotation.LEFT
    assert Rotation.parse("-90") is Rotation.LEFT
    assert Rotation.parse(450) is Rotation.RIGHT
    assert [r.swaps for r in Rotation] == [False, True, False, True]
    for bad in ("45", "right", None):
        with pytest.raises(ValueError):
            Rotation.parse(bad)


@pytest.mark.parametrize("rotation", list(Rotation))
def test_a_box_turns_with_its_image(rotation: Rotation) -> None:
    """The ink of a box drawn on an image is, once turned, exactly at the turned box."""
    width, height = 300, 200
    box = (40.0, 30.0, 120.0, 90.0)
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).rectangle((40, 30, 119, 89), fill=255)  # pixels [40, 120) x [30, 90)
    turned = turn_image(image, rotation)
    assert turned.size == ((height, width) if rotation.swaps else (width, height))
    assert turned.getbbox() == tuple(int(v) for v in turn_box(box, width, height, rotation))


def test_fit_is_asked_about_the_turned_page() -> None:
    asked: list[tuple[int, int]] = []

    def fit(width: int, height: int) -> tuple[int, int]:
        asked.append((width, height))
        return width // 2, height // 4

    # Asked about the turned 600 x 800 page, answered for the 800 x 600 one rendered.
    assert turned_fit(fit, Rotation.RIGHT)(800, 600) == (200, 300)
    assert asked == [(600, 800)]
    assert turned_fit(fit, Rotation.HALF) is fit


def test_render_turned_turns_pdf_and_image_pages(tmp_path: Path) -> None:
    png = tmp_path / "page.png"
    Image.new("RGB", (300, 200), "white").save(png)
    pdf = tmp_path / "page.pdf"
    doc = fitz.open()
    doc.new_page(width=300, height=200)
    doc.save(pdf)
    doc.close()
    for path in (png, pdf):
        with open_document(path) as document:
            assert render_turned(document, 1, 72, Rotation.LEFT).size == (200, 300)
            # A fit that halves portrait pages only: the turned page is the one it is asked about.
            halve_portrait = lambda w, h: (w, h) if w > h else (w // 2, h // 2)  # noqa: E731
            capped = render_turned(document, 1, 72, Rotation.RIGHT, fit=halve_portrait)
            assert capped.size == (100, 150)


# -- where it is kept ----------------------------------------------------------------------------


def test_store_keeps_turns_for_its_document_only(tmp_path: Path) -> None:
    store = RotationStore(tmp_path / "scan", "/docs/scan.pdf")
    assert store.load() == {}
    assert store.set(3, Rotation.RIGHT) == {3: Rotation.RIGHT}
    assert store.set(1, Rotation.HALF) == {1: Rotation.HALF, 3: Rotation.RIGHT}
    assert store.set(3, Rotation.NONE) == {1: Rotation.HALF}
    path = tmp_path / "scan" / "pages" / ROTATION_FILE
    assert json.loads(path.read_text())["pages"] == {"1": 180}
    assert RotationStore(tmp_path / "scan", "/docs/scan.pdf").load() == {1: Rotation.HALF}
    # Another document that took the folder does not inherit the turns.
    assert RotationStore(tmp_path / "scan", "/other/scan.pdf").load() == {}
    path.write_text("{not json")
    assert store.load() == {}


def test_store_says_which_read_pages_were_turned_since(tmp_path: Path) -> None:
    store = RotationStore(tmp_path / "scan", "scan.pdf")
    store.set(2, Rotation.RIGHT)  # not read yet: nothing is stale
    assert store.stale() == {}
    store.set(1, Rotation.RIGHT, read=True)  # read upright, now turned
    store.set(1, Rotation.HALF, read=True)  # turned again: still read upright
    assert store.stale() == {1: Rotation.NONE}
    store.set(1, Rotation.NONE, read=True)  # back as it was read: not stale
    assert store.stale() == {}
    store.set(2, Rotation.LEFT, read=True)  # read turned right, now turned left
    assert store.stale() == {2: Rotation.RIGHT}
    store.fresh(2)  # read again at its turn
    assert store.stale() == {} and store.load() == {2: Rotation.LEFT}


# -- the pipeline sends the page upright ---------------------------------------------------------


async def test_a_sideways_page_is_sent_upright(tmp_path: Path) -> None:
    # A real lecture page at a size the model's cap leaves alone, lying on its side.
    upright = Image.open(LECTURE).convert("RGB").resize((1760, 990))
    sideways = tmp_path / "sideways.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways)  # turned anticlockwise
    received: list[Image.Image] = []
    raw = LECTURE_RAW.read_text(encoding="utf-8")

    def answer(body: dict[str, Any]) -> str:
        for part in body["messages"][0]["content"]:
            if part.get("type") == "image_url":
                received.append(_decoded(part["image_url"]["url"]))
        return raw

    async def run(job: DocumentJob) -> PageFinished:
        pool = ServerPool([ModelClient(server.url, api_key=server.api_key)])
        try:
            events = [e async for e in Pipeline(pool, ConvertOptions(retry=False)).run([job])]
        finally:
            await pool.close()
        return next(e for e in events if isinstance(e, PageFinished))

    with FakeOpenAIServer(answer) as server:
        as_is = await run(DocumentJob(sideways))
        turned = await run(DocumentJob(sideways, rotations={1: Rotation.RIGHT}))
    assert len(received) == 2
    assert _same(received[0], Image.open(sideways).convert("RGB"))  # no turn: sent as it lies
    assert _same(received[1], upright)  # turned right: sent upright
    result = turned.result
    assert result.status is PageStatus.DONE
    assert (result.width, result.height) == upright.size == turned.image.size  # type: ignore[union-attr]
    assert (as_is.result.width, as_is.result.height) == (990, 1760)
    # The boxes are in pixels of the upright image: the title sits at the top, across the page.
    x1, y1, x2, y2 = result.blocks[0].boxes[0]
    assert result.blocks[0].text.startswith("# Grundlagen Logik")
    assert (x1, y1, x2, y2) == pytest.approx(
        (370 / 999 * 1760, 11 / 999 * 990, 628 / 999 * 1760, 70 / 999 * 990)
    )


# -- the searchable PDF's page is turned as it was read ------------------------------------------

XHTML = "{http://www.w3.org/1999/xhtml}"


def _poppler_words(pdf: Path) -> list[tuple[str, tuple[float, ...]]]:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.skip("pdftotext is not installed (Debian poppler-utils; .ci/run installs it)")
    out = subprocess.run([tool, "-bbox", str(pdf), "-"], capture_output=True, check=True)
    root = ET.fromstring(out.stdout)
    keys = ("xMin", "yMin", "xMax", "yMax")
    return [
        (w.text or "", tuple(float(w.get(k, "nan")) for k in keys))
        for w in root.iter(f"{XHTML}word")
    ]


@pytest.mark.parametrize("own", [0, 90])
@pytest.mark.parametrize("turn", [Rotation.RIGHT, Rotation.HALF, Rotation.LEFT])
def test_searchable_page_is_turned_and_its_words_land_in_their_blocks(
    tmp_path: Path, turn: Rotation, own: int
) -> None:
    """A 500 x 300 pt page (with its own /Rotate `own`) read turned by `turn`: the text's boxes
    are in pixels of the turned image; the output page shows that image (its /Rotate turned as
    much), and poppler finds each word inside its block, in the page as a viewer shows it."""
    source = tmp_path / "in.pdf"
    doc = fitz.open()
    page = doc.new_page(width=500, height=300)
    page.draw_rect(fitz.Rect(50, 50, 450, 250), color=(0, 0, 0))
    page.set_rotation(own)
    shown = (page.rect.width, page.rect.height)
    doc.save(source)
    doc.close()
    # The image sent: the page as shown, turned; 2 px per point.
    width, height = (
        (int(shown[1] * 2), int(shown[0] * 2))
        if turn.swaps
        else (int(shown[0] * 2), int(shown[1] * 2))
    )
    boxes = {"Alpha": (40.0, 40.0, 300.0, 90.0), "Omega": (100.0, 200.0, 380.0, 260.0)}
    text = mupdf.PageText(
        width,
        height,
        tuple(mupdf.TextLine(word, box) for word, box in boxes.items()),
        turn=int(turn),
    )
    out = tmp_path / "out.pdf"
    assert mupdf.write_text_layers(source, {1: text}, out, replace=False).layered == [1]
    with fitz.open(out) as result:
        assert result[0].rotation == (own + turn) % 360
        assert result[0].rect.width * 2 == pytest.approx(width)
    words = _poppler_words(out)
    assert sorted(w for w, _ in words) == ["Alpha", "Omega"]
    for word, (x1, y1, x2, y2) in words:
        bx1, by1, bx2, by2 = (v / 2 for v in boxes[word])  # pixels -> points of the shown page
        slack = 0.5
        assert bx1 - slack <= x1 and by1 - slack <= y1, (word, (x1, y1, x2, y2), boxes[word])
        assert x2 <= bx2 + slack and y2 <= by2 + slack, (word, (x1, y1, x2, y2), boxes[word])


def test_an_unturned_text_layer_misses_a_turned_page(tmp_path: Path) -> None:
    """The check above can fail: the same boxes without the turn land elsewhere."""
    source = tmp_path / "in.pdf"
    doc = fitz.open()
    doc.new_page(width=500, height=300)
    doc.save(source)
    doc.close()
    box = (40.0, 40.0, 300.0, 90.0)
    text = mupdf.PageText(600, 1000, (mupdf.TextLine("Alpha", box),))  # a turned page's size
    out = tmp_path / "out.pdf"
    mupdf.write_text_layers(source, {1: text}, out, replace=False)
    ((_, (x1, y1, x2, y2)),) = _poppler_words(out)
    assert not (x1 >= 19.5 and y1 >= 19.5 and x2 <= 150.5 and y2 <= 45.5)
