"""The reference page: one real page shipped with OCRDesk, the real DeepSeek-OCR answer for it, and
how another answer for it measures up (`ocrdesk doctor --check-server`).

    reference = load_reference()
    shape = judge(answer_text, reference, finish_reason)
    shape.problems  # [] when the answer has the reference's shape

A server can start, list the model and still answer nonsense: vLLM 0.19.0 answers DeepSeek-OCR
with text that has nothing to do with the page (vLLM issue 39919: alphabets mixed, random letters,
passages of other documents), and a model loaded with dummy weights answers random tokens. So the
answer is measured, not trusted: its grounding blocks (engine/parser.py), its boxes as the model
wrote them (engine/triage.py's `malformed_boxes`: every value within 0..999, corners in order),
letters of scripts the page does not use (engine/triage.py's `scripts`), and `word_recall`, the
share of the reference answer's words that the answer holds, which fluent text about another page
lacks. The thresholds are loose: a good server's answer differs from the reference in small ways
(another vLLM, the page scaled, a formula written otherwise); a broken one fails all of them.

resources/reference/SOURCE.md says where the page and its answer come from.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ocrdesk.resources import RESOURCES

from .parser import parse, strip_tags
from .triage import malformed_boxes, scripts

__all__ = [
    "MAX_MALFORMED_SHARE",
    "MIN_WORD_RECALL",
    "REFERENCE_DIR",
    "AnswerShape",
    "ReferencePage",
    "judge",
    "load_reference",
]

REFERENCE_DIR = RESOURCES / "reference"
_PAGE = "lecture-015"
#: Under this share of the reference's words, the answer is about something else (an answer of
#: the right page by another server and scale keeps most of them; an unrelated one keeps few).
MIN_WORD_RECALL = 0.5
#: Over this share of malformed boxes, the grounding is broken rather than slightly off.
MAX_MALFORMED_SHARE = 0.25
#: Letters of a script the reference does not use: this many make the answer mixed-script.
MAX_FOREIGN_LETTERS = 5
# Scripts a page of Latin text may use anyway: Greek in formulas, letter-like maths symbols
# (ℕ is DOUBLE-STRUCK, 𝒜 MATHEMATICAL, ℭ BLACK-LETTER).
_ALWAYS_ALLOWED = frozenset({"LATIN", "GREEK", "DOUBLE-STRUCK", "MATHEMATICAL", "BLACK-LETTER"})
_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass(frozen=True)
class ReferencePage:
    """The page image and exactly the answer DeepSeek-OCR gave for it."""

    image: Path
    answer: str
    width: int
    height: int

    def data_url(self) -> str:
        """The page as sent: its JPEG bytes as they are, in a data URL."""
        data = base64.b64encode(self.image.read_bytes()).decode("ascii")
        return f"data:image/jpeg;base64,{data}"


def load_reference() -> ReferencePage:
    """The shipped reference page (raises OSError when the resources lack it)."""
    image = REFERENCE_DIR / f"{_PAGE}.jpg"
    with Image.open(image) as img:
        width, height = img.size
    answer = (REFERENCE_DIR / f"{_PAGE}.raw.txt").read_text(encoding="utf-8")
    return ReferencePage(image, answer, width, height)


def _words(raw: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(strip_tags(raw))}


@dataclass(frozen=True)
class AnswerShape:
    """What an answer for the reference page looks like next to the reference answer."""

    blocks: int  # grounded blocks (with a box) the parser found
    boxes: int  # boxes in them
    malformed: int  # boxes as written with a value outside 0..999 or corners out of order
    word_recall: float  # share of the reference answer's words found in the answer
    foreign: dict[str, int]  # letters by script (lower case) that the reference does not use
    finished: bool  # the answer ended by itself (not cut at max_tokens)

    @property
    def problems(self) -> list[str]:
        """What is wrong with the answer, a sentence each; [] when it has the reference's shape."""
        found = []
        if not self.blocks:
            found.append("no grounding tags (<|ref|>/<|det|> with a box) in the answer")
        elif self.malformed > MAX_MALFORMED_SHARE * self.boxes:
            found.append(
                f"{self.malformed} of {self.boxes} boxes malformed (a value outside 0..999 or "
                "corners out of order)"
            )
        if self.word_recall < MIN_WORD_RECALL:
            found.append(
                f"only {self.word_recall:.0%} of the page's words in the answer (a good one has "
                f"over {MIN_WORD_RECALL:.0%}): it is not about this page"
            )
        mixed = {script: n for script, n in self.foreign.items() if n >= MAX_FOREIGN_LETTERS}
        if mixed:
            found.append(
                "letters of scripts the page does not use: "
                + ", ".join(f"{n} {script}" for script, n in sorted(mixed.items()))
            )
        if not self.finished:
            found.append("the answer ran on to the token limit")
        return found

    def summary(self) -> str:
        """One line for a person: the measures, whatever they are."""
        return (
            f"{self.blocks} grounded blocks, {self.boxes - self.malformed} of {self.boxes} boxes "
            f"well formed, {self.word_recall:.0%} of the page's words"
        )


def judge(answer: str, reference: ReferencePage, finish_reason: str | None) -> AnswerShape:
    """Measure `answer` (raw model output for the reference page) against the reference answer."""
    page = parse(answer, reference.width, reference.height)
    grounded = [block for block in page.blocks if block.boxes]
    expected = _words(reference.answer)
    recall = len(expected & _words(answer)) / len(expected) if expected else 0.0
    allowed = _ALWAYS_ALLOWED | set(scripts(strip_tags(reference.answer)))
    foreign = {
        script.lower(): n
        for script, n in scripts(strip_tags(answer)).items()
        if script not in allowed
    }
    return AnswerShape(
        blocks=len(grounded),
        boxes=sum(len(block.boxes) for block in grounded),
        malformed=sum(
            1 for _, box in malformed_boxes(answer, reference.width, reference.height) if box
        ),
        word_recall=recall,
        foreign=foreign,
        finished=finish_reason != "length",
    )
