"""Writing results to disk as they arrive, and reading them back (to resume, or to show).

Layout of one document's export, `OUT/<stem>/`:

    <stem>.md          clean markdown, each page after a `<!-- page N -->` line (`page_marker`)
    <stem>.raw.mmd     raw model output, pages split by `<--- Page Split --->` (`PAGE_SPLIT`, as the
                       official pipeline writes it)
    <stem>.json        {"source", "source_id", "model", "task", "pages": [...]} (PageResult.to_json)
    <stem>.layout.pdf  every page image with its boxes and labels drawn
    <stem>.searchable.pdf, .docx, .html, .epub, .hocr, .alto.xml: see engine/formats.py, the
                       registry of the formats (which are written by default, and by what)
    images/            figure crops, `p0001_0.png` ... (linked from the markdown)
    pages/             the journal: one `NNNN.json` per finished page (plus its layout image,
                       and its page image where the searchable PDF needs it), written atomically
                       the moment the page finishes; each entry names the model, the task and
                       the source document (`SourceId`) it was made from; beside an entry, the
                       page's corrections made in the window, `NNNN.edits.json` (engine/edits.py)

The journal is the durable record: a page is kept once its entry is on disk, and resume reuses
only entries of the same document, model and task (and every page a person edited). The
combined files (the chosen formats) are built once, at `finish`, each by streaming the journal
page by page, so neither the time of a page's write nor the memory of the run grows with the
document's length; `from_journal` rebuilds them later (`ocrdesk export`).

A page a person corrected is read with its edits wherever it is read (`PageIndex`): every format
has the corrected blocks, the JSON marks the page `"edited": true` and keeps the model's raw
output; its layout image and figure crops are drawn again (engine/relayout.py), and resume never
asks the model for it again.

Model text that looks like one of the export's own markers is escaped (`escape_markers`), so a
page cannot forge a page boundary; `split_markdown` and `split_raw` read the files back.

The .md is written for markdown viewers (`page_markdown`): title and sub_title blocks that the
model wrote without `#` get a heading marker (`HEADING_MARKERS`), and formulas are written in the
chosen `MathStyle`; the .raw.mmd and the JSON keep the model's text as it came.
Every file is created with the permissions of any new file (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from . import mupdf
from .pipeline import image_prefix
from .results import Block, Box, PageResult, PageStatus
from .searchable_pdf import IMAGE_POINTS_PER_PIXEL

if TYPE_CHECKING:
    from .sanitize import Formula

PAGE_SPLIT = "\n<--- Page Split --->\n"

#: Pages of the layout PDF built in memory at a time (see `DocumentExport.write_layout_pdf`).
LAYOUT_CHUNK_PAGES = 100

#: Boxes drawn per page in the layout image. A real page has tens of blocks, a dense table page a
#: few hundred; a runaway answer had 280,000, and drawing each (outline, translucent fill, label)
#: took an estimated 44 minutes. Past this many the rest are not drawn (the JSON keeps them all).
MAX_DRAWN_BOXES = 2_000

#: Figure crops cut per page, for the same reason: every `image` block is one PNG file to encode
#: (a real page has a handful; past this many the markdown's further links have no file).
MAX_FIGURE_CROPS = 100

#: Files up to this size are hashed whole; larger ones by `_SAMPLES` samples (see `source_id`).
FULL_HASH_BYTES = 256 * 1024 * 1024
_SAMPLES = 64
_SAMPLE_BYTES = 64 * 1024

#: The longest folder name made from a file name, in UTF-8 bytes: NAME_MAX is 255 and the files
#: inside add `.layout.pdf` and atomic_write's temporary `.<name>.XXXXXXXX.tmp`.
MAX_STEM_BYTES = 180

# One colour per label, the same in the layout PDF and (through engine's exports) in the GUI.
LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "title": (220, 50, 47),
    "sub_title": (203, 75, 22),
    "text": (38, 139, 210),
    "table": (133, 153, 0),
    "table_caption": (42, 161, 152),
    "table_footnote": (42, 161, 152),
    "image": (211, 54, 130),
    "image_caption": (108, 113, 196),
    "equation": (181, 137, 0),
    "formula": (181, 137, 0),
}
DEFAULT_COLOR = (101, 123, 131)


def label_color(label: str) -> tuple[int, int, int]:
    return LABEL_COLORS.get(label, DEFAULT_COLOR)


# -- text that can be written -------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD.

    A JSON string may escape half a surrogate pair (`"\\ud800"`); Python decodes it into a str
    that no file can hold. A str never holds a valid pair (the decoder joins those)."""
    return _SURROGATE.sub("\ufffd", text)


