"""Regions of a page: crop one, OCR it alone, and put its blocks back where they belong.

Pure geometry on `Block`s in page pixels (the pixels of the image that was sent for the page),
plus `ocr_region`, the one way a crop is OCRed (the window's "OCR this region" and the
pipeline's part-wise and region retries, engine/retry.py):

- `crop` cuts a region out with a margin, `map_back` takes boxes from the crop's pixels to the
  page's.
- `overlapping`, `insertion_index` and `place_blocks` put new blocks into a page's reading order
  at the place of their region (optionally replacing the blocks there); `drop_covered` leaves
  out what a region's answer says that the page already holds.
- `parts` cuts a dense page into overlapping bands (or a grid) and `merge_parts` merges their
  blocks, dropping the duplicates the overlaps make and joining a block the cut split in two.
- `joined_raw` keeps the answers of several requests as received, one after another, each
  after a marker line that says where its crop lay (the raw of a page put together from them;
  its markdown is made from its blocks by engine/edits.py's `page_markdown_from_blocks`).

Reading order: the model's order is kept, and a new block goes next to its neighbour in the
same column (the block above or below it whose horizontal extent overlaps it most, at least
`SAME_COLUMN`), else after the block it stands beside, else next to any block above or below
it; with no neighbour at all, before the first block that starts lower on the page.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import math
import re
from collections import Counter
from collections.abc import Sequence

from PIL import Image

from . import triage
from .client import ModelClient
from .images import model_size, resize_to
from .parser import IMAGE_LABEL, parse
from .request import image_data_url, stream_watched
from .results import Block, BlockSource, Box
from .tasks import Sampling

__all__ = [
    "CROP_MARGIN",
    "DUPLICATE_OVERLAP",
    "DUPLICATE_TEXT",
    "PARTS",
    "PART_OVERLAP",
    "PIECE_MARK",
    "SAME_COLUMN",
    "crop",
    "drop_covered",
    "insertion_index",
    "joined_raw",
    "map_back",
    "merge_parts",
    "ocr_region",
    "overlapping",
    "parts",
    "place_blocks",
]

#: The margin `crop` adds around a region, as a share of the page's longer side (about 3 mm of
#: an A4 page): the model's boxes hug the glyphs and a region found from them or drawn by hand
#: is as tight, so without it the strokes at the region's edge would be cut.
CROP_MARGIN = 0.01
#: Bands `parts` cuts a page into. A page is cut because its answer passed max_tokens
#: (`truncated`) or the model gave up on it (`empty`, on dense pages: deepseek-ai/DeepSeek-OCR
#: #194); three bands hold a third of the text each (plus the overlap), so a page up to about
#: two and a half times the token limit fits.
PARTS = 3
#: How much neighbouring parts overlap, as a share of the page's height (of its width between
#: columns of a grid): 6 %, about 100 pixels of an A4 page at 144 dpi, four lines of body text
#: or a display formula. A line the cut goes through is then whole in one of the two parts;
#: the copies the overlap makes are dropped by `merge_parts`.
PART_OVERLAP = 0.06
#: Two boxes are in the same column when their horizontal extents overlap by this share of
#: their union (a block under a page-wide title shares half of its width, so 0.5 keeps the
#: column's own blocks ahead of the title).
SAME_COLUMN = 0.5
#: Blocks of two parts are one when this share of the smaller box lies in the other ...
DUPLICATE_OVERLAP = 0.5
#: ... and this share of the shorter text is found in the other (difflib matching blocks, the
#: whitespace collapsed): a block cut by the part's edge holds only some of its lines, and the
#: model reads the same line twice with small differences.
DUPLICATE_TEXT = 0.6
#: A region's block whose text (of at least REPEATED_MIN characters) is this much inside a block
#: the page already has is no news (`drop_covered`).
REPEATED_TEXT = 0.9
REPEATED_MIN = 12
#: A block the cut split in two (its top in one part, its bottom in the next) is joined when the
#: end of the first and the start of the second share at least STITCH_MIN characters (the lines
#: in the overlap) with at most STITCH_SLACK characters after and before the shared run (the
#: line the edge cut through, read in part or garbled).
STITCH_MIN = 24
STITCH_SLACK = 160
#: Characters of each text compared (SequenceMatcher is quadratic in the worst case).
_COMPARED = 2000
_WHITESPACE = re.compile(r"\s+")

#: The line before each request's answer in `joined_raw`.
PIECE_MARK = "<--- {what} at [{x1}, {y1}, {x2}, {y2}] --->"


# Geometry ------------------------------------------------------------------------------------


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> Box | None:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if x1 >= x2 or y1 >= y2:
        return None
    return (x1, y1, x2, y2)


def _inside_share(box: Box, region: Box) -> float:
    """The share of `box` that lies in `region` (a box with no area: 1 if its centre does)."""
    area = _area(box)
    if area <= 0:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return 1.0 if region[0] <= cx <= region[2] and region[1] <= cy <= region[3] else 0.0
    inter = _intersection(box, region)
    return _area(inter) / area if inter else 0.0


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _extent(block: Block) -> Box | None:
    """The box around all of a block's boxes (None: it has none)."""
    return _union(block.boxes) if block.boxes else None


