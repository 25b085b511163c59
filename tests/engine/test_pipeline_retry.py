"""Part-wise and region retries in the pipeline, against the loopback server.

The server plays a model that reads what it is sent: the test page is a column of black bars,
bar k as wide as `bar_width(k)`, and the answer to any image (the page, a part of it or a
region) is one grounded block per bar it shows, `line k`, boxed in that image's 0..999
coordinates. So the boxes the pipeline puts on the page come from crops the server really
received, and a box in the wrong place, a line lost or a line read twice shows.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from ocrdesk.engine.pipeline import (
    ConvertOptions,
    DocumentJob,
    PageDelta,
    PageFinished,
    PageRestarted,
    PageStarted,
    Pipeline,
)
from ocrdesk.engine.regions import parts
from ocrdesk.engine.results import BlockSource, FlagKind, PageResult, PageStatus, Strategy
from ocrdesk.engine.retry import DENSE_INK_SHARE
from ocrdesk.engine.tasks import Sampling
from ocrdesk.engine.triage import ink_share
from tests.engine.test_pipeline import collect, pool_for
from tests.fakes.openai_server import FakeOpenAIServer, tokenize

WIDTH, HEIGHT = 800, 1200
LINES = 60
# bar k (1-based) spans y TOP + (k-1)*PITCH .. + THICK: lines of text, 7 pixels apart
TOP, PITCH, THICK = 30, 19, 12
LEFT = 60


def bar_width(k: int) -> int:
    return 100 + 10 * k


def bar_box(k: int) -> tuple[int, int, int, int]:
    y = TOP + (k - 1) * PITCH
    return (LEFT, y, LEFT + bar_width(k), y + THICK)


def bar_page_image() -> Image.Image:
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    for k in range(1, LINES + 1):
        x1, y1, x2, y2 = bar_box(k)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill="black")
    return page


def bar_page(path: Path) -> Path:
    bar_page_image().save(path)
    return path


def parts_limit() -> int:
    """A max_tokens that each part's answer fits in and the whole page's does not."""
    page = bar_page_image()
    longest = max(len(tokenize(reading(page.crop(part)))) for part in parts(WIDTH, HEIGHT))
    assert len(tokenize(reading(page))) > longest + 20
    return longest + 10


def bars(image: Image.Image) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(k, box in `image` pixels) of each bar the image shows, top to bottom (a bar cut by the
    image's edge too: its width says which it is)."""
    ink = image.convert("L").point(lambda v: 255 if v < 128 else 0)
    rows = ink.resize((1, ink.height), Image.Resampling.BOX)
    found = []
    y = 0
    while y < ink.height:
        if rows.getpixel((0, y)) == 0:  # type: ignore[comparison-overlap]
            y += 1
            continue
        start = y
        while y < ink.height and rows.getpixel((0, y)) != 0:  # type: ignore[comparison-overlap]
            y += 1
        box = ink.crop((0, start, ink.width, y)).getbbox()
        assert box is not None
        x1, _, x2, _ = box
        k = round((x2 - x1 - 100) / 10)  # crops are sent at the page's scale (small enough)
        found.append((k, (x1, start, x2, y)))
    return found


def sent_image(body: dict[str, Any]) -> Image.Image:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def reading(image: Image.Image, skip: frozenset[int] = frozenset()) -> str:
    """What the bar-reading model answers for `image` (the bars in `skip` left out)."""
    w, h = image.size
    out = []
    for k, (x1, y1, x2, y2) in bars(image):
        if k in skip:
            continue
        coords = [
            round(x1 / w * 999),
            round(y1 / h * 999),
            round(x2 / w * 999),
            round(y2 / h * 999),
        ]
        out.append(f"<|ref|>text<|/ref|><|det|>[{coords}]<|/det|>\nline {k}\n\n")
    return "".join(out)