def printable(text: str) -> str:
    """Text to show or write, e.g. a path: a file name's undecodable bytes (kept by Python as
    surrogate escapes) and any other lone surrogate become U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return valid_text(text)


# -- markers ------------------------------------------------------------------------------------

_PAGE_MARKER = re.compile(r"^<!-- page (\d+) -->$", re.MULTILINE)
# The marker shapes as model text could spell them, with any backslashes already escaping them.
_MARKER_LIKE = re.compile(r"<(\\*)(!--\s*page\b|---\s*Page Split\s*--->)", re.IGNORECASE)
_ESCAPED_MARKER = re.compile(r"<\\(\\*)(!--\s*page\b|---\s*Page Split\s*--->)", re.IGNORECASE)


def page_marker(number: int) -> str:
    """The line that opens page `number` in the .md."""
    return f"<!-- page {number} -->"


def escape_markers(text: str) -> str:
    """Model text with anything shaped like a page marker or page split made inert.

    One backslash goes after the `<` (markdown shows `<\\!--` as `<!--`); text that already had
    backslashes there gets one more, so `unescape_markers` gives back exactly the model's text."""
    return _MARKER_LIKE.sub(r"<\\\1\2", text)


def unescape_markers(text: str) -> str:
    return _ESCAPED_MARKER.sub(r"<\1\2", text)


def split_raw(text: str) -> list[str]:
    """The pages' raw outputs of a .raw.mmd, as the model wrote them."""
    parts = text.split(PAGE_SPLIT)
    if parts and parts[-1] == "":
        parts.pop()
    return [unescape_markers(p) for p in parts]


def split_markdown(text: str) -> list[tuple[int, str]]:
    """(page number, section) of each page of a .md, the section as `page_markdown` wrote it
    after the marker line (markers inside it unescaped)."""
    marks = list(_PAGE_MARKER.finditer(text))
    pages = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end].strip("\n")
        pages.append((int(mark.group(1)), unescape_markers(body)))
    return pages


class MathStyle(str, enum.Enum):
    """How the .md writes formulas. DOLLARS (`$x$`, `$$x$$`) is what GitHub, GitLab, Obsidian
    and VS Code's preview render, so it is the default; LATEX keeps the model's `\\( \\)` and
    `\\[ \\]` (MathJax's and KaTeX auto-render's defaults)."""

    DOLLARS = "dollars"
    LATEX = "latex"


#: The heading marker a block of each label gets in the .md when the model wrote none.
HEADING_MARKERS = {"title": "#", "sub_title": "##"}


def mark_headings(markdown: str, blocks: Sequence[Block]) -> str:
    """`markdown` with a heading marker (`HEADING_MARKERS`) before the text of each title and
    sub_title block that does not start with `#` already; such a heading is put on one line.

    The blocks are looked up in order, each after the one before, so a title is not found inside
    an earlier block's text. A block whose text the markdown does not hold as it is (rewritten,
    e.g. `\\coloneqq`) is left alone: nothing is ever lost, at worst a marker is missing."""
    pieces: list[str] = []
    cut = pos = 0
    for block in blocks:
        text = block.text
        if not text:
            continue
        found = markdown.find(text, pos)
        if found < 0:
            continue
        pos = found + len(text)
        marker = HEADING_MARKERS.get(block.label)
        if marker is None or text.startswith("#") or (found and markdown[found - 1] != "\n"):
            continue
        pieces += [markdown[cut:found], f"{marker} ", " ".join(text.split())]
        cut = pos
    pieces.append(markdown[cut:])
    return "".join(pieces)


