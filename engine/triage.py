"""Triage checks: find pages whose OCR went wrong, while they stream and once they are done.

Every check is a pure function (or, for loops, a small streaming object) that returns `Flag`s:

- `loop`: `LoopDetector` is fed the stream's deltas and says at which character a repetition
  became certain, so the request can be closed there (`LoopVerdict`); `check_loop` also flags a
  finished page whose section headings repeat (the model re-reading the page from the top).
- `truncated`: the server stopped at max_tokens (finish_reason `length`).
- `empty`: no text (or only tags and markup) although the page image has ink (`ink_share`).
- `uncovered`: grounding output whose boxes leave a sizeable region of ink uncovered
  (`uncovered_regions`: downscaled ink mask minus the boxes, dilated, connected components).
- `garbage`: replacement or control characters, a script the rest of the text does not use, and
  boxes the model wrote malformed (x1 >= x2, y1 >= y2, a value over 999, no coordinates at all).
- `low_confidence`: a block whose mean token probability (`block_confidences`) is under
  `LOW_CONFIDENCE`.

The thresholds are named constants below; the numbers in their comments were measured on
../shared/corpus (pages/ and model-outputs/) by tests/engine/test_triage.py and
benchmarks/bench_triage.py. Nothing here imports Qt or does I/O: images come in as PIL images.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import exp
from typing import Literal

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .parser import DET_OPEN, EOS_TOKEN, StreamParser, pixel_box, strip_tags
from .results import Box, Flag, FlagKind, PageResult
from .tasks import Task

__all__ = [
    "EMPTY_INK_SHARE",
    "LOW_CONFIDENCE",
    "Flag",
    "FlagKind",
    "LoopDetector",
    "LoopVerdict",
    "block_confidences",
    "check_empty",
    "check_garbage",
    "check_loop",
    "check_low_confidence",
    "check_page",
    "check_truncated",
    "check_uncovered",
    "find_loop",
    "ink_share",
    "malformed_boxes",
    "uncovered_regions",
]


# Loops ---------------------------------------------------------------------------------------

# The detector looks at K-character grams of the stream (whitespace runs read as one space). A
# gram "repeats" when the same gram occurred at most LOOP_MAX_UNIT grams before: a unit of up to
# LOOP_MAX_UNIT characters repeating makes every gram after its first copy repeat. A loop is
# certain when LOOP_SHARE of the last LOOP_WINDOW counted grams repeat. Measured (K=12, window
# 600, benchmarks/bench_triage.py): the clean outputs of the corpus peak at 0.46 (01's HTML table
# and lecture-006's formulas), the recorded loops reach 0.89 (06, whose pmatrix copies vary
# their indices) and 1.00 (07).
LOOP_GRAM = 12
LOOP_MAX_UNIT = 300
LOOP_WINDOW = 600
LOOP_SHARE = 0.75
# Grams made only of these characters are table scaffolding (`<td></td>`, `<tr>`, `|---|`, `| |`,
# `| - |`): legitimate rows of empty cells repeat them by nature, so they are not counted at all.
_FILLER = frozenset("<>/tdhr|-: ")
# The grounding tags repeat on every block: their grams are not counted either.
_TAG_CHARS = frozenset("<|>/refdt[]0123456789, ")
_WHITESPACE = re.compile(r"\s+")
# The same two sets as `str.strip` arguments: a gram is made only of them when nothing is left.
_FILLER_STRIP = "".join(sorted(_FILLER))
_TAG_STRIP = "".join(sorted(_TAG_CHARS))
# `_scan` takes a long delta in pieces of at most this many characters (its deques hold this much
# more than the detector needs, so that a verdict in the middle of a piece still finds its text).
_SCAN_PIECE = 1024
# `LoopDetector.feed` scans the stream in batches of at least this many characters.
_BATCH = 64
# A count: COUNT_RUN numbers in a row, each the last plus the same non-zero step, at most
# COUNT_GAP characters apart ("2091 \\ 2092 \\ ..." to the token limit: lecture-354, DeepSeek-OCR
# #257). The longest such run in the clean outputs of the corpus is 4 (lecture-015).
COUNT_RUN = 40
COUNT_GAP = 8
# A markdown heading (`#` line) of at least this many words written a second time: the model
# started the page over (DeepSeek-OCR-2 #28, ollama #13345 = corpus 15). No clean output of the
# corpus repeats a heading of three words or more; lecture-354 repeats "### Bsp:" legitimately.
REPEATED_HEADING_WORDS = 3
# A line longer than this is no heading (its text is not kept while it streams).
HEADING_MAX = 200
_HEADING = re.compile(r"[ \t]*#{1,6}[ \t]+(.+?)[ \t#]*")
# A gap of more than this many counted grams that do not repeat ends a loop region (a changed
# character makes at most LOOP_GRAM grams new): the walk back to the loop's start stops there.
LOOP_GAP = 2 * LOOP_GRAM


@dataclass(frozen=True)
class LoopVerdict:
    """A repetition found in a stream.

    `at`: characters fed when the loop became certain (close the request there). `start`: where
    the second copy of the repeated unit begins (raw[:start] is the page's result: the text
    before the loop plus one copy of the unit). `unit`: the repeated text (whitespace collapsed),
    `period` its length in characters, `share` the share of repeating grams that made it certain.
    A count ("1 \\\\ 2 \\\\ 3 ...") has period 0, `unit` says where it started and its step; a
    repeated heading has the heading as `unit` and the distance between its copies as `period`.
    """

    at: int
    start: int
    unit: str
    period: int
    share: float

    def flag(self) -> Flag:
        unit = self.unit if len(self.unit) <= 60 else self.unit[:57] + "..."
        what = f"repeats {unit!r} (every {self.period} characters)" if self.period else unit
        return Flag(
            FlagKind.LOOP,
            f"the output {what} from character {self.start}; certain at character {self.at}",
        )


class LoopDetector:
    """Find a repetition loop in a stream of deltas, in linear time and bounded memory.

    `feed(delta)` returns a `LoopVerdict` the first time a loop is certain (and the same one
    for every later call), else None. Memory is O(LOOP_MAX_UNIT + LOOP_WINDOW) whatever the
    length of the stream.
    """

    def __init__(self) -> None:
        self._fed = 0  # raw characters scanned
        self._pending: list[str] = []  # deltas fed and not yet scanned
        self._pending_size = 0
        self._space = False  # the last normalized character was a collapsed whitespace run
        self._n = 0  # normalized characters so far
        # The last normalized characters with the raw offset each came from (bounded).
        self._keep = LOOP_WINDOW + LOOP_MAX_UNIT + LOOP_GRAM
        self._chars: deque[str] = deque(maxlen=self._keep + _SCAN_PIECE)
        self._offsets: deque[int] = deque(maxlen=self._keep + _SCAN_PIECE)
        self._tail = ""  # the last LOOP_GRAM - 1 normalized characters
        self._seen: dict[str, int] = {}  # gram -> normalized index where it last ended
        self._pruned = 0  # normalized index of `_seen`'s last pruning
        self._window: deque[tuple[int, int]] = deque()  # (index, distance or 0) of counted grams
        self._repeats = 0
        self._distances: Counter[int] = Counter()
        self.verdict: LoopVerdict | None = None
        self.peak = 0  # the most repeating grams a full window has held (for the benchmark)
        self._digits: list[str] = []  # the number being read
        self._number_at = 0  # raw offset where it started
        self._last: int | None = None  # the last number read, its end, the step, the run
        self._last_end = 0
        self._step = 0
        self._run = 0
        self._run_at = 0  # raw offset of the run's first number
        self.longest_count = 0  # the longest count seen (for the benchmark)
        self._prev_at = 0  # raw offset where the last number started
        self._line: list[str] = []  # the raw line being read, while it may be a heading
        self._line_len = 0
        self._line_at = 0  # raw offset where it starts
        self._headings: dict[str, int] = {}  # heading -> raw offset of its first line

    @property
    def fed(self) -> int:
        """Raw characters fed so far."""
        return self._fed + self._pending_size

    def feed(self, delta: str) -> LoopVerdict | None:
        """Take the next delta of the stream; the verdict once a loop is certain.

        Deltas are scanned in batches of at least `_BATCH` characters: a stream's deltas are a
        token each, and a scan's fixed cost paid per token cost more than the scan itself. The
        verdict is the same whatever the batches (the scan does not depend on how the stream is
        cut); it comes up to `_BATCH` characters later, and `finish` scans what is left."""
        if self.verdict is not None or not delta:
            return self.verdict
        self._pending.append(delta)
        self._pending_size += len(delta)
        if self._pending_size < _BATCH:
            return None
        return self.finish()

    def finish(self) -> LoopVerdict | None:
        """Scan what `feed` has batched (at the end of the stream); the verdict, if any."""
        if self.verdict is None and self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self.verdict = self._scan_delta(text)
        return self.verdict

    def _scan_delta(self, delta: str) -> LoopVerdict | None:
        base = self._fed
        self._fed += len(delta)
        if verdict := self._lines(delta, base):
            self.verdict = verdict
            return verdict
        norm: list[str] = []
        offsets: list[int] = []
        pos = 0
        for m in _WHITESPACE.finditer(delta):
            for k in range(pos, m.start()):
                norm.append(delta[k])
                offsets.append(base + k)
            if m.start() > pos:
                self._space = False
            if not self._space:
                norm.append(" ")
                offsets.append(base + m.start())
                self._space = True
            pos = m.end()
        if pos < len(delta):
            for k in range(pos, len(delta)):
                norm.append(delta[k])
                offsets.append(base + k)
            self._space = False
        return self._scan("".join(norm), offsets)

    def _lines(self, delta: str, base: int) -> LoopVerdict | None:
        """Follow the raw lines of `delta`: a heading seen before is a loop."""
        pos = 0
        while True:
            nl = delta.find("\n", pos)
            piece = delta[pos:] if nl < 0 else delta[pos:nl]
            if self._line_len <= HEADING_MAX:
                self._line.append(piece)
            self._line_len += len(piece)
            if nl < 0:
                return None
            line, at = "".join(self._line), self._line_at
            self._line, self._line_len, self._line_at = [], 0, base + nl + 1
            pos = nl + 1
            if len(line) > HEADING_MAX or not (m := _HEADING.fullmatch(line)):
                continue
            heading = _WHITESPACE.sub(" ", m.group(1))
            if len(heading.split()) < REPEATED_HEADING_WORDS:
                continue
            first = self._headings.setdefault(heading, at)
            if first != at:
                return LoopVerdict(
                    at=base + nl + 1, start=at, unit=heading, period=at - first, share=1.0
                )

    def _scan(self, text: str, offsets: list[int]) -> LoopVerdict | None:
        for k in range(0, len(text), _SCAN_PIECE):
            if verdict := self._scan_piece(text[k : k + _SCAN_PIECE], offsets[k : k + _SCAN_PIECE]):
                return verdict
        return None

    def _scan_piece(self, text: str, offsets: list[int]) -> LoopVerdict | None:
        # The hot loop of the stream (every character of every page): one dict lookup and store
        # per gram, the gram's table-or-tag test as two `str.strip` calls in C, the deques
        # extended once per piece (trimmed back to the character a verdict is found at).
        s = self._tail + text
        lead = len(self._tail)
        seen, window, distances = self._seen, self._window, self._distances
        self._chars.extend(text)
        self._offsets.extend(offsets)
        n0 = self._n
        horizon = LOOP_MAX_UNIT + 1  # a gram repeats when its last copy ended this close
        for k, ch in enumerate(text):
            i = n0 + k
            if "0" <= ch <= "9":
                if not self._digits:
                    self._number_at = offsets[k]
                self._digits.append(ch)
            elif self._digits and (verdict := self._number(i, offsets[k])):
                self._at(k, len(text))
                self.verdict = verdict
                return verdict
            end = lead + k + 1
            if end < LOOP_GRAM:
                continue
            gram = s[end - LOOP_GRAM : end]
            last = seen.get(gram)
            seen[gram] = i
            if not gram.strip(_FILLER_STRIP) or not gram.strip(_TAG_STRIP):
                continue
            distance = i - last if last is not None and i - last <= horizon else 0
            window.append((i, distance))
            if distance:
                self._repeats += 1
                distances[distance] += 1
            if len(window) > LOOP_WINDOW:
                _, gone = window.popleft()
                if gone:
                    self._repeats -= 1
                    distances[gone] -= 1
            if len(window) < LOOP_WINDOW:
                continue
            if self._repeats > self.peak:
                self.peak = self._repeats
            if self._repeats >= LOOP_SHARE * LOOP_WINDOW:
                self._at(k, len(text))
                self.verdict = self._verdict()
                return self.verdict
        self._n = n0 + len(text)
        self._tail = s[-(LOOP_GRAM - 1) :]
        if self._n - self._pruned > 4 * LOOP_MAX_UNIT:  # bounded memory: forget far grams
            keep_from = self._n - LOOP_MAX_UNIT - 1
            self._seen = {g: j for g, j in seen.items() if j >= keep_from}
            self._pruned = self._n
        return None

    def _at(self, k: int, size: int) -> None:
        """Set the state to just after character `k` of the piece of `size` being scanned (for
        `_number` and `_verdict`, which read the last characters and offsets and the count)."""
        for _ in range(size - k - 1):
            self._chars.pop()
            self._offsets.pop()
        self._n += k + 1  # `_n` is the piece's start while it is scanned

    def _number(self, i: int, offset: int) -> LoopVerdict | None:
        """A number ended before normalized index `i` (raw `offset`): extend or restart the
        count."""
        gap = i - len(self._digits) - self._last_end
        value = int("".join(self._digits[:18]))
        self._digits = []
        step = value - self._last if self._last is not None else 0
        if self._last is not None and gap <= COUNT_GAP and step:
            if step == self._step and self._run:
                self._run += 1
            else:
                self._step, self._run, self._run_at = step, 2, self._prev_at
        else:
            self._run = 0
        self._last, self._last_end, self._prev_at = value, i, self._number_at
        self.longest_count = max(self.longest_count, self._run)
        if self._run < COUNT_RUN:
            return None
        return LoopVerdict(
            at=offset + 1,
            start=self._run_at,
            unit=f"counts from {value - (self._run - 1) * step} by {step}",
            period=0,
            share=1.0,
        )

    def _verdict(self) -> LoopVerdict:
        period = max(self._distances.items(), key=lambda kv: kv[1])[0]
        # The loop's second copy starts with the oldest repeating gram of the window that no gap
        # of more than LOOP_GAP new grams separates from the newest.
        first = self._n - 1
        gap = 0
        for index, distance in reversed(self._window):
            if distance:
                first, gap = index, 0
            else:
                gap += 1
                if gap > LOOP_GAP:
                    break
        kept = self._n - len(self._chars)  # normalized index of self._chars[0]
        second = max(period, first - LOOP_GRAM + 1 - kept)
        chars = "".join(self._chars)
        return LoopVerdict(
            at=self._offsets[-1] + 1,
            start=self._offsets[second] if second < len(self._offsets) else self._fed,
            unit=chars[second - period : second],
            period=period,
            share=self._repeats / LOOP_WINDOW,
        )


def find_loop(text: str, delta_size: int = 0) -> LoopVerdict | None:
    """`LoopDetector` over a whole text (in deltas of `delta_size` characters; 0: at once)."""
    detector = LoopDetector()
    if delta_size <= 0:
        detector.feed(text)
        return detector.finish()
    for k in range(0, len(text), delta_size):
        if verdict := detector.feed(text[k : k + delta_size]):
            return verdict
    return detector.finish()


def check_loop(page: PageResult) -> list[Flag]:
    """`loop` flag of a finished page: the `LoopDetector` over its raw text."""
    verdict = find_loop(page.raw)
    return [verdict.flag()] if verdict else []


# Truncated -----------------------------------------------------------------------------------


def check_truncated(page: PageResult) -> list[Flag]:
    """`truncated` when the server stopped at max_tokens."""
    if page.finish_reason == "length":
        return [Flag(FlagKind.TRUNCATED, "the output stopped at the token limit (max_tokens)")]
    return []


# Ink -----------------------------------------------------------------------------------------

# Ink is measured on the page scaled to INK_WIDTH pixels wide (strokes of the lecture pages, 5 to
# 8 pixels at 2183 and 3520 wide, stay a pixel or more): a pixel is ink when it is darker than its
# paper by more than INK_CONTRAST grey levels. The paper is the brightest INK_PAPER_CELL-pixel
# average around it (local, so that photographed pages with shadows, grey paper and squared
# paper, whose grid lines are ~25 levels under the paper, do not read as ink). Measured: the six
# lecture pages have 3.8 % to 6.9 % ink, a blank page 0 %.
INK_WIDTH = 1000
INK_PAPER_CELL = 16
INK_CONTRAST = 60
# `empty` needs this share of ink on the page: a tenth of the least inked lecture page (3.8 %).
EMPTY_INK_SHARE = 0.004


def ink_mask(image: Image.Image, width: int = INK_WIDTH) -> Image.Image:
    """A mode "L" mask (255 = ink) of `image` scaled to `width` pixels wide."""
    grey = image.convert("L")
    small = grey.resize(
        (width, max(1, round(grey.height * width / grey.width))), Image.Resampling.BOX
    )
    cell = INK_PAPER_CELL
    coarse = small.resize(
        (max(1, small.width // cell), max(1, small.height // cell)), Image.Resampling.BOX
    )
    paper = coarse.filter(ImageFilter.MaxFilter(3)).resize(small.size, Image.Resampling.BILINEAR)
    contrast = ImageChops.subtract(paper, small)
    return contrast.point(_INK)


_INK = [255 if v > INK_CONTRAST else 0 for v in range(256)]  # `ink_mask`'s contrast to ink


def ink_share(image: Image.Image) -> float:
    """Share (0..1) of the page's pixels that are ink (see `ink_mask`)."""
    mask = ink_mask(image)
    return mask.histogram()[255] / (mask.width * mask.height)


