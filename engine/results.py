"""The results of OCR: blocks with boxes, one page's result, its status, the flags that say why
a person should look at it (engine/triage.py finds them) and the attempts made at it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class PageStatus(str, Enum):
    """Where a page stands. `truncated` pages hit max_tokens: kept and flagged, never dropped."""

    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    TRUNCATED = "truncated"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (PageStatus.DONE, PageStatus.TRUNCATED, PageStatus.FAILED)


Box = tuple[float, float, float, float]


class BlockSource(str, Enum):
    """Where a block's text came from."""

    MODEL = "model"  # the page's first answer
    RETRY = "retry"  # a later attempt at the whole page (engine/retry.py)
    REGION = "region"  # a region of the page OCRed on its own
    EDITED = "edited"  # changed by a person in the window (engine/edits.py)


def box_to_json(box: Box | None) -> list[float] | None:
    """A box as the JSON files keep it: four numbers to 0.1 px, or null."""
    return [round(v, 1) for v in box] if box else None


def box_from_json(data: Any) -> Box | None:
    """A box read back from the JSON files (`box_to_json`); None for a null or empty one."""
    if not data:
        return None
    x1, y1, x2, y2 = (float(v) for v in data)
    return (x1, y1, x2, y2)


@dataclass(frozen=True)
class Block:
    """One grounded block: its label, boxes in page-image pixels (x1 <= x2, y1 <= y2), and text.

    A `<|det|>` may hold several boxes; `box` is the first (or None when the model gave none),
    `boxes` all of them. `text` is the block's text as the model wrote it, without tags.
    `confidence` is the mean probability (0..1) of the block's text tokens (engine/triage.py's
    `block_confidences`); None when the server sent no log-probabilities or the block has no text.
    """

    label: str
    boxes: tuple[Box, ...]
    text: str
    source: BlockSource = BlockSource.MODEL
    confidence: float | None = None

    @property
    def box(self) -> Box | None:
        return self.boxes[0] if self.boxes else None

    def to_json(self) -> dict[str, Any]:
        box = box_to_json(self.box)
        confidence = round(self.confidence, 4) if self.confidence is not None else None
        data: dict[str, Any] = {
            "label": self.label,
            "box": box,
            "text": self.text,
            "confidence": confidence,
        }
        if self.source is not BlockSource.MODEL:
            data["source"] = self.source.value
        if len(self.boxes) > 1:
            data["boxes"] = [[round(v, 1) for v in b] for b in self.boxes]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Block:
        confidence = data.get("confidence")  # null, or absent in journals older than it
        boxes_data = data.get("boxes") or ([data["box"]] if data.get("box") else [])
        return cls(
            label=str(data.get("label", "")),
            boxes=tuple(
                (float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in boxes_data
            ),
            text=str(data.get("text", "")),
            source=BlockSource(data.get("source", BlockSource.MODEL.value)),
            confidence=float(confidence) if confidence is not None else None,
        )


class FlagKind(str, Enum):
    """Why a page needs a person's look (the JSON value is the enum's value)."""

    LOOP = "loop"
    TRUNCATED = "truncated"
    EMPTY = "empty"
    UNCOVERED = "uncovered"
    GARBAGE = "garbage"
    LOW_CONFIDENCE = "low_confidence"


@dataclass(frozen=True)
class Flag:
    """One reason to review a page: its kind, a sentence for a person, and where (page pixels)."""

    kind: FlagKind
    detail: str
    box: Box | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "detail": self.detail}
        if self.box is not None:
            data["box"] = box_to_json(self.box)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flag:
        return cls(
            kind=FlagKind(data["kind"]),
            detail=str(data.get("detail", "")),
            box=box_from_json(data.get("box")),
        )


class Strategy(str, Enum):
    """How an attempt at a page was made (engine/retry.py chooses)."""

    FIRST = "first"  # the run's own prompt and sampling
    STRONGER_NGRAM = "stronger_ngram"  # the n-gram processor with a shorter n and a longer window
    PARTS = "parts"  # the page cut into overlapping parts, each OCRed alone (engine/regions.py)
    REGION = "region"  # an uncovered region cropped and OCRed alone (engine/regions.py)


@dataclass(frozen=True)
class Attempt:
    """One try at a page, kept in the JSON whichever attempt's text the page shows."""

    strategy: Strategy
    raw: str
    finish_reason: str | None
    flags: tuple[Flag, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "raw": self.raw,
            "finish_reason": self.finish_reason,
            "flags": [f.to_json() for f in self.flags],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(
            strategy=Strategy(data.get("strategy", Strategy.FIRST.value)),
            raw=str(data.get("raw", "")),
            finish_reason=data.get("finish_reason"),
            flags=tuple(Flag.from_json(f) for f in data.get("flags") or []),
        )


@dataclass
class ParsedPage:
    """What the parser makes of raw output: blocks and clean markdown.

    `markdown` refers to figure crops as `images/{image_prefix}{index}.png` where index counts the
    `image` blocks of the page from 0 (the exporter cuts the crops with the same names).
    """

    blocks: list[Block] = field(default_factory=list)
    markdown: str = ""


@dataclass
class PageResult:
    """One page's outcome: raw output, parsed blocks, markdown, and how it finished."""

    number: int  # 1-based page number in the source document
    width: int  # pixels of the image that was sent
    height: int
    status: PageStatus
    raw: str = ""
    markdown: str = ""
    blocks: list[Block] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    output_tokens: int | None = None
    flags: list[Flag] = field(default_factory=list)  # what remains to check after any retries
    # Every attempt when there was more than one (the text shown is the best one's).
    attempts: list[Attempt] = field(default_factory=list)
    # The blocks are a person's edits (engine/edits.py); `raw` still is what the model said.
    edited: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "number": self.number,
            "width": self.width,
            "height": self.height,
            "status": self.status.value,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "raw": self.raw,
            "markdown": self.markdown,
            "blocks": [b.to_json() for b in self.blocks],
            "flags": [f.to_json() for f in self.flags],
            "attempts": [a.to_json() for a in self.attempts],
        }
        if self.edited:
            data["edited"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageResult:
        return cls(
            number=int(data["number"]),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            status=PageStatus(data.get("status", "failed")),
            raw=str(data.get("raw", "")),
            markdown=str(data.get("markdown", "")),
            blocks=[Block.from_json(b) for b in data.get("blocks", [])],
            finish_reason=data.get("finish_reason"),
            error=data.get("error"),
            flags=[Flag.from_json(f) for f in data.get("flags") or []],
            attempts=[Attempt.from_json(a) for a in data.get("attempts") or []],
            edited=bool(data.get("edited", False)),
        )