# What the dollar style leaves as it is: HTML tables (markdown viewers render no math inside
# HTML, and a `\\$` there would show its backslash; page-level renderers that do reach into
# HTML, MathJax and KaTeX auto-render, take `\\( \\)` but not `$` by default) and code
# (fenced blocks and inline spans, where `$` is a literal). After `sanitize_html` a table's tags
# are exactly `<table>` and `</table>` (rebuilt, no attributes allowed).
_VERBATIM_START = re.compile(r"<table>|^[ ]{0,3}(?P<fence>`{3,}|~{3,})|(?P<ticks>`+)", re.MULTILINE)
_TABLE_TAG = re.compile(r"<(/?)table>")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# A tag as `sanitize_html` rebuilds it (no `<` or `>` inside): its `$` belong to its attributes.
_REBUILT_TAG = re.compile(r"</?[a-z][^<>]*>")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _verbatim_end(text: str, start: re.Match[str]) -> int:
    """Where the verbatim region opened by `start` ends; -1: `start` opens none."""
    if fence := start.group("fence"):
        line_end = text.find("\n", start.end())
        if line_end < 0:
            return len(text)
        close = re.compile(rf"^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        found = close.search(text, line_end + 1)
        return found.end() if found else len(text)
    if ticks := start.group("ticks"):
        found = re.compile(rf"(?<!`){ticks}(?!`)").search(text, start.end())
        if found is None or _BLANK_LINE.search(text, start.end(), found.start()):
            return -1
        return found.end()
    depth = 0
    for tag in _TABLE_TAG.finditer(text, start.start()):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return tag.end()
    return len(text)  # a table never closed: an HTML reader reads the rest into it


def _dollar_formula(formula: Formula, before: str, after: str) -> str:
    """`formula` in dollars, or as it was where dollars would read otherwise: a `$` in its TeX,
    nothing in it, a `\\` at its end (it would escape the closing `$`), or a neighbour that
    would join a `$` (`\\`, `$`, a digit after an inline one)."""
    source, tex = formula.source, formula.tex
    if not source.startswith("\\") or not tex or "$" in tex or tex.endswith("\\"):
        return source
    if before.endswith(("\\", "$")) or after.startswith(("$", "\\(", "\\[")):
        return source
    if formula.display:
        return f"$${source[2:-2]}$$"
    if after[:1].isdigit():
        return source
    return "$" + tex.replace("\n", " ") + "$"  # an inline `$` formula holds no line break


def _dollar_text(text: str) -> str:
    from .sanitize import Formula, split_math

    out: list[str] = []
    parts = split_math(text)
    for i, part in enumerate(parts):
        if isinstance(part, Formula):
            following = parts[i + 1] if i + 1 < len(parts) else ""
            after = following.source if isinstance(following, Formula) else following
            out.append(_dollar_formula(part, out[-1] if out else "", after))
            continue
        pos = 0
        for tag in _REBUILT_TAG.finditer(part):
            out.append(_UNESCAPED_DOLLAR.sub(r"\\$", part[pos : tag.start()]) + tag.group(0))
            pos = tag.end()
        if pos < len(part):
            out.append(_UNESCAPED_DOLLAR.sub(r"\\$", part[pos:]))
    return "".join(out)


def dollar_math(markdown: str) -> str:
    """Markdown as `sanitize_html` leaves it with its formulas (`split_math`) in dollars:
    `\\(x\\)` -> `$x$`, `\\[x\\]` -> `$$x$$`, and each `$` of the text that is no formula
    written `\\$`. HTML tables and code are left as they are (see `_VERBATIM_START`)."""
    out: list[str] = []
    pos = 0
    start = _VERBATIM_START.search(markdown)
    while start is not None:
        end = _verbatim_end(markdown, start)
        if end < 0:  # backticks that open no code span are text
            start = _VERBATIM_START.search(markdown, start.end())
            continue
        out += [_dollar_text(markdown[pos : start.start()]), markdown[start.start() : end]]
        pos = end
        start = _VERBATIM_START.search(markdown, pos)
    out.append(_dollar_text(markdown[pos:]))
    return "".join(out)


def page_markdown(result: PageResult, math: MathStyle = MathStyle.DOLLARS) -> str:
    """A page's section of the document markdown, with the page marker and any problem flagged.

    The model's HTML is cleaned with `sanitize_html` (the raw files keep it as it came), titles
    get heading markers (`mark_headings`) and formulas are written in `math`'s style."""
    from .sanitize import sanitize_html

    marker = page_marker(result.number)
    if result.status is PageStatus.FAILED:
        return f"{marker}\n\n<!-- failed: {_comment(result.error or '')} -->"
    if result.status is PageStatus.TRUNCATED:
        marker += "\n<!-- truncated: the model hit max_tokens; the page may be incomplete -->"
    body = sanitize_html(valid_text(mark_headings(result.markdown, result.blocks)))
    if math is MathStyle.DOLLARS:
        body = dollar_math(body)
    return f"{marker}\n\n{escape_markers(body)}".rstrip()


def _comment(text: str) -> str:
    return valid_text(text).replace("--", "- -").replace("\n", " ")


# -- files --------------------------------------------------------------------------------------


_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)  # Windows: no newline translation
)


def create_temp(path: Path) -> tuple[int, str]:
    """A new file beside `path` for its next content, open for writing: (descriptor, path).

    Created with mode 0666, which the OS narrows by the umask as for any new file (0644 under
    umask 022, 0600 under 077); tempfile.mkstemp would make every export 0600 whatever the
    umask. O_EXCL and a random name keep mkstemp's safety. Every export file is first made here
    (the atomic writers; pandoc and the searchable PDF write into one), so that all follow it."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name[:40]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A UTF-8 text file that a reader (or a crash) sees whole or not at all: its content
    replaces `path` only when the `with` block ends without an error. Lone surrogates written
    to it become U+FFFD."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_binary_writer(path: Path) -> Iterator[IO[bytes]]:
    """`atomic_writer` for bytes. An image saved straight into it (`Image.save(handle)`) is
    encoded by Pillow's C loop into the file with the GIL released; saved into a BytesIO it is
    encoded block by block holding the GIL, which stalled the event loop 2.3 ms a page for the
    layout JPEG (py-spy --gil, issue 16's ceiling)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file so that a reader (or a crash) sees the old content or the new, never half."""
    raw = valid_text(data).encode("utf-8") if isinstance(data, str) else data
    with atomic_binary_writer(path) as handle:
        handle.write(raw)


# -- names --------------------------------------------------------------------------------------

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\ud800-\udfff]')


