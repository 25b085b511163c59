"""A page turned in 90-degree steps before it is OCRed: the turn, its geometry, where it is kept.

    turn = Rotation.NONE.turned(1)                     # Rotation.RIGHT: 90 degrees clockwise
    image = render_turned(document, 3, 144, turn)      # the page as the person turned it
    store = RotationStore(OUT / stem, source)          # pages/rotation.json beside the journal
    store.set(3, turn); store.load() -> {3: Rotation.RIGHT}
    store.read_turns()                                 # the turn each kept result was read at

A scan that lies on its side is read upright by the model only when it is sent upright, so the
turn is applied to the page image itself, before it is sent: the result's width, height and boxes
(0..999 of the image sent, then pixels of it), the layout image and the JSON all describe the
turned page. Turns are clockwise, as PDF's /Rotate is; the searchable PDF writes the turn into its
page's /Rotate (engine/mupdf.py, `PageText.turn`), so that the page shows upright there too and
its text layer lands on the ink.

The turns a person chose are kept in the document's export folder, `pages/rotation.json` (like
engine/edits.py's `reviewed.json`), written atomically the moment they change, with the name of
the document they are for: a file left by another document that had the folder is not read.

A kept result describes the image it was read from. Whatever draws on or over a kept result
again (its layout image and crops, an export to another folder, the searchable PDF's text layer)
renders the page at the turn that result was read at, `RotationStore.read_turns()`: the page's
turn, or for a page turned since it was read (stale) the turn before. A run reads at `load()`
and reads a stale page again (`kept` leaves it out of a resumed run's kept pages).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from PIL import Image

from .results import Box

if TYPE_CHECKING:
    from .documents import Document

__all__ = [
    "FORMAT",
    "ROTATION_FILE",
    "Rotation",
    "RotationStore",
    "render_turned",
    "turn_box",
    "turn_image",
    "turned_fit",
    "turned_size",
]

#: What a rotation file says it is, so that a file of another kind is never read as one.
FORMAT = "ocrdesk-rotation"
ROTATION_FILE = "rotation.json"
VERSION = 1

Fit = Callable[[int, int], tuple[int, int]]
_Kept = TypeVar("_Kept")


class Rotation(int, enum.Enum):
    """How far a page is turned clockwise before it is OCRed, in degrees."""

    NONE = 0
    RIGHT = 90
    HALF = 180
    LEFT = 270

    def turned(self, quarters: int) -> Rotation:
        """This turn and `quarters` more quarter turns clockwise (negative: anticlockwise)."""
        return Rotation((self.value + 90 * quarters) % 360)

    @property
    def swaps(self) -> bool:
        """Width and height change places."""
        return self in (Rotation.RIGHT, Rotation.LEFT)

    @classmethod
    def parse(cls, value: object) -> Rotation:
        """A turn from degrees (any multiple of 90, e.g. -90 or "450"); ValueError otherwise."""
        try:
            degrees = int(str(value).strip())
        except ValueError:
            raise ValueError(f"a rotation is a multiple of 90 degrees, not {value!r}") from None
        if degrees % 90:
            raise ValueError(f"a rotation is a multiple of 90 degrees, not {value!r}")
        return cls(degrees % 360)


# PIL's transposes turn anticlockwise: ROTATE_270 is a quarter turn clockwise.
_TRANSPOSE = {
    Rotation.RIGHT: Image.Transpose.ROTATE_270,
    Rotation.HALF: Image.Transpose.ROTATE_180,
    Rotation.LEFT: Image.Transpose.ROTATE_90,
}


def turn_image(image: Image.Image, rotation: Rotation) -> Image.Image:
    """`image` turned clockwise by `rotation` (itself for none)."""
    transpose = _TRANSPOSE.get(rotation)
    return image if transpose is None else image.transpose(transpose)


def turned_size(width: int, height: int, rotation: Rotation) -> tuple[int, int]:
    """The size of a width x height image once turned."""
    return (height, width) if rotation.swaps else (width, height)


def turned_fit(fit: Fit, rotation: Rotation) -> Fit:
    """`fit` (wanted size for a full size) asked about the turned page, answering for the page
    as it is rendered: the model's size cap (engine/images.model_size) depends on the aspect
    ratio of what is sent, and that is the turned page."""
    if not rotation.swaps:
        return fit

    def unturned(width: int, height: int) -> tuple[int, int]:
        wanted_w, wanted_h = fit(height, width)
        return wanted_h, wanted_w

    return unturned


def turn_box(box: Box, width: int, height: int, rotation: Rotation) -> Box:
    """A box in pixels of a width x height image, in pixels of that image once turned."""
    x1, y1, x2, y2 = box
    if rotation is Rotation.RIGHT:  # (x, y) -> (height - y, x)
        return (height - y2, x1, height - y1, x2)
    if rotation is Rotation.HALF:  # (x, y) -> (width - x, height - y)
        return (width - x2, height - y2, width - x1, height - y1)
    if rotation is Rotation.LEFT:  # (x, y) -> (y, width - x)
        return (y1, width - x2, y2, width - x1)
    return box


def render_turned(
    document: Document,
    number: int,
    dpi: int,
    rotation: Rotation,
    *,
    timeout: float | None = None,
    fit: Fit | None = None,
) -> Image.Image:
    """Page `number` of `document` as `Document.render` gives it, turned by `rotation`; `fit`
    is asked about the turned page. Raises what `Document.render` raises."""
    wanted = None if fit is None else turned_fit(fit, rotation)
    return turn_image(document.render(number, dpi, timeout=timeout, fit=wanted), rotation)


def _same_source(written: object, source: str) -> bool:
    """Whether a rotation file written for `written` is for the document named `source`: the
    same name, or the same file named another way (the window keeps the path a person dropped,
    `ocrdesk convert` the one on its command line, maybe relative)."""
    if not isinstance(written, str):
        return False
    if written == source:
        return True
    try:
        return os.path.samefile(written, source)
    except (OSError, ValueError):
        return False


class RotationStore:
    """The turns of one document's pages: `pages/rotation.json` in its export folder (`folder`
    is OUT/<stem>), for the document named `source` (its path, or a pasted image's name).

    Beside each page's turn it keeps, for a page turned after it was read, the turn its kept
    result was read at (`stale`): that result describes another image than the page shows now,
    and the page is to be read again. Reading it again at its turn (`fresh`) clears that."""

    def __init__(self, folder: Path, source: str) -> None:
        self.folder = folder
        self.source = source
        self.path = folder / "pages" / ROTATION_FILE

    def _read(self) -> tuple[dict[int, Rotation], dict[int, Rotation]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or not _same_source(data.get("source"), self.source):
                return {}, {}
            turns = {int(n): Rotation.parse(v) for n, v in data["pages"].items()}
            read = {int(n): Rotation.parse(v) for n, v in (data.get("read") or {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}, {}
        return {n: t for n, t in turns.items() if t is not Rotation.NONE}, read

    def load(self) -> dict[int, Rotation]:
        """The turned pages and their turns; none when the file is missing, damaged, or was
        written for another document."""
        return self._read()[0]

    def stale(self) -> dict[int, Rotation]:
        """The pages turned since their kept result was read, and the turn it was read at."""
        return self._read()[1]

    def read_turns(self) -> dict[int, Rotation]:
        """The turn each page's kept result was read at (pages not named: as they lie): its
        stale turn if it was turned since, else its turn. The one rule for drawing on a kept
        result again (see the module docstring)."""
        turns, stale = self._read()
        read = {**turns, **stale}
        return {n: t for n, t in sorted(read.items()) if t is not Rotation.NONE}

    def kept(self, kept: Mapping[int, _Kept], edited: Collection[int]) -> dict[int, _Kept]:
        """Of the `kept` pages (a resumed run's, by number), those a run keeps: not the pages
        turned since they were read, which are read again at their turn, unless a person
        edited them (edits are never undone by a new answer)."""
        stale = self.stale()
        return {n: r for n, r in kept.items() if n not in stale or n in edited}

    def keep_read(self, turns: Mapping[int, Rotation]) -> None:
        """Keep exactly `turns`, none of them stale: for a copy of kept results (an export to
        another folder), each at the turn it was read at; with none to keep, a folder without a
        rotation file gets none. Raises OSError."""
        if any(t is not Rotation.NONE for t in turns.values()) or self.path.exists():
            self._write(turns, {})

    def set(self, number: int, rotation: Rotation, *, read: bool = False) -> dict[int, Rotation]:
        """Keep page `number`'s turn (atomically); the turns after it. `read`: the page has a
        kept result, read at its turn before this one unless it is stale already (turned back
        to that turn, it is not stale any more). Raises OSError when it cannot be written."""
        turns, stale = self._read()
        before = turns.get(number, Rotation.NONE)
        if read and number not in stale:
            stale[number] = before
        if stale.get(number) is rotation:
            del stale[number]
        turns[number] = rotation
        self._write(turns, stale)
        return {n: t for n, t in turns.items() if t is not Rotation.NONE}

    def fresh(self, number: int) -> None:
        """Page `number` was read again at its turn: it is not stale. Raises OSError."""
        turns, stale = self._read()
        if stale.pop(number, None) is not None:
            self._write(turns, stale)

    def _write(self, turns: Mapping[int, Rotation], stale: Mapping[int, Rotation]) -> None:
        from .export import atomic_write  # export imports the pipeline, which imports this

        data = {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "pages": {str(n): int(t) for n, t in sorted(turns.items()) if t is not Rotation.NONE},
            "read": {str(n): int(t) for n, t in sorted(stale.items())},
        }
        atomic_write(self.path, json.dumps(data, ensure_ascii=False))