# Tags, HTML markup and table rules: what is left of a page that says nothing.
_MARKUP = re.compile(r"<[^<>]{0,200}>|[|\-:#*_`$\\{}\[\]()]")


def check_empty(page: PageResult, image: Image.Image) -> list[Flag]:
    """`empty` when the output has no word or number while the page has ink."""
    text = _MARKUP.sub("", strip_tags(page.raw))
    if any(ch.isalnum() for ch in text):
        return []
    share = ink_share(image)
    if share < EMPTY_INK_SHARE:
        return []
    return [Flag(FlagKind.EMPTY, f"no text was read from a page with {share:.1%} ink")]


# Uncovered -----------------------------------------------------------------------------------

# The ink mask is cut in cells of UNCOVERED_CELL mask pixels (a cell is inked when
# UNCOVERED_CELL_INK of it is ink); the cells under a box, grown by UNCOVERED_MARGIN cells (the
# model's boxes are tight), are cleared. A closing (dilate, then erode, 3 x 3 cells) makes the
# strokes of a word one solid patch; an opening (erode, then dilate) then removes what is
# thinner than 3 cells: frame lines, table rules and underlines, which would otherwise join the
# text of several blocks into one region. What is left is dilated by UNCOVERED_JOIN cells
# (words to one region) and split in 8-connected components; a component holding
# UNCOVERED_MIN_CELLS inked cells or more is a region that no box covers.
UNCOVERED_CELL = 4
UNCOVERED_CELL_INK = 0.1
UNCOVERED_MARGIN = 1
UNCOVERED_JOIN = 2
# Measured (benchmarks/bench_triage.py) on the five lecture pages whose output is clean: the
# largest region no box covers has 107 cells (the handwritten page label "Ana 3" of
# lecture-024, which the model skipped), the next 15 ("qed" on lecture-006). A title or a table
# removed from an output leaves 277 to 1754 cells; a one-line formula can leave under 100 (the
# benchmark prints the share of removed blocks found).
UNCOVERED_MIN_CELLS = 150


