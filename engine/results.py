"""The results of OCR: blocks with boxes, one page's result, and its status."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Block:
    """One grounded block: its label, boxes in page-image pixels (x1 <= x2, y1 <= y2), and text.

    A `<|det|>` may hold several boxes; `box` is the first (or None when the model gave none),
    `boxes` all of them. `text` is the block's text as the model wrote it, without tags.
    """

    label: str
    boxes: tuple[Box, ...]
    text: str

    @property
    def box(self) -> Box | None:
        return self.boxes[0] if self.boxes else None

    def to_json(self) -> dict[str, Any]:
        box = [round(v, 1) for v in self.box] if self.box else None
        data: dict[str, Any] = {"label": self.label, "box": box, "text": self.text}
        if len(self.boxes) > 1:
            data["boxes"] = [[round(v, 1) for v in b] for b in self.boxes]
        return data


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

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "width": self.width,
            "height": self.height,
            "status": self.status.value,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "raw": self.raw,
            "markdown": self.markdown,
            "blocks": [b.to_json() for b in self.blocks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageResult:
        blocks = []
        for b in data.get("blocks", []):
            boxes_data = b.get("boxes") or ([b["box"]] if b.get("box") else [])
            boxes = tuple(
                (float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in boxes_data
            )
            blocks.append(
                Block(label=str(b.get("label", "")), boxes=boxes, text=str(b.get("text", "")))
            )
        return cls(
            number=int(data["number"]),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            status=PageStatus(data.get("status", "failed")),
            raw=str(data.get("raw", "")),
            markdown=str(data.get("markdown", "")),
            blocks=blocks,
            finish_reason=data.get("finish_reason"),
            error=data.get("error"),
        )