def crop(image: Image.Image, region: Box, margin: float = CROP_MARGIN) -> tuple[Image.Image, Box]:
    """The piece of `image` to send for `region` (page pixels) grown by `margin` (a share of
    the page's longer side), and where that piece lies on the page: whole pixels, clamped to the
    image, at least one pixel wide and high."""
    width, height = image.size
    grow = margin * max(width, height)
    x1 = min(max(0, math.floor(region[0] - grow)), width - 1)
    y1 = min(max(0, math.floor(region[1] - grow)), height - 1)
    x2 = max(min(width, math.ceil(region[2] + grow)), x1 + 1)
    y2 = max(min(height, math.ceil(region[3] + grow)), y1 + 1)
    placed = (float(x1), float(y1), float(x2), float(y2))
    return image.crop((x1, y1, x2, y2)), placed


def map_back(blocks: Sequence[Block], placed: Box, crop_size: tuple[int, int]) -> list[Block]:
    """`blocks` whose boxes are in the pixels of a crop of `crop_size` (as it was sent, perhaps
    scaled) moved to page pixels, the crop lying at `placed` on the page."""
    cw, ch = crop_size
    sx = (placed[2] - placed[0]) / cw if cw else 1.0
    sy = (placed[3] - placed[1]) / ch if ch else 1.0
    ox, oy = placed[0], placed[1]
    return [
        dataclasses.replace(
            block,
            boxes=tuple(
                (ox + x1 * sx, oy + y1 * sy, ox + x2 * sx, oy + y2 * sy)
                for x1, y1, x2, y2 in block.boxes
            ),
        )
        for block in blocks
    ]


def overlapping(blocks: Sequence[Block], region: Box, share: float = 0.5) -> list[int]:
    """Indices of the blocks with at least `share` of their boxes' area inside `region`."""
    found = []
    for index, block in enumerate(blocks):
        if not block.boxes:
            continue
        areas = [_area(b) for b in block.boxes]
        shares = [_inside_share(b, region) for b in block.boxes]
        if sum(areas) <= 0:
            inside = sum(shares) / len(shares)
        else:
            inside = sum(s * a for s, a in zip(shares, areas, strict=True)) / sum(areas)
        if inside >= share:
            found.append(index)
    return found


def drop_covered(new: Sequence[Block], blocks: Sequence[Block], share: float = 0.5) -> list[Block]:
    """The blocks of `new` that the page's `blocks` do not already hold: one with `share` of its
    box inside existing boxes (what a crop's margin took of a neighbour), or whose text, of at
    least REPEATED_MIN characters, an existing block already holds (REPEATED_TEXT of it: the
    model read a neighbour again, or the page's text was boxed away from its ink), or that has
    no text and is no figure."""
    boxes = [box for block in blocks for box in block.boxes]
    texts = [t for block in blocks if (t := _plain(block.text))]
    kept = []
    for block in new:
        box = _extent(block)
        if box is not None and _area(box) > 0:
            covered = sum(_area(i) for b in boxes if (i := _intersection(box, b)) is not None)
            if covered / _area(box) >= share:
                continue
        text = _plain(block.text)
        if not text and block.label != IMAGE_LABEL:
            continue  # a box with nothing read in it (only a figure may have no text)
        if len(text) >= REPEATED_MIN and any(
            _text_share(text, other, floor=REPEATED_TEXT) >= REPEATED_TEXT
            for other in texts
            if len(other) >= len(text)
        ):
            continue
        kept.append(block)
    return kept


def _x_share(a: Box, b: Box) -> float:
    """Horizontal overlap of two boxes as a share of their horizontal union (0 if none)."""
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    union = max(a[2], b[2]) - min(a[0], b[0])
    if overlap <= 0:
        return 0.0
    return overlap / union if union > 0 else 1.0


def _y_share(a: Box, b: Box) -> float:
    """Vertical overlap of two boxes as a share of the lower one's height."""
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    shorter = min(a[3] - a[1], b[3] - b[1])
    if overlap <= 0:
        return 0.0
    return overlap / shorter if shorter > 0 else 1.0