class BarModel:
    """The server's outputs callable: reads bars; the whole page answered as `first` says."""

    def __init__(self, first: Callable[[Image.Image], str] | None = None) -> None:
        self.first = first
        self.sizes: list[tuple[int, int]] = []  # the size of each image sent, in order

    def __call__(self, body: dict[str, Any]) -> str:
        image = sent_image(body)
        self.sizes.append(image.size)
        if image.size == (WIDTH, HEIGHT) and self.first is not None:
            return self.first(image)
        return reading(image)


def lines(page: PageResult) -> list[str]:
    return [b.text for b in page.blocks]


def assert_on_their_bars(page: PageResult) -> None:
    """Every block's box lies on its bar in page pixels (within the 0..999 rounding)."""
    for b in page.blocks:
        k = int(b.text.split()[1])
        assert b.box == pytest.approx(bar_box(k), abs=2.0), b.text


def finished_page(events: list[Any]) -> PageResult:
    (page,) = [e.result for e in events if isinstance(e, PageFinished)]
    return page


def test_the_bar_page_is_dense_and_the_model_reads_it() -> None:
    page = bar_page_image()
    assert ink_share(page) >= DENSE_INK_SHARE  # so a truncated answer gets its parts retry
    assert [k for k, _ in bars(page)] == list(range(1, LINES + 1))
    # bar 5 (y 106..118) cut by the crop's edge is still read as line 5
    assert [k for k, _ in bars(page.crop((0, 110, WIDTH, 200)))] == [5, 6, 7, 8, 9]


async def test_a_truncated_page_is_read_in_parts_and_its_boxes_land_on_the_page(
    tmp_path: Path,
) -> None:
    png = bar_page(tmp_path / "bars.png")
    model = BarModel()
    whole = reading(bar_page_image())
    options = ConvertOptions(sampling=Sampling(max_tokens=parts_limit()))
    with FakeOpenAIServer(model) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
        finishes = server.max_in_flight
    page = finished_page(events)
    first = page.attempts[0]
    assert first.strategy is Strategy.FIRST and first.finish_reason == "length"
    assert whole.startswith(first.raw) and len(first.raw) < len(whole)
    # the lines after the cut are ink no box covers, too; the parts mend both
    assert [f.kind for f in first.flags] == [FlagKind.TRUNCATED, FlagKind.UNCOVERED]
    assert [a.strategy for a in page.attempts] == [Strategy.FIRST, Strategy.PARTS]
    # the parts: three bands of the page's width, each sent as it is
    assert model.sizes[0] == (WIDTH, HEIGHT)
    assert len(model.sizes) == 4 and all(w == WIDTH and h < HEIGHT / 2 for w, h in model.sizes[1:])
    # every line once, in order, on its own bar: the copies the overlaps made are gone
    assert lines(page) == [f"line {k}" for k in range(1, LINES + 1)]
    assert_on_their_bars(page)
    assert page.status is PageStatus.DONE and page.finish_reason == "stop"
    assert page.flags == []
    assert {b.source for b in page.blocks} == {BlockSource.RETRY}
    assert page.markdown.split("\n\n") == lines(page)
    # the raw holds each part's answer as received, after a line saying where the part lay
    assert page.raw.count("<--- Part ") == 3 and page.attempts[1].raw == page.raw
    # one page, one place in the send window: the parts went one after another
    assert finishes == 1
    # the window saw the first attempt stream; the parts stream nothing, and no restart
    kinds = [type(e) for e in events]
    assert kinds.count(PageStarted) == 1 and PageRestarted not in kinds
    streamed = "".join(e.text for e in events if isinstance(e, PageDelta))
    assert streamed == first.raw
    data = page.to_json()  # the journal keeps both attempts
    assert [a["strategy"] for a in data["attempts"]] == ["first", "parts"]
    assert PageResult.from_json(json.loads(json.dumps(data))).attempts == page.attempts


