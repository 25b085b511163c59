"""Where a page's text lies: lines and words estimated inside each grounded block.

The model gives one box per block and the block's text, not its lines. The searchable PDF, hOCR
and ALTO writers need lines (and words) with boxes, so that selecting text highlights the ink it
came from. This module estimates them, as pure geometry in page-image pixels:

    layout = layout_page(result)          -> PageLayout: blocks -> lines -> words, with boxes
    block = layout_block(label, box, text) -> one BlockLayout
    lines = block_lines(label, text)       -> the block's text as plain logical lines

How lines are estimated: the block's text becomes plain logical lines (markdown marks, HTML tags
and LaTeX delimiters removed; a table gives one line per row). A box from the model is tight
around the ink, so the rows fill it: the largest font size is found at which the logical lines,
each wrapped at the box's width, make rows that fit the box's height (a character is assumed
`CHAR_WIDTH` em wide and a row `ROW_PITCH` em high); each logical line is then wrapped at word
boundaries into its rows, the rows share the box's height evenly, the longest row spans the box's
width and the others are as wide as their share of characters, left-aligned. Words get the part of
their row that their characters take.

Blocks keep the model's order (its reading order). A block without a box, and an `image` block,
have no lines. Only a block's first box is used. A table's rows and a formula's lines are never
wrapped (a formula's LaTeX is far longer than its ink), and a table's rows span its width.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser

from .results import Block, Box, PageResult

__all__ = [
    "CHAR_WIDTH",
    "ROW_PITCH",
    "BlockLayout",
    "Line",
    "PageLayout",
    "Word",
    "block_lines",
    "label_role",
    "layout_block",
    "layout_page",
]

#: The average advance of a character, in em (Latin text set in a common sans or serif font).
CHAR_WIDTH = 0.5
#: The height of one row of text in a block, in em (font size plus the gap to the next row).
ROW_PITCH = 1.2
#: Labels whose blocks hold no text to lay out (the figure itself).
_NO_TEXT_LABELS = frozenset({"image"})
#: Labels whose logical lines are never wrapped: a table's rows, a formula's lines (its LaTeX
#: source is far longer than the ink it stands for, so its length says nothing about wrapping).
_NO_WRAP_LABELS = frozenset({"table", "equation"})
#: ... unless a line would be squeezed more than this into its row (a repetition loop's line of
#: thousands of characters): then it is wrapped like text.
_SQUEEZE = 8.0
#: Labels whose rows all span the block's width (a table's cells fill its columns).
_FULL_WIDTH_LABELS = frozenset({"table"})
#: More rows than this in one block is no estimate any more; the search stops there.
_MAX_ROWS = 2000


@dataclass(frozen=True)
class Word:
    text: str
    box: Box


@dataclass(frozen=True)
class Line:
    """One row of text: its box in page-image pixels, its estimated font size (em, in pixels)."""

    text: str
    box: Box
    font_size: float
    words: tuple[Word, ...]


@dataclass(frozen=True)
class BlockLayout:
    label: str
    box: Box
    lines: tuple[Line, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class PageLayout:
    """A page's blocks with their lines; boxes in pixels of the `width` x `height` page image."""

    number: int
    width: int
    height: int
    blocks: tuple[BlockLayout, ...]


# --------------------------------------------------------------------------- labels

_ROLES = {
    "title": "heading",
    "sub_title": "heading",
    "header": "heading",
    "page_header": "page_header",
    "footer": "page_footer",
    "page_footer": "page_footer",
    "footnote": "page_footer",
    "image_caption": "caption",
    "table_caption": "caption",
    "caption": "caption",
    "image": "figure",
    "table": "table",
    "equation": "formula",
    "formula": "formula",
}


def label_role(label: str) -> str:
    """What a model label is, for the formats that have classes for it: "heading", "caption",
    "page_header", "page_footer", "figure", "table", "formula" or (any other label) "text"."""
    return _ROLES.get(label, "text")


# --------------------------------------------------------------------------- text