# Dilation and erosion of a 0/255 mask by a size x size square. A box blur is non-zero where any
# pixel of the square is ink and 255 only where all are: the same pixels as Pillow's MaxFilter and
# MinFilter (both replicate the border), 5 to 20 times faster than their sorting rank filter.
def _dilate(mask: Image.Image, size: int) -> Image.Image:
    return mask.filter(ImageFilter.BoxBlur(size // 2)).point(_ANY_INK)


def _erode(mask: Image.Image, size: int) -> Image.Image:
    return mask.filter(ImageFilter.BoxBlur(size // 2)).point(_ALL_INK)


# `Image.point` tables (a function there is called 256 times per call to build one).
_ANY_INK = [0] + [255] * 255
_ALL_INK = [0] * 255 + [255]
_CELL_INKED = [255 if v >= round(255 * UNCOVERED_CELL_INK) else 0 for v in range(256)]


_RUN = re.compile(rb"[^\x00]+")

# (row, first column, end column exclusive) of a run of non-zero cells in one row.
_Run = tuple[int, int, int]


def _components(grid: bytes, cols: int, rows: int) -> list[tuple[int, int, int, int, list[_Run]]]:
    """8-connected components of the non-zero cells: (c1, r1, c2, r2, runs) each.

    Labelled by runs (the rows' stretches of non-zero cells, found by `re` in C) joined in a
    union-find where runs of neighbouring rows touch or meet at a corner: a page's ink is a few
    thousand runs where it is tens of thousands of cells, so this is ~20x faster than a flood
    fill cell by cell in Python (numpy or scipy.ndimage would be faster still, but the engine
    does not carry them for this one step).
    """
    runs: list[_Run] = []
    parent: list[int] = []

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    above: list[int] = []  # indices in `runs` of the previous row's runs
    for r in range(rows):
        here: list[int] = []
        k = 0
        for m in _RUN.finditer(grid, r * cols, (r + 1) * cols):
            s, e = m.start() - r * cols, m.end() - r * cols
            i = len(runs)
            runs.append((r, s, e))
            parent.append(i)
            here.append(i)
            # the previous row's runs from the first that ends at or after s - 1
            while k < len(above) and runs[above[k]][2] < s:
                k += 1
            j = k
            while j < len(above) and runs[above[j]][1] <= e:
                a, b = root(i), root(above[j])
                if a != b:
                    parent[max(a, b)] = min(a, b)
                j += 1
            if j > k:
                k = j - 1  # the last run touched may touch the next run of this row too
        above = here
    groups: dict[int, list[_Run]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(root(i), []).append(run)
    found = []
    for members in groups.values():
        r1, r2 = members[0][0], members[-1][0]
        c1 = min(run[1] for run in members)
        c2 = max(run[2] for run in members) - 1
        found.append((c1, r1, c2, r2, members))
    return found


def uncovered_regions(
    image: Image.Image, boxes: Iterable[Box], min_cells: int = UNCOVERED_MIN_CELLS
) -> list[tuple[Box, int]]:
    """Regions of ink that no box covers: (box in `image` pixels, inked cells), largest first.

    `boxes` are in the pixels of `image` (as `Block.boxes` are for the image that was sent).
    """
    mask = ink_mask(image)
    cell = UNCOVERED_CELL
    cols, rows = max(1, mask.width // cell), max(1, mask.height // cell)
    cells = mask.resize((cols, rows), Image.Resampling.BOX).point(_CELL_INKED)
    sx, sy = cols / image.width, rows / image.height
    draw = ImageDraw.Draw(cells)
    m = UNCOVERED_MARGIN
    for x1, y1, x2, y2 in boxes:
        draw.rectangle(
            (int(x1 * sx) - m, int(y1 * sy) - m, int(x2 * sx) + m, int(y2 * sy) + m), fill=0
        )
    closed = _erode(_dilate(cells, 3), 3)
    opened = _dilate(_erode(closed, 3), 3)
    inked = opened.tobytes()
    grown = _dilate(opened, 2 * UNCOVERED_JOIN + 1).tobytes()
    regions: list[tuple[Box, int]] = []
    for c1, r1, c2, r2, members in _components(grown, cols, rows):
        count = sum(inked.count(255, r * cols + s, r * cols + e) for r, s, e in members)
        if count >= min_cells:
            box = (
                c1 / sx,
                r1 / sy,
                min(image.width, (c2 + 1) / sx),
                min(image.height, (r2 + 1) / sy),
            )
            regions.append((box, count))
    regions.sort(key=lambda region: -region[1])
    return regions


def check_uncovered(page: PageResult, image: Image.Image) -> list[Flag]:
    """`uncovered` for each sizeable region of ink outside every box of a grounded page.

    A page without a single box (the model gave none) has nothing to compare with and gets no
    such flag. `image` is the image that was sent; it is scaled to page.width if it differs.
    """
    boxes = [box for block in page.blocks for box in block.boxes]
    if not boxes:
        return []
    if page.width and page.height and image.size != (page.width, page.height):
        image = image.resize((page.width, page.height), Image.Resampling.BOX)
    return [
        Flag(FlagKind.UNCOVERED, f"a region of ink that no block covers ({cells} cells)", box)
        for box, cells in uncovered_regions(image, boxes)
    ]


# Garbage -------------------------------------------------------------------------------------

# A page is garbage when at least GARBAGE_MIN_BAD replacement or control characters make up
# GARBAGE_SHARE of its visible characters (clean outputs of the corpus have none).
GARBAGE_SHARE = 0.02
GARBAGE_MIN_BAD = 3
# A script other than Latin and Greek (formulas use Greek letters in any language) with at least
# FOREIGN_MIN_LETTERS letters but under FOREIGN_SHARE of the page's letters is foreign to it.
FOREIGN_MIN_LETTERS = 5
FOREIGN_SHARE = 0.05
_ANY_SCRIPT = frozenset({"LATIN", "GREEK"})
_DET_BOX = re.compile(re.escape(DET_OPEN) + r"\s*(\[\[.*?\]\]|[^<]{0,40})")
_NUM = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name ("CJK UNIFIED IDEOGRAPH-4E00" -> "CJK")."""
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "CJK"
    return name.split(" ", 1)[0]


def scripts(text: str) -> Counter[str]:
    """Letters of `text` by script."""
    return _letter_scripts(Counter(text))


def _letter_scripts(chars: Counter[str]) -> Counter[str]:
    """Letters by script, from characters counted (each distinct character looked up once;
    the scripts in the order of their first letter, as counting the text would give them)."""
    found: Counter[str] = Counter()
    for ch, n in chars.items():
        if ch.isalpha():
            found[_script(ch)] += n
    return found


def malformed_boxes(raw: str, width: int, height: int) -> list[tuple[str, Box | None]]:
    """Boxes as the model wrote them that break the format: (what, pixel box where one exists).

    The parser repairs these (clamps to 0..999, orders corners, drops a `<|det|>` without
    coordinates), so only the raw text still shows them.
    """
    found: list[tuple[str, Box | None]] = []
    for m in _DET_BOX.finditer(raw):
        body = m.group(1)
        if not body.startswith("[["):
            found.append((f"a {DET_OPEN} without coordinates ({body[:20]!r})", None))
            continue
        for part in body[2:-2].split("], ["):
            values = [float(v) for v in _NUM.findall(part)]
            if len(values) < 4:
                found.append((f"a box with {len(values)} numbers ({part[:30]!r})", None))
                continue
            x1, y1, x2, y2 = values[:4]
            problems = []
            if max(values[:4]) > 999 or min(values[:4]) < 0:
                problems.append("a value outside 0..999")
            if x1 >= x2:
                problems.append("x1 >= x2")
            if y1 >= y2:
                problems.append("y1 >= y2")
            if problems:
                what = f"box {[round(v) for v in values[:4]]}: {', '.join(problems)}"
                found.append((what, pixel_box(values, width, height)))
    return found


def check_garbage(page: PageResult, others: Mapping[str, int] | None = None) -> list[Flag]:
    """`garbage` flags: replacement/control characters, a foreign script, malformed boxes.

    `others`: letters by script in the rest of the document (`scripts()` of the other pages); a
    script they use is not foreign to this page.
    """
    flags: list[Flag] = []
    chars = Counter(strip_tags(page.raw))  # each distinct character is looked at once
    visible = bad = 0
    for ch, n in chars.items():
        if ch.isspace():
            continue
        visible += n
        if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cs", "Co"):
            bad += n
    if visible and bad >= GARBAGE_MIN_BAD and bad >= GARBAGE_SHARE * visible:
        flags.append(
            Flag(
                FlagKind.GARBAGE,
                f"{bad} replacement or control characters ({bad / visible:.0%})",
            )
        )
    letters = _letter_scripts(chars)
    total = sum(letters.values())
    main = max(letters, key=letters.__getitem__).lower() if letters else ""
    for script, n in letters.items():
        if script in _ANY_SCRIPT or (others and others.get(script)):
            continue
        if n >= FOREIGN_MIN_LETTERS and n < FOREIGN_SHARE * total:
            what = f"{n} letters of {script.lower()} script in a {main} page"
            flags.append(Flag(FlagKind.GARBAGE, what))
    for what, box in malformed_boxes(page.raw, page.width, page.height):
        flags.append(Flag(FlagKind.GARBAGE, f"malformed box: {what}", box))
    return flags


# Confidence ----------------------------------------------------------------------------------

# A block whose mean token probability is under this is low confidence. (No recorded logprobs
# exist in the corpus yet; 0.5 means the model's average pick was a coin toss.)
LOW_CONFIDENCE = 0.5
# A token holding (a piece of) a tag or the end-of-sentence token is no text of a block.
_TAG_PIECE = re.compile(r"<\||\|>|" + re.escape(EOS_TOKEN))


def block_confidences(
    tokens: Sequence[tuple[str, float]], width: int = 0, height: int = 0, end: int | None = None
) -> list[float | None]:
    """Each block's mean token probability (0..1; None for a block with no text token).

    `tokens`: (text, logprob) in stream order, their texts adding up to the raw output. The list
    is aligned with `parse(raw[:end], width, height).blocks` (`end`: where a stream closed at its
    loop is cut; None: all of it). Tokens of tags and coordinates count for no block; the text
    tokens after a box count for that box's block, those before the first box for the untagged
    lead block.
    """
    parser = StreamParser(width, height)
    sums: dict[int, list[float]] = {}
    current = 0
    fed = 0
    for text, logprob in tokens:
        if end is not None:
            if fed >= end:
                break
            text = text[: end - fed]
            fed += len(text)
        closed = parser.feed_indexed(text)
        if closed:
            current = closed[-1][0]
            continue
        if "|>" in text:
            # A tag ended: a label read may have begun a block whose box never comes (a `<|det|>`
            # without coordinates), which no closed box would tell. The block being read is
            # the last of the snapshot (none yet: the lead's, index 0).
            current = max(len(parser.snapshot().blocks) - 1, 0)
        if len(parser.settled_text) < len(parser.text) or _TAG_PIECE.search(text):
            continue  # a tag, or coordinates still being read
        if text.strip():
            acc = sums.setdefault(current, [0.0, 0.0])
            acc[0] += exp(logprob)
            acc[1] += 1
    blocks = parser.finish().blocks
    return [sums[i][0] / sums[i][1] if i in sums else None for i in range(len(blocks))]


def check_low_confidence(confidences: Sequence[float | None], page: PageResult) -> list[Flag]:
    """`low_confidence` for each block under LOW_CONFIDENCE (its box where it has one)."""
    flags = []
    for index, value in enumerate(confidences):
        if value is not None and value < LOW_CONFIDENCE:
            block = page.blocks[index] if index < len(page.blocks) else None
            label = block.label if block else "block"
            flags.append(
                Flag(
                    FlagKind.LOW_CONFIDENCE,
                    f"{label} {index + 1}: mean token probability {value:.2f}",
                    block.box if block else None,
                )
            )
    return flags


# All of them ---------------------------------------------------------------------------------

# The tasks whose boxes are meant to cover every text of the page.
_WHOLE_PAGE_TASKS = frozenset({Task.MARKDOWN, Task.OCR})


def check_page(
    result: PageResult,
    image: Image.Image | None,
    task: Task,
    *,
    confidences: Sequence[float | None] | None = None,
    others: Mapping[str, int] | None = None,
    loop: LoopVerdict | Literal[False] | None = False,
) -> list[Flag]:
    """Every check that applies to a finished page, its flags in the order of `FlagKind`.

    `image`: the image that was sent (None: the checks that need it are skipped). `uncovered`
    applies to the tasks that ground the whole page (markdown, grounded OCR), not to Locate.
    `confidences`: per block, from `block_confidences` (None: the server gave no logprobs).
    `others`: letters by script of the document's other pages (`scripts()`), for `garbage`.
    `loop`: what the stream's own `LoopDetector` found (None: no loop), so that the raw text is
    not scanned again; False (the default): scan it here.
    """
    if loop is False:
        flags = check_loop(result)
    elif loop is None:
        flags = []
    else:
        flags = [loop.flag()]
    flags += check_truncated(result)
    if image is not None:
        flags += check_empty(result, image)
        if task in _WHOLE_PAGE_TASKS:
            flags += check_uncovered(result, image)
    flags += check_garbage(result, others)
    if confidences is not None:
        flags += check_low_confidence(confidences, result)
    return flags
