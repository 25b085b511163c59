"""Turn raw DeepSeek-OCR output into grounded blocks and clean markdown, whole or while it streams.

Grounded output interleaves text with tags::

    <|ref|>LABEL<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>
    the block's text, up to the next <|ref|>

Coordinates are 0..999 relative to the image that was sent. Real output breaks every rule (boxes
with x1 > x2 or values over 999, a `<|det|>` with no coordinates followed by LaTeX, garbage loops,
unclosed tags, no tags at all), so the parser is a small state machine that never raises and keeps
every character it cannot place as text.

A box may carry stray words among its numbers (`[[44, raw 666, 501, 707]]`, a real output): up
to MAX_STRAY characters other than numbers and separators are dropped when the box still has at
least four numbers; otherwise the whole `<|det|>` stays text.

One machine serves both entry points: `parse()` feeds the whole text to a `StreamParser` and
finishes it, so `StreamParser.finish()` equals `parse()` of the same text by construction. Feeding
is linear in the text and in the boxes: each delta is scanned once, plus a carry of at most one
unfinished tag, and each block is built once, when the next one starts.

Markdown follows the official DeepSeek-OCR post-processing (image blocks become links to crops,
other tags are removed, `\\coloneqq` -> `:=`, `\\eqqcolon` -> `=:`, blank runs collapsed) except
that it never drops text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .results import Block, Box, ParsedPage

__all__ = [
    "EOS_TOKEN",
    "MAX_LABEL",
    "MAX_STRAY",
    "StreamParser",
    "parse",
    "pixel_box",
    "strip_tags",
]

EOS_TOKEN = "<｜end▁of▁sentence｜>"
REF_OPEN = "<|ref|>"
REF_CLOSE = "<|/ref|>"
DET_OPEN = "<|det|>"
DET_CLOSE = "<|/det|>"
_TAGS = (REF_OPEN, REF_CLOSE, DET_OPEN, DET_CLOSE, EOS_TOKEN)
_MAX_TAG = max(len(t) for t in _TAGS)
# A second character that can follow "<" in a tag: lets the scanner skip HTML like "<td>" quickly.
_TAG_SECOND = frozenset(t[1] for t in _TAGS)

# A label longer than this, or one with a newline, is no label: the `<|ref|>` was never closed.
MAX_LABEL = 100
# Stray characters (not digits, "." within a number, "," or whitespace) a box may hold and still be
# read; more, or any with fewer than four numbers, and the `<|det|>` is text (it was no box).
MAX_STRAY = 16

LEAD_LABEL = "text"  # label of the untagged text before the first tag, and of a det without ref
IMAGE_LABEL = "image"

_MODE_TEXT, _MODE_REF, _MODE_DET = 0, 1, 2
# States of the coordinate reader that runs after `<|det|>`: `[[n, n, n, n], [...]]`.
_D_START, _D_OUTER, _D_INNER, _D_INT, _D_DOT, _D_FRAC = range(6)

# A whole box of numbers and separators only, read in one step (the character reader below gives
# the same result more slowly; it handles boxes cut by a delta and stray words). The lookahead
# keeps a run of digits from being split into numbers in more than one way.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?(?![0-9])"
_PLAIN_BOX = re.compile(rf"[\s,]*\[((?:[\s,]*{_NUMBER})*)[\s,]*\]")
_NUMBERS = re.compile(_NUMBER)
_LIST_OPEN = re.compile(r"\s*\[")
_LIST_CLOSE = re.compile(r"[\s,]*\]")
# A delta this short (a token or two) is read by the character reader: the regexes cost more.
_SHORT = 8

_BLANK_RUN = re.compile(r"\n(?:[ \t]*\n){2,}")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def pixel_box(coords: Sequence[float], width: int, height: int) -> Box:
    """Convert model coordinates (0..999) to image pixels.

    Uses the first four values: each is clamped to 0..999, the corners are ordered so that
    x1 <= x2 and y1 <= y2, and scaled as v / 999 * width (x) or v / 999 * height (y).
    Raises ValueError for fewer than four values (the parser drops such boxes itself).
    """
    if len(coords) < 4:
        raise ValueError(f"a box needs 4 coordinates, got {len(coords)}")
    # max(0.0, v) puts NaN at 0.0; min() then caps infinities at 999.
    x1, y1, x2, y2 = (min(999.0, max(0.0, float(v))) for v in coords[:4])
    if x1 > x2:
        x1, x2 = x2, x1
    if y1 > y2:
        y1, y2 = y2, y1
    return (x1 / 999 * width, y1 / 999 * height, x2 / 999 * width, y2 / 999 * height)


def parse(raw: str, width: int, height: int, image_prefix: str = "") -> ParsedPage:
    """Parse one page's raw output into blocks and markdown. Never raises on any `raw`."""
    parser = StreamParser(width, height, image_prefix)
    parser.feed(raw)
    return parser.finish()