def _neighbour_index(boxes: Sequence[Box | None], box: Box) -> int:
    """Where a block with `box` goes among blocks with `boxes` (None: not a neighbour); see the
    module's reading-order paragraph."""
    cy = (box[1] + box[3]) / 2
    best: tuple[tuple[float, ...], int] | None = None
    for index, other in enumerate(boxes):
        if other is None:
            continue
        x_share = _x_share(other, box)
        above = (other[1] + other[3]) / 2 <= cy
        if x_share > 0:
            rank = 2.0 if x_share >= SAME_COLUMN else 0.0
            gap = max(0.0, box[1] - other[3]) if above else max(0.0, other[1] - box[3])
            after = above
        elif _y_share(other, box) >= 0.5 and other[2] <= box[0]:
            rank, gap, after = 1.0, box[0] - other[2], True  # beside it, to its left
        else:
            continue
        centre = abs((other[1] + other[3]) / 2 - cy)
        # the latest of equals above or beside, the earliest of equals below
        key = (rank, -gap, -centre, index if after else -index)
        at = index + 1 if after else index
        if best is None or key > best[0]:
            best = (key, at)
    if best is not None:
        return best[1]
    for index, other in enumerate(boxes):
        if other is not None and other[1] > box[1]:
            return index
    return len(boxes)


def insertion_index(blocks: Sequence[Block], region: Box) -> int:
    """Where in the reading order of `blocks` a block of `region` goes (0..len(blocks))."""
    return _neighbour_index([_extent(b) for b in blocks], region)


def place_blocks(
    blocks: Sequence[Block], new: Sequence[Block], region: Box, *, replace: bool
) -> list[Block]:
    """`blocks` with `new` (the blocks read from `region`) inserted, in their own order, where
    the region is in the reading order. The blocks mostly inside the region (`overlapping`)
    are removed first when `replace`, the new ones taking the first one's place; else the new
    ones follow the last of them. A region over no block goes at `insertion_index`."""
    kept = list(blocks)
    under = overlapping(blocks, region)
    if replace and under:
        gone = set(under)
        kept = [b for i, b in enumerate(blocks) if i not in gone]
        at = under[0]
    elif under:
        at = under[-1] + 1  # kept beside the blocks it covers: after them
    else:
        at = insertion_index(kept, region)
    return [*kept[:at], *new, *kept[at:]]


# Parts ---------------------------------------------------------------------------------------


def _spans(length: int, count: int, overlap: float) -> list[tuple[float, float]]:
    """`count` spans covering 0..length, neighbours sharing `overlap` * length."""
    if count <= 1:
        return [(0.0, float(length))]
    shared = overlap * length
    size = (length + (count - 1) * shared) / count
    spans = [(k * (size - shared), k * (size - shared) + size) for k in range(count)]
    spans[-1] = (spans[-1][0], float(length))
    return spans


def parts(
    width: int,
    height: int,
    count: int = PARTS,
    overlap: float = PART_OVERLAP,
    columns: int = 1,
) -> list[Box]:
    """The parts of a `width` x `height` page to OCR one by one: `count` horizontal bands (of
    `columns` columns each: a grid), each overlapping its neighbours by `overlap` of the page's
    height (width); row by row, left to right. See PARTS and PART_OVERLAP for why."""
    if count < 1 or columns < 1:
        raise ValueError("a page is cut into at least one part")
    return [
        (x1, y1, x2, y2)
        for y1, y2 in _spans(height, count, overlap)
        for x1, x2 in _spans(width, columns, overlap)
    ]