def safe_name(stem: str) -> str:
    """A folder name made from a file's stem that names one folder inside its parent, whatever
    the stem holds: no `/`, no control characters, no leading or trailing dots or spaces (`..`,
    `.`), valid UTF-8 (a file name's undecodable bytes become U+FFFD), at most MAX_STEM_BYTES."""
    text = _UNSAFE_CHARS.sub("_", printable(stem)).strip(" .")
    text = text.encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", "ignore").rstrip(" .")
    return text or "document"


@dataclass(frozen=True)
class SourceId:
    """Which document an export was made from: its path, size, a content hash and page count."""

    path: str
    size: int
    sha256: str
    page_count: int | None = None

    def same_document(self, other: SourceId) -> bool:
        """The same bytes (wherever the file is now)."""
        return self.size == other.size and self.sha256 == other.sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "path": printable(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "page_count": self.page_count,
        }

    @classmethod
    def from_json(cls, data: Any) -> SourceId | None:
        if not isinstance(data, dict):
            return None
        try:
            count = data.get("page_count")
            return cls(
                str(data["path"]),
                int(data["size"]),
                str(data["sha256"]),
                int(count) if count is not None else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def source_id(source: str | os.PathLike[str] | bytes, name: str | None = None) -> SourceId:
    """The `SourceId` of a file (or of pasted bytes, named `name`); raises OSError.

    Files up to FULL_HASH_BYTES are hashed whole, in 1 MiB chunks. A larger one (a 2 GB scan) is
    hashed from its size, its first and last MiB and _SAMPLES slices at fixed offsets: reading
    all of it would cost seconds before every run's first page, and a replaced file of the same
    size almost surely differs in a sample; an in-place edit that keeps the size and misses every
    sample is the price."""
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(source)
        return SourceId(name or "pasted image", len(source), digest.hexdigest())
    path = os.fspath(source)
    size = os.stat(path).st_size
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        else:
            digest.update(f"sampled {size}".encode())
            offsets = [0, size - (1 << 20)]
            offsets += [size * k // (_SAMPLES + 1) for k in range(1, _SAMPLES + 1)]
            for offset in offsets:
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES if offset else 1 << 20))
    return SourceId(os.fsdecode(path), size, digest.hexdigest())


def _journal_entries(pages_dir: Path) -> list[Path]:
    """The journal's `NNNN.json` entries (not the `NNNN.edits.json` of engine/edits.py)."""
    if not pages_dir.is_dir():
        return []
    return sorted(p for p in pages_dir.glob("[0-9]*.json") if p.stem.isdigit())


class _Unknown:
    """The owner of a journal written before entries named their source."""


_UNKNOWN = _Unknown()


