"""A page's layout image and figure crops drawn again when its blocks changed after they were
drawn: a person edited the page (engine/edits.py), or undid all its edits.

A layout image drawn from edited blocks says so in its JPEG comment, `ocrdesk-edits:<tag>`, the
tag a hash of the labels and boxes it shows (`blocks_tag`); one drawn from the model's blocks
(`DocumentExport.add_page`) has no comment. So `stale_pages` knows, from the images' headers
alone, which pages are out of date: an edited page whose image does not carry its blocks' tag,
and a page without edits whose image still carries one.

The page image to draw on comes, in this order, from the caller (the window has it on screen),
from the journal (`NNNN.page.png`, kept for a searchable PDF of pasted bytes or multi-frame
images), or from the document, rendered again at the size the model was sent and turned as the
page was when it was read (engine/rotation.py's `read_turns`). When none is
there (the document was moved, deleted or changed since), the page keeps the images it had and
`redraw` names it; every other file of the export still has the edits.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PIL import Image

from .errors import DocumentError
from .pipeline import image_prefix
from .results import Block, PageResult
from .rotation import Rotation, RotationStore, render_turned

if TYPE_CHECKING:
    from .documents import Document
    from .export import DocumentExport

__all__ = ["EDITED_TAG", "PageImages", "blocks_tag", "drawn_tag", "redraw", "stale_pages"]

EDITED_TAG = "ocrdesk-edits:"

#: A dpi above any the pipeline renders at: `Document.render` lowers it to the size asked for.
_RENDER_DPI = 1200


def blocks_tag(blocks: Iterable[Block]) -> str:
    """What a layout image drawn from `blocks` shows (labels and boxes, as the JSON rounds
    them), hashed: the same for blocks that draw the same."""
    shown = [[b.label, [[round(v, 1) for v in box] for box in b.boxes]] for b in blocks]
    digest = hashlib.sha256(json.dumps(shown).encode("utf-8")).hexdigest()[:24]
    return EDITED_TAG + digest


def drawn_tag(layout: Path) -> str | None:
    """The comment of a layout image (read from its header only); None if it has none or is
    not there."""
    try:
        with Image.open(layout) as img:
            comment = img.info.get("comment")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    if isinstance(comment, bytes):
        return comment.decode("utf-8", "replace")
    return comment if isinstance(comment, str) else None


def stale_pages(export: DocumentExport) -> list[int]:
    """The pages of `export` whose layout image is not drawn from the blocks they show now."""
    edited = export.edits.edited_pages()
    stale = []
    for number in export.results:
        if not all(export.results.size_of(number)):
            continue  # no page image was ever made (it failed to render): nothing to draw on
        tag = drawn_tag(export.page_layout_path(number))
        if number in edited:
            blocks = export.edits.load(number)
            if blocks is not None and tag != blocks_tag(blocks):
                stale.append(number)
        elif tag is not None and tag.startswith(EDITED_TAG):
            stale.append(number)
    return stale


class PageImages:
    """Page images of one export to draw on, the document opened once for all of them.

    `get(result)` is the page image at the size the model was sent, or None when there is none
    (see the module docstring). Use it as a context manager: the document is closed at the end."""

    def __init__(self, export: DocumentExport) -> None:
        self.export = export
        self._document: Document | None = None
        self._no_document = False
        self._turns: dict[int, Rotation] | None = None  # read once, on the first render

    def get(self, result: PageResult) -> Image.Image | None:
        size = (result.width, result.height)
        if not all(size):
            return None
        kept = self.export.page_image_path(result.number)
        unreadable = (OSError, ValueError, Image.DecompressionBombError)
        with contextlib.suppress(*unreadable), Image.open(kept) as img:
            return _at_size(img.convert("RGB"), size)
        document = self._open()
        if document is None or result.number > document.page_count:
            return None
        if self._turns is None:
            self._turns = RotationStore(self.export.folder, self.export.source).read_turns()
        turn = self._turns.get(result.number, Rotation.NONE)
        try:
            page = render_turned(document, result.number, _RENDER_DPI, turn, fit=lambda w, h: size)
        except DocumentError:
            return None
        return _at_size(page, size)

    def _open(self) -> Document | None:
        if self._document is None and not self._no_document:
            self._document = _open_source(self.export)
            self._no_document = self._document is None
        return self._document

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
            self._document = None

    def __enter__(self) -> PageImages:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _at_size(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    from .images import resize_to

    return resize_to(img, size)


def _open_source(export: DocumentExport) -> Document | None:
    """The document the export was made from, if it is there and still the same bytes."""
    from .documents import open_document
    from .export import source_id

    source = export.origin
    if source is None:  # rebuilt from the journal: the file it names, if unchanged
        source = export.source_id.path if export.source_id is not None else export.source
        try:
            if export.source_id is not None and not source_id(source).same_document(
                export.source_id
            ):
                return None
        except OSError:
            return None
    try:
        return open_document(source, password=export.password)
    except (DocumentError, OSError):
        return None


def redraw(
    export: DocumentExport,
    numbers: Iterable[int],
    image_of: Callable[[PageResult], Image.Image | None] | None = None,
) -> list[int]:
    """Draw the layout image and figure crops of each page in `numbers` again from the blocks
    it shows now; `image_of(result)` may give its page image first. Returns the pages that
    had no page image to draw on (their images are as they were)."""
    missed = []
    with PageImages(export) as images:
        for number in numbers:
            result = export.results[number]  # with its edits, if any
            image = image_of(result) if image_of is not None else None
            if image is None:
                image = images.get(result)
            if image is None:
                missed.append(number)
                continue
            draw_page(export, result, image)
    return missed


def draw_page(export: DocumentExport, result: PageResult, image: Image.Image) -> None:
    """One page's figure crops and layout image, from `result`'s blocks on `image`."""
    from .export import atomic_binary_writer, crop_figures, draw_layout

    image = _at_size(image.convert("RGB"), (result.width, result.height))
    # Crops are numbered from 0 with no gap: those past the page's figures now (it had more
    # before an edit) would be linked from nothing, and are removed.
    k = len(crop_figures(image, result, export.images_dir))
    with contextlib.suppress(OSError):  # the first that is not there (or cannot go) ends it
        while True:
            (export.images_dir / f"{image_prefix(result.number)}{k}.png").unlink()
            k += 1
    layout = draw_layout(image, result)
    comment = {"comment": blocks_tag(result.blocks)} if result.edited else {}
    with atomic_binary_writer(export.page_layout_path(result.number)) as handle:
        layout.save(handle, format="JPEG", quality=85, **comment)