_MATH_DELIMITERS = re.compile(r"\\\[|\\\]|\\\(|\\\)|\$\$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_BULLET = re.compile(r"^\s*[-*+]\s+")
_EMPHASIS = re.compile(r"(\*\*|__|~~)")
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)")
# Only what is an HTML tag: "a < b and c > d" in a formula keeps its text.
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_SPACES = re.compile(r"\s+")
# Control characters XML 1.0 cannot hold (and a PDF text layer has no use for), lone surrogates.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _TableRows(HTMLParser):
    """Rows of an HTML table as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            if not self.rows:
                self.rows.append([])
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif data.strip():  # text outside cells (a caption): a row of its own
            self.rows.append([data])


def _plain(text: str) -> str:
    text = _SURROGATE.sub("\ufffd", _UNWRITABLE.sub(" ", text))
    text = _MATH_DELIMITERS.sub(" ", text)
    text = _IMAGE_LINK.sub(" ", text)
    text = html.unescape(_TAG.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def block_lines(label: str, text: str) -> list[str]:
    """The block's text as plain logical lines (no empty ones), as a reader would copy it.

    Markdown headings, bullets and emphasis marks, HTML tags, image links and the LaTeX
    delimiters `\\[ \\] \\( \\) $$` are removed (the LaTeX itself stays); an HTML table gives
    one line per row, its cells separated by spaces. Control characters that XML cannot hold
    become spaces, lone surrogates U+FFFD."""
    if label in _NO_TEXT_LABELS:
        return []
    lines: list[str] = []
    rest = text
    while "<table" in rest.lower():
        start = rest.lower().index("<table")
        end = rest.lower().find("</table>", start)
        end = len(rest) if end < 0 else end + len("</table>")
        lines.extend(_text_lines(rest[:start]))
        parser = _TableRows()
        parser.feed(rest[start:end])
        parser.close()
        for row in parser.rows:
            line = " ".join(c for c in (_plain(cell) for cell in row) if c)
            if line:
                lines.append(line)
        rest = rest[end:]
    lines.extend(_text_lines(rest))
    return lines


def _text_lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = _EMPHASIS.sub("", _BULLET.sub("", _HEADING.sub("", raw)))
        line = _plain(line)
        if line:
            out.append(line)
    return out


# --------------------------------------------------------------------------- geometry


def _rows_needed(lengths: list[int], font_size: float, width: float) -> list[int]:
    per_row = max(1.0, width / (CHAR_WIDTH * font_size))
    return [max(1, math.ceil(n / per_row)) for n in lengths]


def _row_counts(lengths: list[int], width: float, height: float) -> list[int]:
    """Rows per logical line: the fewest total rows whose font size lets every line fit.

    Fitting is monotone in the total (more rows: a smaller font, fewer rows needed), so the
    total is found by bisection."""

    def fits(total: int) -> bool:
        return sum(_rows_needed(lengths, height / (total * ROW_PITCH), width)) <= total

    low, high = len(lengths), max(len(lengths), _MAX_ROWS)
    if not fits(high):
        return _rows_needed(lengths, height / (high * ROW_PITCH), width)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return _rows_needed(lengths, height / (low * ROW_PITCH), width)


def _wrap(line: str, rows: int) -> list[str]:
    """`line` cut at spaces into at most `rows` pieces of similar length."""
    words = line.split(" ")
    if rows <= 1 or len(words) == 1:
        return [line]
    rows = min(rows, len(words))
    target = len(line) / rows
    pieces: list[str] = []
    current: list[str] = []
    done = 0  # characters in finished pieces, with their separating spaces
    for word in words:
        if current:
            length = len(" ".join(current))
            # Close the piece when this word would take it further past its share than stopping.
            goal = target * (len(pieces) + 1) - done
            if len(pieces) < rows - 1 and abs(length + 1 + len(word) - goal) > abs(length - goal):
                pieces.append(" ".join(current))
                done += length + 1
                current = []
        current.append(word)
    pieces.append(" ".join(current))
    return pieces


def _words(text: str, box: Box) -> tuple[Word, ...]:
    x1, y1, x2, y2 = box
    scale = (x2 - x1) / max(1, len(text))
    words = []
    for match in re.finditer(r"\S+", text):
        words.append(
            Word(match.group(), (x1 + match.start() * scale, y1, x1 + match.end() * scale, y2))
        )
    return tuple(words)


def layout_block(label: str, box: Box, text: str) -> BlockLayout:
    """Lines and words of one block whose text `text` fills `box` (pixels)."""
    logical = block_lines(label, text)
    x1, y1, x2, y2 = box
    width, height = max(0.0, x2 - x1), max(0.0, y2 - y1)
    if not logical:
        return BlockLayout(label, box, ())
    lengths = [len(s) for s in logical]
    font_size = height / (len(logical) * ROW_PITCH)
    if label in _NO_WRAP_LABELS and max(lengths) * CHAR_WIDTH * font_size <= _SQUEEZE * width:
        counts = [1] * len(logical)
    else:
        counts = _row_counts(lengths, max(width, 1e-6), max(height, 1e-6))
    rows = [
        piece for line, count in zip(logical, counts, strict=True) for piece in _wrap(line, count)
    ]
    row_height = height / len(rows)
    longest = max(len(r) for r in rows)
    full = label in _FULL_WIDTH_LABELS
    lines = []
    for i, row in enumerate(rows):
        top = y1 + i * row_height
        right = x2 if full else x1 + width * len(row) / longest
        line_box = (x1, top, right, top + row_height)
        lines.append(Line(row, line_box, row_height / ROW_PITCH, _words(row, line_box)))
    return BlockLayout(label, box, tuple(lines))


def layout_page(result: PageResult) -> PageLayout:
    """The page's blocks (those with a box) laid out in lines, in the model's order."""
    blocks = [_layout(b) for b in result.blocks if b.box is not None]
    return PageLayout(result.number, result.width, result.height, tuple(blocks))


def _layout(block: Block) -> BlockLayout:
    assert block.box is not None
    return layout_block(block.label, block.box, block.text)