def _plain(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()[:_COMPARED]


def _text_share(a: str, b: str, floor: float = 0.0) -> float:
    """The share of the shorter text found in the other (both empty: 1). Under `floor` it may
    be any value under `floor` (a bound from the characters both hold, found first)."""
    a, b = _plain(a), _plain(b)
    if not a and not b:
        return 1.0
    shorter = min(len(a), len(b))
    if not shorter:
        return 0.0
    bound = sum((Counter(a) & Counter(b)).values()) / shorter
    if bound < floor:
        return bound
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(m.size for m in matcher.get_matching_blocks()) / shorter


def _stitched(first: str, second: str) -> str | None:
    """`first` then `second` without the lines both hold (the overlap), when the end of one and
    the start of the other share them; None when they do not."""
    tail = first[-_COMPARED:]
    head = second[:_COMPARED]
    match = difflib.SequenceMatcher(None, tail, head, autojunk=False).find_longest_match(
        0, len(tail), 0, len(head)
    )
    if match.size < STITCH_MIN:
        return None
    if len(tail) - (match.a + match.size) > STITCH_SLACK or match.b > STITCH_SLACK:
        return None
    end = len(first) - len(tail) + match.a + match.size
    return first[:end] + second[match.b + match.size :]


def _confidence(a: Block, b: Block) -> float | None:
    known = [c for c in (a.confidence, b.confidence) if c is not None]
    return min(known) if known else None


def _merged(earlier: Block, later: Block) -> Block | None:
    """One block for two blocks of different parts that are one (a duplicate, or one block the
    cut split); None when they are two."""
    a, b = _extent(earlier), _extent(later)
    if a is None or b is None or (inter := _intersection(a, b)) is None:
        return None
    smaller = min(_area(a), _area(b))
    if (
        smaller > 0
        and _area(inter) / smaller >= DUPLICATE_OVERLAP
        and _text_share(earlier.text, later.text) >= DUPLICATE_TEXT
    ):
        # the fuller copy: the one the part's edge cut less of
        key_a = (len(_plain(earlier.text)), _area(a))
        key_b = (len(_plain(later.text)), _area(b))
        return later if key_b > key_a else earlier
    if _x_share(a, b) < SAME_COLUMN:
        return None
    upper, lower = (earlier, later) if a[1] <= b[1] else (later, earlier)
    text = _stitched(upper.text, lower.text)
    if text is None:
        return None
    return dataclasses.replace(
        upper, boxes=(_union([a, b]),), text=text, confidence=_confidence(upper, lower)
    )


def merge_parts(results: Sequence[tuple[Box, list[Block]]]) -> list[Block]:
    """The blocks of a page OCRed in parts, in reading order: `results` are (part, its blocks in
    page pixels) in the order of `parts`. The first part's blocks keep their order; each later
    block joins its neighbour of earlier parts (`insertion_index`), after the blocks of its own
    part before it; a block that an earlier part already holds (the overlap) is kept once, the
    fuller copy, and a block the cut split in two is joined (`DUPLICATE_*`, `STITCH_*`)."""
    merged: list[tuple[int, Block]] = []  # (the part it holds text of, the block)
    for k, (_, blocks) in enumerate(results):
        last = -1  # where this part's previous block went
        for block in blocks:
            box = _extent(block)
            if k == 0 or box is None:  # the model's own order, after the part's block before
                at = last + 1 if last >= 0 else len(merged)
                merged.insert(at, (k, block))
                last = at
                continue
            same = next(
                (
                    (j, one)
                    for j, (part, other) in enumerate(merged)
                    if part != k and (one := _merged(other, block)) is not None
                ),
                None,
            )
            if same is not None:
                j, one = same
                merged[j] = (k, one)
                last = max(last, j)
                continue
            earlier = [_extent(b) if part != k else None for part, b in merged]
            at = max(_neighbour_index(earlier, box), last + 1)
            merged.insert(at, (k, block))
            last = at
    return [block for _, block in merged]


# Text ----------------------------------------------------------------------------------------


def joined_raw(pieces: Sequence[tuple[str, Box, str]]) -> str:
    """The answers of several requests as received, one after another: `pieces` are (what,
    where its crop lay in page pixels, the answer); each answer follows a `PIECE_MARK` line."""
    out = []
    for what, (x1, y1, x2, y2), raw in pieces:
        mark = PIECE_MARK.format(what=what, x1=round(x1), y1=round(y1), x2=round(x2), y2=round(y2))
        out.append(f"{mark}\n{raw}")
    return "\n".join(out)


# OCR of a region -----------------------------------------------------------------------------


async def ocr_region(
    client: ModelClient,
    image: Image.Image,
    region: Box,
    prompt: str,
    sampling: Sampling,
    *,
    image_format: str = "png",
    jpeg_quality: int = 92,
    margin: float = CROP_MARGIN,
) -> tuple[list[Block], str, str | None]:
    """OCR `region` of the page `image` alone: the crop (`crop`, at most the size the model uses)
    is sent with `prompt`, the answer parsed at the crop's size and its boxes mapped back.

    Returns (blocks in page pixels with source REGION, the raw answer as received, its
    finish_reason). A looping answer is closed at its loop (finish_reason `LOOP_FINISH`) and
    the text before the loop parsed. Where the server sent logprobs, blocks get a confidence.
    Raises OCRDeskError when the request fails."""
    piece, placed = crop(image, region, margin)
    piece = resize_to(piece, model_size(*piece.size))
    url = await asyncio.to_thread(image_data_url, piece, image_format, jpeg_quality)
    streamed = await stream_watched(client, url, prompt, sampling)
    width, height = piece.size
    blocks = parse(streamed.kept, width, height).blocks
    logprobs = streamed.logprobs
    if logprobs:
        confidences = triage.block_confidences(logprobs, width, height, streamed.end)
        if len(confidences) == len(blocks):
            blocks = [
                dataclasses.replace(block, confidence=confidence)
                for block, confidence in zip(blocks, confidences, strict=True)
            ]
    blocks = [dataclasses.replace(b, source=BlockSource.REGION) for b in blocks]
    return map_back(blocks, placed, (width, height)), streamed.text, streamed.finish_reason