def strip_tags(raw: str) -> str:
    """Plain text of raw output: tags, coordinates and the end-of-sentence token removed.

    No image links and no LaTeX rewriting (unlike `ParsedPage.markdown`); runs of blank lines
    are collapsed and trailing whitespace stripped.
    """
    parser = StreamParser(0, 0)
    parser._links = False
    parser.feed(raw)
    return parser._render(final=True)[1]


class _Draft:
    """The block under construction (always the last one): its text arrives in chunks."""

    __slots__ = ("boxes", "chunks", "has_det", "has_text", "label", "lead")

    def __init__(self, label: str, lead: bool = False) -> None:
        self.label = label
        self.lead = lead
        self.boxes: tuple[Box, ...] = ()
        self.chunks: list[str] = []
        self.has_text = False  # any non-whitespace text yet
        self.has_det = False  # a `<|det|>` was read for this block (parsable or not)

    def add(self, text: str) -> None:
        if not text:
            return
        self.chunks.append(text)
        if not self.has_text and not text.isspace():
            self.has_text = True


class StreamParser:
    """Parse raw output incrementally as it streams in.

    One parser per streaming page (and a new one when its text starts again):

    - `feed(delta)` each delta as it arrives; it returns the blocks whose boxes the delta
      completed, `feed_indexed(delta)` the same with each block's index in the page's blocks
      (the index the final parse gives it: the page view links a drawn box to its text by it).
    - `snapshot()` is the live view of the page so far: blocks and markdown. It holds back an
      incomplete tag at the end of what has arrived (a partial `<|de`, a label whose `<|/ref|>`
      has not come, coordinates not yet closed) and shows it once it is complete: as its box,
      or as text when it turns out to be no tag.
    - `settled_text` is the raw text for a live raw view, the same incomplete tag held back.
    - `finish()` is the final page, equal to `parse()` of all the fed text: what was still held
      back when the stream ended is text there.

    Neither `snapshot()`, `settled_text` nor `finish()` changes the parser: more text may be fed
    afterwards. `feed` costs time linear in the delta; `snapshot()` linear in the page so far.
    """

    def __init__(self, width: int, height: int, image_prefix: str = "") -> None:
        self.width = width
        self.height = height
        self.image_prefix = image_prefix
        self._links = True  # image blocks' markdown starts with a link to their crop
        self._raw: list[str] = []
        self._length = 0  # characters fed so far
        self._carry = ""  # the end of the last delta that may be the start of a tag
        self._mode = _MODE_TEXT
        self._open_at = 0  # where the `<|ref|>` or `<|det|>` being read starts in the raw text
        self._draft = _Draft(LEAD_LABEL, lead=True)
        # The finished blocks and their markdown, final: a later delta cannot change them.
        self._blocks: list[Block] = []
        self._markdown: list[str] = []
        self._images_done = 0  # image blocks among the finished ones
        self._ref_buf: list[str] = []
        self._ref_len = 0
        self._det_buf: list[str] = []
        self._det_state = _D_START
        self._det_nums: list[float] = []
        self._det_num: list[str] = []
        self._det_stray = 0  # stray characters in the box being read
        self._det_boxes: list[Box] = []
        self._closed: list[tuple[int, Block]] = []

    @property
    def text(self) -> str:
        """All raw text fed so far."""
        if len(self._raw) > 1:
            self._raw = ["".join(self._raw)]
        return self._raw[0] if self._raw else ""

    @property
    def settled_text(self) -> str:
        """The raw text fed so far less an incomplete tag at its end (see the class docstring)."""
        end = self._open_at if self._mode != _MODE_TEXT else self._length - len(self._carry)
        return self.text[:end]

    def feed(self, delta: str) -> list[Block]:
        """Take the next piece of raw output.

        Returns the blocks whose coordinates were completed by this delta, in order. Their text
        may still be "" (it streams in after the box); see `snapshot()` for the text so far.
        """
        if self._mode == _MODE_TEXT and not self._carry and "<" not in delta and delta:
            # The common case, kept short: plain text inside a block (as in `feed_indexed`).
            self._raw.append(delta)
            self._length += len(delta)
            draft = self._draft
            draft.chunks.append(delta)
            if not draft.has_text and not delta.isspace():
                draft.has_text = True
            return []
        return [block for _, block in self.feed_indexed(delta)]

    def feed_indexed(self, delta: str) -> list[tuple[int, Block]]:
        """`feed(delta)`, each block with its index in the page's blocks (as `finish()` gives
        them; the blocks before it are final, so the index never changes)."""
        if not delta:
            return []
        self._raw.append(delta)
        base = self._length - len(self._carry)  # where `s` below starts in the raw text
        self._length += len(delta)
        if self._mode == _MODE_TEXT and not self._carry and "<" not in delta:
            self._draft.add(delta)
            return []
        self._closed = []
        s = self._carry + delta if self._carry else delta
        self._carry = ""
        n = len(s)
        start = 0  # start of text not yet handed on
        pos = 0
        while True:
            j = s.find("<", pos)
            if j < 0:
                break
            if j + 1 < n and s[j + 1] not in _TAG_SECOND:
                pos = j + 1
                continue
            head = s[j : j + _MAX_TAG]
            tag = None
            partial = False
            for candidate in _TAGS:
                if head.startswith(candidate):
                    tag = candidate
                    break
                if len(head) < len(candidate) and candidate.startswith(head):
                    partial = True
            if tag is None:
                if partial:  # s ends inside what may become a tag: wait for the next delta
                    self._carry = s[j:]
                    n = j
                    break
                pos = j + 1
                continue
            if j > start:
                self._on_text(s[start:j])
            self._on_tag(tag, base + j)
            start = pos = j + len(tag)
        if n > start:
            self._on_text(s[start:n])
        return self._closed

    def snapshot(self) -> ParsedPage:
        """The page as parsed so far, holding back an incomplete tag at the end. O(page)."""
        blocks, markdown = self._render(final=False)
        return ParsedPage(blocks=blocks, markdown=markdown)

    def finish(self) -> ParsedPage:
        """The final page: equal to `parse(self.text, width, height, image_prefix)`."""
        blocks, markdown = self._render(final=True)
        return ParsedPage(blocks=blocks, markdown=markdown)

    # The state machine

    def _on_text(self, text: str) -> None:
        if self._mode == _MODE_TEXT:
            self._draft.add(text)
        elif self._mode == _MODE_REF:
            self._ref_buf.append(text)
            self._ref_len += len(text)
            if self._ref_len > MAX_LABEL or "\n" in text:
                self._draft.add(self._take_ref())
        else:
            rest = self._det_read(text)
            if rest:  # None while the coordinates go on
                self._draft.add(rest)

    def _on_tag(self, tag: str, at: int) -> None:
        if self._mode == _MODE_REF:
            if tag == REF_CLOSE:
                label = self._take_ref().strip()
                self._start_draft(_Draft(label))
                return
            self._draft.add(self._take_ref())
        elif self._mode == _MODE_DET:
            self._draft.add(self._det_fail(""))
        if tag == REF_OPEN:
            self._mode = _MODE_REF
            self._open_at = at
        elif tag == DET_OPEN:
            last = self._draft
            if last.lead or last.has_det or last.has_text:
                last = _Draft(LEAD_LABEL)
                self._start_draft(last)
            last.has_det = True
            self._mode = _MODE_DET
            self._open_at = at
        # A stray `<|/ref|>`, `<|/det|>` or end-of-sentence token is dropped.

    def _start_draft(self, draft: _Draft) -> None:
        """Finish the current draft (its block and markdown are final) and start `draft`."""
        block, markdown = self._draft_result(self._draft, "")
        if block is not None:
            self._blocks.append(block)
            self._markdown.append(markdown)
            if block.label == IMAGE_LABEL:
                self._images_done += 1
        self._draft = draft

    def _take_ref(self) -> str:
        """End reading a label: return what was read, back in text mode."""
        text = "".join(self._ref_buf)
        self._ref_buf = []
        self._ref_len = 0
        self._mode = _MODE_TEXT
        return text

    def _det_read(self, s: str) -> str | None:
        """Run the coordinate reader over `s`.

        Returns None while the coordinates may go on, else the text that follows them (the
        reader then is done: either the list closed, or it failed and all it read is text).
        """
        st = self._det_state
        i = 0
        if len(s) > _SHORT and st == _D_START and (m := _LIST_OPEN.match(s)):
            st, i = _D_OUTER, m.end()
        if len(s) > _SHORT and st == _D_OUTER:
            while m := _PLAIN_BOX.match(s, i):
                self._det_box([float(v) for v in _NUMBERS.findall(m.group(1))])
                i = m.end()
            if m := _LIST_CLOSE.match(s, i):
                self._det_done()
                return s[m.end() :]
        num = self._det_num
        for k, ch in enumerate(s[i:] if i else s, i):
            if st >= _D_INT:
                if "0" <= ch <= "9":
                    num.append(ch)
                    if st == _D_DOT:
                        st = _D_FRAC
                    continue
                if ch == "." and st == _D_INT:
                    num.append(ch)
                    st = _D_DOT
                    continue
                if st == _D_DOT:  # "7." : the dot is no part of the number
                    num.pop()
                    self._det_stray += 1
                self._det_nums.append(float("".join(num)))
                num.clear()
                st = _D_INNER  # the number ended: read `ch` as a separator, `]` or stray
            if st == _D_INNER:
                if "0" <= ch <= "9":
                    num.append(ch)
                    st = _D_INT
                elif ch == "]":
                    if self._det_stray and len(self._det_nums) < 4:
                        return self._det_fail(s)
                    self._det_box(self._det_nums)
                    self._det_nums = []
                    self._det_stray = 0
                    st = _D_OUTER
                elif ch == "[":
                    return self._det_fail(s)
                elif ch != "," and not ch.isspace():
                    self._det_stray += 1
                    if self._det_stray > MAX_STRAY:
                        return self._det_fail(s)
            elif st == _D_OUTER:
                if ch == "[":
                    st = _D_INNER
                elif ch == "]":
                    self._det_done()
                    return s[k + 1 :]
                elif ch != "," and not ch.isspace():
                    return self._det_fail(s)
            elif ch == "[":  # _D_START
                st = _D_OUTER
            elif not ch.isspace():
                return self._det_fail(s)
        self._det_state = st
        self._det_buf.append(s)
        return None

    def _det_box(self, numbers: list[float]) -> None:
        """A box's numbers were read: fewer than four make no box (and are dropped)."""
        if len(numbers) >= 4:
            self._det_boxes.append(pixel_box(numbers, self.width, self.height))

    def _det_done(self) -> None:
        draft = self._draft
        draft.boxes = tuple(self._det_boxes)
        block = Block(draft.label, draft.boxes, "".join(draft.chunks).strip())
        self._closed.append((len(self._blocks), block))
        self._det_reset()

    def _det_fail(self, s: str) -> str:
        """The coordinates did not parse: everything read since `<|det|>` is text."""
        text = "".join(self._det_buf) + s
        self._det_reset()
        return text

    def _det_reset(self) -> None:
        self._det_buf = []
        self._det_state = _D_START
        self._det_nums = []
        self._det_num = []
        self._det_stray = 0
        self._det_boxes = []
        self._mode = _MODE_TEXT

    def _pending(self) -> str:
        """What a final parse turns into text: an unread label or coordinates, and the carry."""
        if self._mode == _MODE_REF:
            return "".join(self._ref_buf) + self._carry
        if self._mode == _MODE_DET:
            return "".join(self._det_buf) + self._carry
        return self._carry

    # Output

    def _draft_result(self, draft: _Draft, extra: str) -> tuple[Block | None, str]:
        """The block of a draft (None for a blank lead) and its markdown, given the image count."""
        raw = "".join(draft.chunks) + extra
        text = raw.strip()
        if draft.lead and not text:
            return None, ""
        block = Block(draft.label, draft.boxes, text)
        if self._links and draft.label == IMAGE_LABEL and draft.boxes:
            raw = f"![](images/{self.image_prefix}{self._images_done}.png)\n{raw}"
        return block, raw

    def _render(self, final: bool) -> tuple[list[Block], str]:
        block, last = self._draft_result(self._draft, self._pending() if final else "")
        blocks = self._blocks.copy()
        pieces = self._markdown
        if block is not None:
            blocks.append(block)
            pieces = [*pieces, last]
        markdown = "".join(pieces)
        if self._links:
            markdown = markdown.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:")
        markdown = _BLANK_RUN.sub("\n\n", markdown)
        markdown = _LEADING_BLANK_LINES.sub("", markdown)
        return blocks, markdown.rstrip()