def folder_source(folder: Path) -> SourceId | _Unknown | None:
    """The document an export folder's journal was made from; None when it has no journal."""
    for path in _journal_entries(folder / "pages"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found = SourceId.from_json(data.get("source")) if isinstance(data, dict) else None
        return found if found is not None else _UNKNOWN
    return None


def export_folder(
    out_root: Path, stem: str, taken: set[str], source: SourceId | None = None
) -> Path:
    """OUT/<safe stem>/, with `-2`, `-3`... when two inputs of one run share a stem or, given
    `source`, when the folder's journal was made from another document (another path and other
    bytes): two documents never share a folder, in one run or across runs."""
    name = safe_name(stem)
    candidate, n = name, 1
    while True:
        if candidate not in taken:
            if source is None:
                break
            owner = folder_source(out_root / candidate)
            if owner is None or (
                isinstance(owner, SourceId)
                and (owner.path == source.path or owner.same_document(source))
            ):
                break
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return out_root / candidate


# -- drawing ------------------------------------------------------------------------------------


def draw_layout(image: Image.Image, result: PageResult) -> Image.Image:
    """The page image with each block's boxes outlined, tinted and labelled in its label's
    colour (the first MAX_DRAWN_BOXES boxes).

    The tints are drawn into one colour image and one mask over the boxes' extent and blended
    once: blending every box on its own cost a full-page box's area each time (9 s for 2,000
    full-page boxes), and a full-page blend per colour cost 3x one blend (issue 16's ceiling)."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(min(canvas.size) / 500))
    boxes: list[tuple[str, tuple[int, int, int], Box]] = []
    for block in result.blocks:
        color = label_color(block.label)
        for box in block.boxes:
            if len(boxes) >= MAX_DRAWN_BOXES:
                break
            boxes.append((block.label, color, box))
    if boxes:
        left = max(0, int(min(box[0] for _, _, box in boxes)))
        top = max(0, int(min(box[1] for _, _, box in boxes)))
        right = min(canvas.width, int(max(box[2] for _, _, box in boxes)) + 1)
        bottom = min(canvas.height, int(max(box[3] for _, _, box in boxes)) + 1)
        if right > left and bottom > top:
            tint = Image.new("RGB", (right - left, bottom - top))
            mask = Image.new("L", tint.size, 0)
            tint_draw, mask_draw = ImageDraw.Draw(tint), ImageDraw.Draw(mask)
            for _, color, (x1, y1, x2, y2) in boxes:
                shifted = (x1 - left, y1 - top, x2 - left, y2 - top)
                tint_draw.rectangle(shifted, fill=color)
                mask_draw.rectangle(shifted, fill=28)
            canvas.paste(tint, (left, top), mask)
    for label, color, (x1, y1, x2, y2) in boxes:
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        text_box = draw.textbbox((x1, y1), label)
        label_top = max(0, y1 - (text_box[3] - text_box[1]) - 4)
        draw.rectangle((x1, label_top, x1 + text_box[2] - text_box[0] + 6, y1), fill=color)
        draw.text((x1 + 3, label_top + 1), label, fill=(255, 255, 255))
    return canvas


def figure_boxes(blocks: Iterable[Block]) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(block index, crop box in image pixels) of each figure (`image` block with a box), in
    order: the k-th is the markdown's `images/{prefix}{k}.png`. At most MAX_FIGURE_CROPS."""
    found: list[tuple[int, tuple[int, int, int, int]]] = []
    for index, block in enumerate(blocks):
        if block.label != "image" or not block.boxes:
            continue
        x1, y1, x2, y2 = block.boxes[0]
        found.append(
            (index, (int(x1), int(y1), max(int(x1) + 1, round(x2)), max(int(y1) + 1, round(y2))))
        )
        if len(found) >= MAX_FIGURE_CROPS:
            break
    return found


def crop_figures(image: Image.Image, result: PageResult, images_dir: Path) -> list[Path]:
    """Cut each `image` block out of the page into images/, named as the markdown links them."""
    written = []
    for k, (_, box) in enumerate(figure_boxes(result.blocks)):
        path = images_dir / f"{image_prefix(result.number)}{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.crop(box).save(path, format="PNG")
        written.append(path)
    return written


# -- one document's export ----------------------------------------------------------------------


class PageIndex(MutableMapping[int, PageResult]):
    """The pages of an export: those given by the caller (resumed ones) are held in memory,
    those written by `add_page` only as their page number, and read back from the journal
    when asked for. A page is given as it stands: with a person's edits (engine/edits.py) when
    it has any, read at each access (the window saves them while a run goes on)."""

    def __init__(self, journal: Path) -> None:
        from .edits import EditStore

        self._journal = journal
        self.edits = EditStore(journal.parent)
        self._held: dict[int, PageResult] = {}
        self._on_disk: dict[int, tuple[int, int]] = {}  # number -> (width, height)

    def record(self, result: PageResult) -> None:
        self._held.pop(result.number, None)
        self._on_disk[result.number] = (result.width, result.height)

    def size_of(self, number: int) -> tuple[int, int]:
        if number in self._held:
            return self._held[number].width, self._held[number].height
        return self._on_disk[number]

    def __getitem__(self, number: int) -> PageResult:
        return self.edits.apply(self.unedited(number))

    def unedited(self, number: int) -> PageResult:
        """Page `number` as the model's answer made it (the journal's entry)."""
        if number in self._held:
            return self._held[number]
        if number not in self._on_disk:
            raise KeyError(number)
        data = json.loads((self._journal / f"{number:04d}.json").read_text(encoding="utf-8"))
        return PageResult.from_json(data["page"])

    def __setitem__(self, number: int, result: PageResult) -> None:
        self._on_disk.pop(number, None)
        self._held[number] = result

    def __delitem__(self, number: int) -> None:
        if self._held.pop(number, None) is None:
            del self._on_disk[number]

    def __iter__(self) -> Iterator[int]:
        return iter(sorted({*self._held, *self._on_disk}))

    def __len__(self) -> int:
        return len({*self._held, *self._on_disk})


@dataclass
class ResumeReport:
    """What `DocumentExport.load_finished` reused, and what it skipped and why."""

    reused: dict[int, PageResult]
    skipped: dict[str, int]  # reason -> pages

    def lines(self, folder: Path) -> list[str]:
        return [f"{folder}: {n} page(s) not reused: {why}" for why, n in self.skipped.items()]


class DocumentExport:
    """One document's export folder, written page by page.

    `add_page` writes a page's crops, layout image and journal entry (it raises OSError when it
    cannot: the page is then not recorded); `finish` builds the combined files from the journal,
    the .md's formulas in the `math` style."""

    def __init__(
        self,
        folder: Path,
        *,
        source: str,
        model: str,
        task: str,
        source_id: SourceId | None = None,
        math: MathStyle = MathStyle.DOLLARS,
        formats: Iterable[str] | None = None,
        origin: str | os.PathLike[str] | bytes | None = None,
        text_layer: str = "skip",
        password: str | None = None,
    ) -> None:
        from .formats import DEFAULT_FORMATS, FORMATS

        self.folder = folder
        self.math = math
        self.formats = tuple(DEFAULT_FORMATS if formats is None else formats)
        unknown = [name for name in self.formats if name not in FORMATS]
        if unknown:
            raise ValueError(f"unknown export format(s): {', '.join(unknown)}")
        # The document as the run read it (a path, or pasted bytes); None: as `source_id` or
        # `source` name it (`ocrdesk export`, which rebuilds from the journal).
        self.origin = origin
        self.text_layer = text_layer  # for a page that has text already: searchable_pdf's modes
        self.password = password
        self._keeps_page_images: bool | None = None
        self.stem = folder.name
        self.source = source
        self.source_id = source_id
        self.model = model
        self.task = task
        self.pages_dir = folder / "pages"
        self.images_dir = folder / "images"
        self.results = PageIndex(self.pages_dir)
        self.edits = self.results.edits  # a person's corrections, beside the journal
        self._claimed = False

    @property
    def markdown_path(self) -> Path:
        return self.folder / f"{self.stem}.md"

    @property
    def raw_path(self) -> Path:
        return self.folder / f"{self.stem}.raw.mmd"

    @property
    def json_path(self) -> Path:
        return self.folder / f"{self.stem}.json"

    @property
    def layout_path(self) -> Path:
        return self.folder / f"{self.stem}.layout.pdf"

    def _page_json(self, number: int) -> Path:
        return self.pages_dir / f"{number:04d}.json"

    def page_layout_path(self, number: int) -> Path:
        return self.pages_dir / f"{number:04d}.layout.jpg"

    def page_image_path(self, number: int) -> Path:
        """Where the page image sent to the model is kept, for a searchable PDF whose source
        cannot be its pages as it is (see `formats.keeps_page_images`)."""
        return self.pages_dir / f"{number:04d}.page.png"

    def pages(self) -> Iterator[PageResult]:
        """The pages in page order, read back from the journal one at a time; an entry damaged
        since it was written is left out."""
        for number in self.results:
            try:
                yield self.results[number]
            except (OSError, ValueError, KeyError, TypeError):
                continue

    @classmethod
    def from_journal(cls, folder: Path, **options: Any) -> DocumentExport:
        """The export of `folder` as its journal holds it (every entry, whatever its model and
        task), to rebuild its files; `options` as for the constructor. Raises FileNotFoundError
        when the folder has no journal."""
        saved = _read_journal(folder)
        if saved is None:
            raise FileNotFoundError(
                errno.ENOENT, "no journal (pages/NNNN.json) in this folder", str(folder)
            )
        export = cls(
            folder,
            source=saved.source,
            model=saved.model,
            task=saved.task,
            source_id=saved.source_id,
            **options,
        )
        for result in saved.results:
            export.results.record(result)
        return export

    def set_page_count(self, count: int) -> None:
        if self.source_id is not None:
            self.source_id = replace(self.source_id, page_count=count)

    def load_finished(self) -> dict[int, PageResult]:
        """Pages finished (done or truncated) by an earlier run on the same document with the same
        model and task, and every page of it that a person edited (as edited, whatever its model,
        task or status); those are not requested again. See `resume` for what was skipped."""
        return self.resume().reused

    def resume(self) -> ResumeReport:
        """Like `load_finished`, and says which journal entries were not reused, and why."""
        report = ResumeReport({}, {})

        def skip(why: str) -> None:
            report.skipped[why] = report.skipped.get(why, 0) + 1

        edited = self.edits.edited_pages()
        for path in _journal_entries(self.pages_dir):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                result = PageResult.from_json(data["page"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged journal entry: that page is simply done again
            made_from = SourceId.from_json(data.get("source"))
            if self.source_id is not None:
                if made_from is None:
                    skip("made by an older OCRDesk that did not record the source document")
                    continue
                if not made_from.same_document(self.source_id):
                    skip(
                        f"made from another document ({made_from.path}, {made_from.size} bytes, "
                        f"sha256 {made_from.sha256[:12]}) than {self.source_id.path} "
                        f"({self.source_id.size} bytes, sha256 {self.source_id.sha256[:12]})"
                    )
                    continue
            if result.number in edited:  # a person's edits are never undone by a new answer
                report.reused[result.number] = self.edits.apply(result)
                continue
            if data.get("model") != self.model or data.get("task") != self.task:
                skip(f"made with model {data.get('model')!r}, task {data.get('task')!r}")
                continue
            if result.status in (PageStatus.DONE, PageStatus.TRUNCATED):
                report.reused[result.number] = result
        for result in report.reused.values():
            self.results.record(result)  # on disk already: not held in memory
        return report

    def _claim_journal(self) -> None:
        """Before the first page is written: remove journal entries made from another document
        (an earlier version of the file at this path), which would otherwise be read back as
        this document's pages. Entries of this document made with another model or task stay."""
        from .edits import REVIEWED_FILE

        self._claimed = True
        if self.source_id is None:
            return
        for path in _journal_entries(self.pages_dir):
            try:
                made_from = SourceId.from_json(json.loads(path.read_text("utf-8")).get("source"))
            except (OSError, ValueError, AttributeError):
                continue
            if made_from is not None and not made_from.same_document(self.source_id):
                suffixes = (".layout.jpg", ".page.png", ".edits.json", ".requests.json")
                for stale in (path, *(path.with_suffix(s) for s in suffixes)):
                    with contextlib.suppress(OSError):
                        stale.unlink()
                with contextlib.suppress(OSError):  # the other document's pages marked reviewed
                    (self.pages_dir / REVIEWED_FILE).unlink()

    def add_page(self, result: PageResult, image: Image.Image | None) -> None:
        """Record a finished or failed page: crops, layout image and journal entry. The page is
        recorded only once its journal entry is on disk."""
        if not self._claimed:
            self._claim_journal()
        shown = self.edits.apply(result)  # a page a person edited is drawn as edited
        if image is not None and shown.status is not PageStatus.FAILED:
            from .relayout import draw_page

            if "searchable" in self.formats and self._page_images_needed():
                self.pages_dir.mkdir(parents=True, exist_ok=True)
                tmp = self.page_image_path(result.number).with_suffix(".tmp.png")
                image.save(tmp, format="PNG")
                os.replace(tmp, self.page_image_path(result.number))
            draw_page(self, shown, image)
        entry: dict[str, Any] = {"model": self.model, "task": self.task}
        if self.source_id is not None:
            entry["source"] = self.source_id.to_json()
        entry["page"] = result.to_json()
        atomic_write(self._page_json(result.number), json.dumps(entry, ensure_ascii=False))
        self.results.record(result)

    def document_json(self) -> dict[str, Any]:
        """The combined JSON (all pages in memory: for small documents and tests)."""
        return {
            **self._header(),
            "pages": [self.results[n].to_json() for n in self.results],
        }

    def _header(self) -> dict[str, Any]:
        header: dict[str, Any] = {"source": printable(self.source)}
        if self.source_id is not None:
            header["source_id"] = self.source_id.to_json()
        header.update(model=self.model, task=self.task)
        return header

    def _page_images_needed(self) -> bool:
        if self._keeps_page_images is None:
            from .formats import keeps_page_images

            self._keeps_page_images = keeps_page_images(self)
        return self._keeps_page_images

    def finish(self) -> None:
        """Write the combined files of the chosen formats (`formats.FORMATS`), each streaming the
        journal one page at a time. A format that fails does not stop the others: once all were
        tried, `ExportFailed` names those that failed and why."""
        from .formats import write_formats

        self.folder.mkdir(parents=True, exist_ok=True)
        failures = self.redraw_stale()
        failures += write_formats(self, self.formats)
        if failures:
            raise ExportFailed(failures)

    def redraw_page(self, number: int, image: Image.Image | None = None) -> bool:
        """Draw page `number`'s layout image and figure crops again from the blocks it shows now
        (after an edit, or its undoing), on `image` if given (the page image sent to the model,
        or any image of the page: it is scaled to that size), else on the page image kept in the
        journal or rendered again from the document. False when there was no page image (see
        engine/relayout.py). Then `finish` writes the combined files. Raises OSError."""
        from .relayout import redraw

        return not redraw(self, [number], (lambda _: image) if image is not None else None)

    def redraw_stale(self) -> list[str]:
        """Draw again the layout images and crops of pages whose blocks changed since they were
        drawn (`relayout.stale_pages`); returns a reason for those that could not be."""
        from .relayout import redraw, stale_pages

        try:
            missed = redraw(self, stale_pages(self))
        except OSError as exc:
            from .sink import describe_write_error

            return [describe_write_error(exc, self.pages_dir)]
        if not missed:
            return []
        pages = ", ".join(map(str, missed))
        return [
            f"could not draw the edited boxes of page(s) {pages} in {self.layout_path} and "
            "images/: the source document is not there or has changed (the other files "
            "have the edits)"
        ]

    def write_text(self, path: Path, text: str) -> None:
        """Write one of the export's text files (atomically)."""
        atomic_write(path, text)

    def write_markdown(self, path: Path) -> None:
        with atomic_writer(path) as md:
            for i, result in enumerate(self.pages()):
                md.write(("\n\n" if i else "") + page_markdown(result, self.math))
            md.write("\n")

    def write_raw(self, path: Path) -> None:
        with atomic_writer(path) as raw:
            for result in self.pages():
                raw.write(escape_markers(valid_text(result.raw)) + PAGE_SPLIT)

    def write_json(self, path: Path) -> None:
        head = json.dumps(self._header(), ensure_ascii=False)[:-1]
        with atomic_writer(path) as js:
            js.write(f'{head}, "pages": [')
            for i, result in enumerate(self.pages()):
                js.write(
                    ("," if i else "") + "\n" + json.dumps(result.to_json(), ensure_ascii=False)
                )
            js.write("\n]}\n")

    def write_layout_pdf(self, path: Path) -> None:
        # Built in chunks of LAYOUT_CHUNK_PAGES pages, each appended to the file by an
        # incremental save, because MuPDF holds every inserted image in memory until the document
        # is saved and closed: in one piece, 2,000 pages of ~290 KB layout JPEGs raised the
        # process's peak RSS by ~800 MiB (benchmarks/results/engine-cpu.md). A reopened file's
        # images stay on disk, so the peak is one chunk's images whatever the page count.
        scale = IMAGE_POINTS_PER_PIXEL  # a 144 dpi render comes back at its paper size
        entries = []
        for number in self.results:
            width, height = self.results.size_of(number)
            if width and self.page_layout_path(number).exists():
                entries.append((self.page_layout_path(number), width * scale, height * scale))
        if not entries:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        tmp = path.with_suffix(".tmp.pdf")
        try:
            for start in range(0, len(entries), LAYOUT_CHUNK_PAGES):
                chunk = entries[start : start + LAYOUT_CHUNK_PAGES]
                mupdf.append_image_pages(tmp, chunk, create=not start)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


class ExportFailed(Exception):
    """Formats of a document's export that could not be written; `reasons`: one
    "could not write PATH: why" each. The other formats were written."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


# -- reading an export back ---------------------------------------------------------------------


@dataclass
class SavedExport:
    """One document's export as read back: where, from what, and its pages in page order."""

    folder: Path
    source: str
    model: str
    task: str
    results: list[PageResult]
    source_id: SourceId | None = None
    edited_pages: frozenset[int] = frozenset()  # pages a person edited (engine/edits.py)

    @property
    def edited(self) -> bool:
        return bool(self.edited_pages)


def _read_combined(folder: Path) -> SavedExport | None:
    try:
        data = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
        results = [PageResult.from_json(p) for p in data.get("pages", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return SavedExport(
        folder,
        str(data.get("source", "")),
        str(data.get("model", "")),
        str(data.get("task", "")),
        results,
        SourceId.from_json(data.get("source_id")),
    )


def _read_journal(folder: Path) -> SavedExport | None:
    results: dict[int, PageResult] = {}
    model = task = ""
    made_from: SourceId | None = None
    for path in _journal_entries(folder / "pages"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            result = PageResult.from_json(data["page"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        results[result.number] = result
        model, task = str(data.get("model", "")), str(data.get("task", ""))
        made_from = SourceId.from_json(data.get("source")) or made_from
    if not results:
        return None
    source = made_from.path if made_from is not None else folder.name
    return SavedExport(
        folder, source, model, task, [results[n] for n in sorted(results)], made_from
    )


def read_export(folder: Path) -> SavedExport | None:
    """The export in `folder`: its combined JSON, or its journal where that is newer (a run that
    stopped before `finish`, or an edit made since) or the JSON is missing or damaged; None if
    it holds neither. The pages are as a person's edits left them."""
    from .edits import EditStore

    saved = _read_export(folder)
    if saved is None:
        return None
    store = EditStore(folder)
    edited = store.edited_pages()
    if edited:
        saved.results = [store.apply(r) if r.number in edited else r for r in saved.results]
        saved.edited_pages = frozenset(edited & {r.number for r in saved.results})
    return saved


def _read_export(folder: Path) -> SavedExport | None:
    combined = folder / f"{folder.name}.json"
    pages = folder / "pages"
    entries = _journal_entries(pages)
    if pages.is_dir():
        entries += pages.glob("[0-9]*.edits.json")
    with contextlib.suppress(OSError):
        if entries and max(p.stat().st_mtime for p in entries) > combined.stat().st_mtime:
            return _read_journal(folder) or _read_combined(folder)
    return _read_combined(folder) or _read_journal(folder)


def read_exports(root: Path) -> list[SavedExport]:
    """The documents exported under `root`, oldest first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: p.stat().st_mtime)
    found = []
    for folder in folders:
        saved = read_export(folder)
        if saved is not None and saved.results:
            found.append(saved)
    return found
