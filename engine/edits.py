"""A person's corrections of a page: pure operations on block lists, and where they are kept.

    blocks = set_text(blocks, 2, "Revenue grew.")      # every operation returns a new list
    store = EditStore(OUT / stem)                        # pages/NNNN.edits.json beside the journal
    store.save(page, blocks)                             # on disk (atomically) at once
    result = edited(journal_result, store.load(page))    # the page as the exports show it

The journal entry (`pages/NNNN.json`) keeps what the model said, untouched; the edits file beside
it holds the page's blocks as the person left them. Exports (engine/export.py) read both and use
the edited blocks, with the page's markdown rebuilt from them (`page_markdown_from_blocks`).

A block whose content a person changed (text, label, box, merged, split) gets
`BlockSource.EDITED`; deleting and moving change the list, not a block. A changed text has no
model confidence any more (None); a changed label or box keeps it. Operations raise IndexError
for a block that is not there and ValueError for an impossible one (merging the last block,
splitting at an end); `move` clamps instead, so "up" on the first block is no change.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .export import atomic_write
from .parser import IMAGE_LABEL, parse
from .pipeline import image_prefix
from .results import (
    Block,
    BlockSource,
    Box,
    PageResult,
    PageStatus,
    box_from_json,
    box_to_json,
)

__all__ = [
    "Asked",
    "EditRequest",
    "EditStore",
    "delete",
    "edited",
    "merge_with_next",
    "move",
    "page_markdown_from_blocks",
    "set_box",
    "set_label",
    "set_text",
    "split",
]

#: What an edits file says it is, so that a file of another kind is never read as edits.
FORMAT = "ocrdesk-edits"
REQUESTS_FORMAT = "ocrdesk-edit-requests"
REVIEWED_FORMAT = "ocrdesk-reviewed"
#: The pages a person marked reviewed, one file per export (`EditStore.reviewed`).
REVIEWED_FILE = "reviewed.json"
VERSION = 1


def _check(blocks: Sequence[Block], i: int) -> None:
    if not 0 <= i < len(blocks):
        raise IndexError(f"no block {i} (the page has {len(blocks)})")


def _with(blocks: Sequence[Block], i: int, block: Block) -> list[Block]:
    out = list(blocks)
    out[i] = block
    return out


def set_text(blocks: Sequence[Block], i: int, text: str) -> list[Block]:
    """Block `i` with `text` (stripped, as the parser keeps a block's text)."""
    _check(blocks, i)
    block = replace(blocks[i], text=text.strip(), source=BlockSource.EDITED, confidence=None)
    return _with(blocks, i, block)


def set_label(blocks: Sequence[Block], i: int, label: str) -> list[Block]:
    _check(blocks, i)
    return _with(blocks, i, replace(blocks[i], label=label.strip(), source=BlockSource.EDITED))


def set_box(blocks: Sequence[Block], i: int, box: Box) -> list[Block]:
    """Block `i` with its first box replaced by `box` (corners ordered here; the caller keeps
    it on the page); a block that had no box gets this one. Further boxes are kept."""
    _check(blocks, i)
    x1, y1, x2, y2 = (float(v) for v in box)
    ordered = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    boxes = (ordered, *blocks[i].boxes[1:])
    return _with(blocks, i, replace(blocks[i], boxes=boxes, source=BlockSource.EDITED))


def delete(blocks: Sequence[Block], i: int) -> list[Block]:
    _check(blocks, i)
    return [b for k, b in enumerate(blocks) if k != i]


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def merge_with_next(blocks: Sequence[Block], i: int) -> list[Block]:
    """Blocks `i` and `i + 1` as one: the texts joined by a blank line, the label of the first,
    one box around all the boxes of both (none if neither had one)."""
    _check(blocks, i)
    if i + 1 >= len(blocks):
        raise ValueError("the last block has no next block to merge with")
    first, second = blocks[i], blocks[i + 1]
    text = "\n\n".join(t for t in (first.text, second.text) if t)
    boxes = (*first.boxes, *second.boxes)
    merged = Block(
        label=first.label,
        boxes=(_union(boxes),) if boxes else (),
        text=text,
        source=BlockSource.EDITED,
    )
    return [*blocks[:i], merged, *blocks[i + 2 :]]


def split(blocks: Sequence[Block], i: int, offset: int) -> list[Block]:
    """Block `i` cut in two at character `offset` of its text (whitespace at the cut dropped).

    Where each part lies is an estimate: the block's first box is cut across, its height shared
    in proportion to the two texts' lengths, as if the text ran evenly over the box's lines (a
    person moves the boxes if it did not). Further boxes go with the second part. Raises
    ValueError when either part would be empty."""
    _check(blocks, i)
    block = blocks[i]
    head, tail = block.text[:offset].rstrip(), block.text[offset:].lstrip()
    if offset <= 0 or not head or not tail:
        raise ValueError(f"splitting at {offset} leaves an empty block")
    head_boxes: tuple[Box, ...] = ()
    tail_boxes: tuple[Box, ...] = ()
    if block.box is not None:
        x1, y1, x2, y2 = block.box
        cut = y1 + (y2 - y1) * len(head) / (len(head) + len(tail))
        head_boxes = ((x1, y1, x2, cut),)
        tail_boxes = ((x1, cut, x2, y2), *block.boxes[1:])
    parts = [
        Block(block.label, head_boxes, head, BlockSource.EDITED),
        Block(block.label, tail_boxes, tail, BlockSource.EDITED),
    ]
    return [*blocks[:i], *parts, *blocks[i + 1 :]]


def move(blocks: Sequence[Block], i: int, delta: int) -> list[Block]:
    """Block `i` `delta` places later in reading order (earlier when negative), kept within the
    page: moving the first block up or the last one down changes nothing."""
    _check(blocks, i)
    out = list(blocks)
    block = out.pop(i)
    out.insert(max(0, min(len(blocks) - 1, i + delta)), block)
    return out


# The parser's markdown of tag-free text is that text with the parser's clean-up (`\\coloneqq`,
# blank runs, leading blank lines, trailing space): the one place that clean-up is written. A `<`
# before `|` or `｜` (how every model tag starts) is hidden from it, so that text a person typed
# to look like a tag stays text.
_TAG_STARTS = ("<|", "<｜")
_HIDDEN_LT = "\ue000"


def page_markdown_from_blocks(result: PageResult, blocks: Sequence[Block]) -> str:
    """The page's clean markdown made from `blocks` as the parser makes it from raw output:
    each block's text after a blank line, an `image` block with a box led by the link to its
    crop, `images/{prefix}{k}.png` with k counting the image blocks with a box (the crops
    `export.crop_figures` cuts for the same blocks)."""
    pieces: list[str] = []
    figures = 0
    for block in blocks:
        text = block.text
        if block.label == IMAGE_LABEL and block.boxes:
            text = f"![](images/{image_prefix(result.number)}{figures}.png)\n{text}"
            figures += 1
        pieces.append(f"\n{text}\n\n")
    joined = "".join(pieces)
    hidden = any(start in joined for start in _TAG_STARTS)
    if hidden:
        for start in _TAG_STARTS:
            joined = joined.replace(start, _HIDDEN_LT + start[1:])
    markdown = parse(joined, result.width, result.height).markdown
    return markdown.replace(_HIDDEN_LT, "<") if hidden else markdown


def edited(result: PageResult, blocks: Sequence[Block]) -> PageResult:
    """`result` with `blocks` and the markdown made from them, marked `edited`; its raw output,
    attempts and flags as they were. A failed page a person gave blocks is done."""
    status = PageStatus.DONE if result.status is PageStatus.FAILED else result.status
    return replace(
        result,
        blocks=list(blocks),
        markdown=page_markdown_from_blocks(result, blocks),
        status=status,
        edited=True,
    )


class Asked(str, enum.Enum):
    """What a person asked the model again from the window."""

    REGION = "region"  # a region drawn on the page
    PAGE = "page"  # the whole page, with another task or prompt


@dataclass(frozen=True)
class EditRequest:
    """One request a person made from the window and the model's answer as received: kept in
    the journal beside the edits (the edits say what the person kept of it)."""

    asked: Asked
    task: str
    box: Box | None  # the region in page pixels (None: the whole page)
    raw: str
    finish_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "asked": self.asked.value,
            "task": self.task,
            "box": box_to_json(self.box),
            "raw": self.raw,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditRequest:
        return cls(
            asked=Asked(data["asked"]),
            task=str(data.get("task", "")),
            box=box_from_json(data.get("box")),
            raw=str(data.get("raw", "")),
            finish_reason=data.get("finish_reason"),
        )


class EditStore:
    """One document's edits: `pages/NNNN.edits.json` in its export folder (`folder` is OUT/<stem>,
    the folder that holds `pages/`), one file per edited page, each written atomically the
    moment it is saved (a crash leaves the previous version or the new one, never half)."""

    SUFFIX = ".edits.json"
    REQUESTS_SUFFIX = ".requests.json"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pages_dir = folder / "pages"

    def path(self, number: int) -> Path:
        return self.pages_dir / f"{number:04d}{self.SUFFIX}"

    def load(self, number: int) -> list[Block] | None:
        """The edited blocks of page `number`; None when it has no edits (or its file is
        damaged: the page then shows the model's blocks)."""
        try:
            data = json.loads(self.path(number).read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or int(data.get("number", -1)) != number:
                return None
            return [Block.from_json(b) for b in data["blocks"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, number: int, blocks: Sequence[Block]) -> None:
        """Keep `blocks` as page `number`'s; raises OSError when it cannot be written."""
        data = {
            "format": FORMAT,
            "version": VERSION,
            "number": number,
            "blocks": [b.to_json() for b in blocks],
        }
        atomic_write(self.path(number), json.dumps(data, ensure_ascii=False))

    def requests_path(self, number: int) -> Path:
        return self.pages_dir / f"{number:04d}{self.REQUESTS_SUFFIX}"

    def requests(self, number: int) -> list[EditRequest]:
        """The requests made from the window for page `number`, oldest first."""
        try:
            data = json.loads(self.requests_path(number).read_text(encoding="utf-8"))
            if data.get("format") != REQUESTS_FORMAT:
                return []
            return [EditRequest.from_json(r) for r in data["requests"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []

    def add_request(self, number: int, request: EditRequest) -> None:
        """Keep one more request of page `number` (atomically, with those before it); raises
        OSError when it cannot be written. Undo does not remove it: it is what the model said."""
        kept = [*self.requests(number), request]
        data = {
            "format": REQUESTS_FORMAT,
            "version": VERSION,
            "number": number,
            "requests": [r.to_json() for r in kept],
        }
        atomic_write(self.requests_path(number), json.dumps(data, ensure_ascii=False))

    @property
    def reviewed_path(self) -> Path:
        return self.pages_dir / REVIEWED_FILE

    def reviewed(self) -> set[int]:
        """The pages a person marked reviewed (their flags looked at)."""
        try:
            data = json.loads(self.reviewed_path.read_text(encoding="utf-8"))
            if data.get("format") != REVIEWED_FORMAT:
                return set()
            return {int(n) for n in data["pages"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return set()

    def set_reviewed(self, number: int, reviewed: bool) -> set[int]:
        """Mark page `number` reviewed or not (atomically); the reviewed pages after it. Raises
        OSError when it cannot be written."""
        pages = self.reviewed()
        if reviewed:
            pages.add(number)
        else:
            pages.discard(number)
        data = {"format": REVIEWED_FORMAT, "version": VERSION, "pages": sorted(pages)}
        atomic_write(self.reviewed_path, json.dumps(data))
        return pages

    def clear(self, number: int) -> None:
        """Page `number` back to the model's blocks."""
        with contextlib.suppress(FileNotFoundError):
            self.path(number).unlink()

    def edited_pages(self) -> set[int]:
        if not self.pages_dir.is_dir():
            return set()
        found = set()
        for path in self.pages_dir.glob(f"[0-9]*{self.SUFFIX}"):
            number = path.name[: -len(self.SUFFIX)]
            if number.isdigit():
                found.add(int(number))
        return found

    def apply(self, result: PageResult) -> PageResult:
        """`result` as the person left it: edited with its page's blocks, or as it is."""
        blocks = self.load(result.number)
        return result if blocks is None else edited(result, blocks)