async def test_an_uncovered_region_is_read_alone_and_placed_where_it_is(tmp_path: Path) -> None:
    png = bar_page(tmp_path / "bars.png")
    missed = frozenset(range(10, 15))  # five lines the grounding prompt skipped
    model = BarModel(lambda image: reading(image, skip=missed))
    with FakeOpenAIServer(model) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, ConvertOptions()), [DocumentJob(png)])
        await pool.close()
    page = finished_page(events)
    first = page.attempts[0]
    (flag,) = first.flags
    assert flag.kind is FlagKind.UNCOVERED and flag.box is not None
    # the region the triage found is where the missed lines are
    top, bottom = bar_box(min(missed)), bar_box(max(missed))
    assert flag.box[1] <= top[1] and flag.box[3] >= bottom[3]
    assert [a.strategy for a in page.attempts] == [Strategy.FIRST, Strategy.REGION]
    # one crop, about the region's size (the region plus CROP_MARGIN), not the page
    assert len(model.sizes) == 2
    w, h = model.sizes[1]
    assert w < WIDTH and h < (bottom[3] - top[1]) + 3 * PITCH
    # the lines are all there, in order: the region's between lines 9 and 15
    assert lines(page) == [f"line {k}" for k in range(1, LINES + 1)]
    assert_on_their_bars(page)
    sources = {b.text: b.source for b in page.blocks}
    assert {sources[f"line {k}"] for k in missed} == {BlockSource.REGION}
    assert {s for t, s in sources.items() if int(t.split()[1]) not in missed} == {BlockSource.MODEL}
    assert page.flags == []  # nothing is left uncovered
    assert page.raw.startswith(first.raw) and "<--- Region at [" in page.raw
    assert page.attempts[1].raw.startswith("<--- Region at [")
    assert page.markdown.split("\n\n") == lines(page)


async def test_a_failing_parts_retry_keeps_the_first_attempt(tmp_path: Path) -> None:
    png = bar_page(tmp_path / "bars.png")
    server = FakeOpenAIServer()

    def first_then_fail(image: Image.Image) -> str:
        server.fail_next("400", 3)  # every request after the first is refused
        return reading(image)

    server.set_outputs(BarModel(first_then_fail))
    options = ConvertOptions(sampling=Sampling(max_tokens=parts_limit()))
    with server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
        sent = len(server.requests)
    page = finished_page(events)
    assert sent == 2  # the first, and the first part, refused: no more
    assert page.status is PageStatus.TRUNCATED  # the first attempt, kept
    assert page.raw == page.attempts[0].raw and page.raw.startswith("<|ref|>")
    assert [a.strategy for a in page.attempts] == [Strategy.FIRST, Strategy.PARTS]
    assert page.attempts[1].finish_reason is None and page.attempts[1].flags == ()
    assert [f.kind for f in page.flags] == [FlagKind.TRUNCATED, FlagKind.UNCOVERED]
    assert {b.source for b in page.blocks} == {BlockSource.MODEL}


async def test_a_truncated_page_with_little_ink_is_not_cut(tmp_path: Path) -> None:
    png = tmp_path / "sparse.png"
    sparse = Image.new("RGB", (WIDTH, HEIGHT), "white")
    ImageDraw.Draw(sparse).rectangle((60, 40, 400, 52), fill="black")
    sparse.save(png)
    assert ink_share(sparse) < DENSE_INK_SHARE
    # cut after the block's box: the page is truncated, and its one line covered
    limit = len(tokenize(reading(sparse))) - 1
    options = ConvertOptions(sampling=Sampling(max_tokens=limit))
    with FakeOpenAIServer(BarModel()) as server:
        pool = pool_for(server)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
        sent = len(server.requests)
    page = finished_page(events)
    assert sent == 1 and page.attempts == []
    assert [f.kind for f in page.flags] == [FlagKind.TRUNCATED]


async def test_retry_none_makes_no_parts_or_region_requests(tmp_path: Path) -> None:
    png = bar_page(tmp_path / "bars.png")
    model = BarModel(lambda image: reading(image, skip=frozenset(range(10, 15))))
    with FakeOpenAIServer(model) as server:
        pool = pool_for(server)
        options = ConvertOptions(retry=False)
        events = await collect(Pipeline(pool, options), [DocumentJob(png)])
        await pool.close()
    page = finished_page(events)
    assert len(model.sizes) == 1 and page.attempts == []
    assert [f.kind for f in page.flags] == [FlagKind.UNCOVERED]
