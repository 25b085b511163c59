"""Open PDFs, e-books and images as documents whose pages are rendered one at a time.

    open_document(path or bytes) -> Document  (reads the page count; decodes images to check them)
    Document.render(n, dpi)      -> PIL RGB image of page n (1-based), rendered on demand
    find_documents(paths)        -> files to open (folders expanded), errors for missing paths

Which library reads a file is decided by its content, the suffix being only a hint:

- PDF, XPS/OpenXPS, EPUB, SVG, CBZ and FB2 go through PyMuPDF (MuPDF), by way of
  `engine.mupdf`, which opens and renders them in render processes with a time limit per page
  (`engine.mupdf.RENDER_SECONDS`): a page that never ends fails alone as a `PageRenderError`.
  Pages are rendered at the requested dpi without alpha. A page that would have more than
  `engine.images.MAX_IMAGE_PIXELS` pixels at that dpi is rendered at the highest lower dpi that
  fits, so a poster-sized page cannot exhaust memory.
- PNG, JPEG, TIFF, WebP, BMP, GIF (and PPM, JPEG 2000) go through Pillow. Every frame of a
  multi-frame TIFF, GIF, WebP or APNG is a page; a JPEG is one page even when it carries extra
  MPO frames (a phone's depth map or preview). Frames are returned at their native size (the dpi is
  ignored), upright and in RGB (`engine.images.normalize_image`). An image with more than
  `MAX_IMAGE_PIXELS` pixels is refused, and so is one whose frames do not all decode at open (a
  truncated JPEG fails when it is opened, not when its page is run).

Every failure is an `engine.errors.DocumentError` (or one of its subclasses) naming the file and
the reason in a few words; a raw PyMuPDF or Pillow exception never escapes.

Threads: `render` may be called from worker threads at the same time: PyMuPDF documents render
in parallel in `engine.mupdf`'s processes, Pillow documents have a lock each. Closing a document
stops a page of it that is still rendering. MuPDF's own messages never reach the terminal
(see `engine.mupdf`): broken files are reported through the exceptions instead.
On Linux with glibc it also fixes malloc's mmap threshold at 1 MiB, so that freed page buffers
go back to the OS instead of fragmenting the threads' malloc arenas (see
`_give_page_buffers_back_to_the_os`).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import os
import re
import stat
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from . import images, mupdf
from .errors import (
    DocumentError,
    EmptyFileError,
    PageRenderError,
    PasswordRequiredError,
    UnsupportedFormatError,
)
from .tasks import DEFAULT_DPI

__all__ = ["SUPPORTED_SUFFIXES", "Document", "find_documents", "open_document"]

#: glibc's mallopt() parameter number for M_MMAP_THRESHOLD (malloc.h).
_M_MMAP_THRESHOLD = -3
#: Allocations of at least this many bytes get their own mmap(), returned to the OS when freed.
_MMAP_THRESHOLD_BYTES = 1 << 20


def _give_page_buffers_back_to_the_os() -> bool:
    """Make glibc serve every allocation of 1 MiB or more with its own mmap(); True if done.

    Each page goes through several buffers of a few MB (MuPDF's pixmap, its samples as bytes,
    the Pillow image, the PNG and its base64) allocated and freed on the worker threads. glibc's
    default threshold for mmap() starts at 128 KiB but rises to the size of any mmapped block
    freed, up to 32 MiB, so after the first page these buffers are carved out of the malloc
    arenas, one arena per thread, which fragment: freed memory stays in the process. Measured
    with 16 pages in flight (benchmarks/results/engine-cpu.md): over 400 pages ~185 MiB was in
    use and another 200-250 MiB freed but kept in the arenas; with the threshold fixed at 1 MiB
    the kept part fell to 10-25 MiB and the RSS while converting from ~505 to ~326 MiB.
    Setting the threshold also switches the dynamic rise off. Linux with glibc only, and left
    alone when the user set MALLOC_MMAP_THRESHOLD_ themselves. Process-wide, done once on import.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


_give_page_buffers_back_to_the_os()

#: Suffix -> PyMuPDF file type, for the formats read with PyMuPDF.
_FITZ_SUFFIXES: dict[str, str] = {
    ".pdf": "pdf",
    ".xps": "xps",
    ".oxps": "xps",
    ".epub": "epub",
    ".svg": "svg",
    ".cbz": "cbz",
    ".fb2": "fb2",
}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})

#: File suffixes (lower case, with the dot) that `find_documents` picks up in folders.
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_FITZ_SUFFIXES) | _IMAGE_SUFFIXES

#: Pillow formats accepted; others that Pillow can guess (TGA, ICO, EPS...) are not. Formats that
#: this Pillow lacks (MPO is part of JPEG in new ones, JPEG 2000 needs OpenJPEG) are dropped.
_WANTED_PILLOW_FORMATS = (
    "PNG",
    "JPEG",
    "MPO",
    "TIFF",
    "WEBP",
    "BMP",
    "DIB",
    "GIF",
    "PPM",
    "JPEG2000",
)
Image.init()
_PILLOW_FORMATS = tuple(f for f in _WANTED_PILLOW_FORMATS if f in Image.OPEN)
_SINGLE_FRAME_FORMATS = frozenset({"JPEG", "MPO"})
_FILE_EXTENSION = {"JPEG": "jpg", "MPO": "jpg", "JPEG2000": "jp2", "DIB": "bmp", "TIFF": "tif"}
_ZIP_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".jxr")

_SNIFF_BYTES = 8192
#: How many image files are decoded at once to check them at open (see `_check_decodes`).
_DECODE_SLOTS = threading.BoundedSemaphore(2)

_short = mupdf.short_reason


class Document:
    """An opened document: its name, its page count, and pages rendered on demand.

    Use it as a context manager or call `close()`; `render` may be called from several threads.
    """

    source: str
    """The path as given, or a made-up name such as "clipboard-2026-11-24-161500.png" for bytes."""
    name: str
    """The file name (last part of `source`)."""
    stem: str
    """The file name without its suffix: the name of the export folder."""
    page_count: int
    is_image: bool
    """True when the pages are frames of an image file (read with Pillow)."""
    format: str
    """What the content turned out to be, e.g. "PDF 1.7", "EPUB", "PNG", "TIFF"."""

    def __init__(self, source: str, *, page_count: int, is_image: bool, format: str) -> None:
        self.source = source
        self.name = Path(source).name or source
        self.stem = Path(self.name).stem or self.name
        self.page_count = page_count
        self.is_image = is_image
        self.format = format
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def render(
        self,
        number: int,
        dpi: int = DEFAULT_DPI,
        *,
        timeout: float | None = None,
        fit: Callable[[int, int], tuple[int, int]] | None = None,
    ) -> Image.Image:
        """Render page `number` (1-based) as an upright RGB image.

        PyMuPDF pages are rendered at `dpi` (lowered for a page too large for
        `engine.images.MAX_IMAGE_PIXELS`) within `timeout` seconds (default
        `engine.mupdf.RENDER_SECONDS`); image frames come at their native size and ignore `dpi`.
        `fit(width, height)` may give a smaller size for the page image (e.g.
        `engine.images.model_size`): PyMuPDF pages are then rendered at it at once (give or take
        MuPDF's rounding of a pixel), image frames are resized to it.
        Raises `PageRenderError` for a page out of range, a closed document, a page that fails
        or takes too long.
        """
        if dpi <= 0:
            raise ValueError(f"dpi must be positive, not {dpi}")
        if not 1 <= number <= self.page_count:
            raise PageRenderError(
                self.source, number, f"no such page (the document has {self.page_count})"
            )
        if self._closed:
            raise PageRenderError(self.source, number, "the document is closed")
        limit = mupdf.RENDER_SECONDS if timeout is None else timeout
        return self._render(number, dpi, limit, fit)

    def _render(
        self,
        number: int,
        dpi: int,
        timeout: float,
        fit: Callable[[int, int], tuple[int, int]] | None,
    ) -> Image.Image:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; rendering afterwards raises `PageRenderError`. Safe to call twice."""
        self._closed = True

    def __enter__(self) -> Document:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.page_count} pages"
        return f"<{type(self).__name__} {self.source!r} {self.format} {state}>"


class _FitzDocument(Document):
    """A document read with PyMuPDF (through `engine.mupdf`)."""

    def __init__(self, label: str, source: mupdf.Source, info: mupdf.DocumentInfo) -> None:
        super().__init__(label, page_count=info.page_count, is_image=False, format=info.format)
        self._source = source

    def _render(
        self,
        number: int,
        dpi: int,
        timeout: float,
        fit: Callable[[int, int], tuple[int, int]] | None,
    ) -> Image.Image:
        try:
            zoom = float(dpi)
            if fit is not None:
                width, height = mupdf.page_size(self._source, number, seconds=timeout)
                full = max(1, math.ceil(width * dpi / 72)), max(1, math.ceil(height * dpi / 72))
                wanted = fit(*full)
                zoom = dpi * min(1.0, max(wanted[0] / full[0], wanted[1] / full[1]))
            page = mupdf.render_page(
                self._source, number, zoom, max_pixels=images.MAX_IMAGE_PIXELS, seconds=timeout
            )
        except mupdf.MuPDFError as exc:
            reason = "the document is closed" if self._closed else exc.reason
            raise PageRenderError(self.source, number, reason) from exc
        size = (page.width, page.height)
        return Image.frombytes("RGB", size, page.samples, "raw", "RGB", page.stride)

    def close(self) -> None:
        if not self._closed:
            super().close()
            mupdf.forget(self._source)


class _ImageDocument(Document):
    """An image file read with Pillow: one page per frame."""

    def __init__(self, source: str, img: Image.Image, page_count: int, format: str) -> None:
        super().__init__(source, page_count=page_count, is_image=True, format=format)
        self._img: Image.Image | None = img
        self._lock = threading.Lock()

    def _render(
        self,
        number: int,
        dpi: int,
        timeout: float,
        fit: Callable[[int, int], tuple[int, int]] | None,
    ) -> Image.Image:
        with self._lock:
            img = self._img
            if img is None:
                raise PageRenderError(self.source, number, "the document is closed")
            try:
                if self.page_count > 1 or number > 1:
                    img.seek(number - 1)
                _check_size(img.size, lambda reason: PageRenderError(self.source, number, reason))
                img.load()
                frame = ImageOps.exif_transpose(img) or img.copy()
            except DocumentError:
                raise
            except Image.DecompressionBombError as exc:
                raise PageRenderError(self.source, number, _bomb_reason(exc)) from exc
            except MemoryError as exc:
                raise PageRenderError(self.source, number, "out of memory") from exc
            except Exception as exc:
                raise PageRenderError(self.source, number, _short(exc)) from exc
        try:
            upright = images.normalize_image(frame)
            return upright if fit is None else images.resize_to(upright, fit(*upright.size))
        except Exception as exc:
            raise PageRenderError(self.source, number, _short(exc)) from exc

    def close(self) -> None:
        with self._lock:
            if self._img is not None:
                with contextlib.suppress(Exception):
                    self._img.close()
                self._img = None
        super().close()


def _check_size(size: tuple[int, int], error: Any) -> None:
    pixels = size[0] * size[1]
    if pixels > images.MAX_IMAGE_PIXELS:
        raise error(f"image too large ({pixels} pixels, limit {images.MAX_IMAGE_PIXELS})")


def _bomb_reason(exc: BaseException) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{found.group(1)} pixels, " if found else ""
    return f"image too large ({pixels}limit {images.MAX_IMAGE_PIXELS})"


# --------------------------------------------------------------------------- opening


def open_document(
    source: str | os.PathLike[str] | bytes,
    *,
    password: str | None = None,
    name: str | None = None,
) -> Document:
    """Open a file (a path) or raw bytes (a pasted screenshot, a download) as a `Document`.

    Only the page count is read (an image file's frames are decoded once, to check them); pages
    are rendered by `Document.render`. For bytes, `name` is the document's name (default
    "clipboard-YYYY-MM-DD-HHMMSS.<ext>"); for a path it is ignored.
    `password` opens an encrypted PDF. Raises `DocumentError` or a subclass: `EmptyFileError`,
    `PasswordRequiredError`, `UnsupportedFormatError`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(source), password=password, name=name)
    path_text = os.fspath(source)
    if not isinstance(path_text, str):
        raise TypeError("open_document takes a str path, an os.PathLike[str] or bytes")
    return _open_path(path_text, password=password)


def _open_path(source: str, *, password: str | None) -> Document:
    path = Path(source)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DocumentError(source, "no such file") from None
    except PermissionError:
        raise DocumentError(source, "permission denied") from None
    except OSError as exc:
        raise DocumentError(
            source, f"cannot read the file ({exc.strerror or _short(exc)})"
        ) from exc
    if stat.S_ISDIR(info.st_mode):
        raise DocumentError(source, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DocumentError(source, "is not a regular file")
    if info.st_size == 0:
        raise EmptyFileError(source, "the file is empty (0 bytes)")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except PermissionError:
        raise DocumentError(source, "permission denied") from None
    except OSError as exc:
        raise DocumentError(
            source, f"cannot read the file ({exc.strerror or _short(exc)})"
        ) from exc

    suffix = path.suffix.lower()
    kind = _sniff_fitz(head, lambda: zipfile.ZipFile(path))
    if kind == "pdf":
        return _open_fitz(source, path, kind, password)

    image = _try_pillow(source, lambda: Image.open(path, formats=_PILLOW_FORMATS))
    if image is not None:
        return image
    if kind is None:
        kind = _FITZ_SUFFIXES.get(suffix)
    if kind is not None:
        return _open_fitz(source, path, kind, password)
    raise _unsupported(source, head)


def _open_bytes(data: bytes, *, password: str | None, name: str | None) -> Document:
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M%S")
    label = name or f"clipboard-{stamp}"
    if not data:
        raise EmptyFileError(label, "no data (0 bytes)")
    head = data[:_SNIFF_BYTES]
    suffix = Path(name).suffix.lower() if name else ""
    kind = _sniff_fitz(head, lambda: zipfile.ZipFile(io.BytesIO(data)))

    if kind != "pdf":
        image = _try_pillow(
            label,
            lambda: Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS),
            add_suffix=name is None,
        )
        if image is not None:
            return image
    if kind is None:
        kind = _FITZ_SUFFIXES.get(suffix)
    if kind is None:
        raise _unsupported(label, head)
    if name is None:
        label = f"{label}.{kind}"
    return _open_fitz(label, data, kind, password)


def _unsupported(source: str, head: bytes) -> UnsupportedFormatError:
    if head.lstrip()[:1] in (b"<", b"{") or _looks_like_text(head):
        what = "it looks like text"
    else:
        what = "its content is no format OCRDesk knows"
    return UnsupportedFormatError(
        source, f"not a PDF, XPS, EPUB, SVG, CBZ, FB2 or image file ({what})"
    )


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sniff_fitz(head: bytes, open_zip: Any) -> str | None:
    """Guess the PyMuPDF file type from the first bytes, or None when it is none of them."""
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(open_zip)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<"):
        if b"<svg" in text:
            return "svg"
        if b"<fictionbook" in text:
            return "fb2"
    return None


def _sniff_zip(open_zip: Any) -> str | None:
    try:
        with open_zip() as archive:
            names = archive.namelist()
            if "mimetype" in names and archive.read("mimetype").strip() == b"application/epub+zip":
                return "epub"
            lowered = [n.lower() for n in names]
            if any(n.endswith((".fdseq", ".fpage", ".fdoc")) for n in lowered):
                return "xps"
            if "[content_types].xml" not in lowered and any(
                n.endswith(_ZIP_IMAGE_SUFFIXES) for n in lowered
            ):
                return "cbz"
    except Exception:  # not a readable zip: let the suffix decide
        return None
    return None


def _try_pillow(source: str, opener: Any, *, add_suffix: bool = False) -> Document | None:
    """Open with Pillow; None when Pillow does not recognise the content at all.

    With `add_suffix`, the format's usual suffix is appended to `source` (clipboard names).
    """
    try:
        img: Image.Image = opener()
        if add_suffix:
            fmt = img.format or "PNG"
            source = f"{source}.{_FILE_EXTENSION.get(fmt, fmt.lower())}"
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError as exc:
        raise DocumentError(source, _bomb_reason(exc)) from exc
    except MemoryError as exc:
        raise DocumentError(source, "out of memory") from exc
    except Exception as exc:
        # Pillow knew the format but choked on it: a broken image file.
        raise DocumentError(source, f"broken image file ({_short(exc)})") from exc
    try:
        fmt = img.format or "image"
        _check_size(img.size, lambda reason: DocumentError(source, reason))
        count = 1 if fmt in _SINGLE_FRAME_FORMATS else int(getattr(img, "n_frames", 1))
        if count < 1:
            raise DocumentError(source, "no pages")
        _check_decodes(source, opener, count, fmt)
    except DocumentError:
        img.close()
        raise
    except Exception as exc:
        img.close()
        raise DocumentError(source, f"broken {fmt} file ({_short(exc)})") from exc
    return _ImageDocument(source, img, count, fmt)


def _check_decodes(source: str, opener: Any, count: int, fmt: str) -> None:
    """Decode every frame of the image once, so that a cut or corrupt file (a JPEG whose second
    half is missing) is refused at open, as a broken PDF is, and not only when its page is run.

    Pillow reads just the header on open; only `load()` meets the missing bytes (truncated
    images stay refused: `ImageFile.LOAD_TRUNCATED_IMAGES` is left False). The frames are decoded
    from an image opened for the purpose and closed at once, so a queue of opened scans keeps no
    decoded pixels; `_DECODE_SLOTS` bounds how many are decoded at the same time (a drop of many
    large files opens them in parallel threads).
    """
    with _DECODE_SLOTS, opener() as probe:
        for index in range(count):
            try:
                if index:
                    probe.seek(index)
                _check_size(probe.size, lambda reason: DocumentError(source, reason))
                probe.load()
            except DocumentError:
                raise
            except Image.DecompressionBombError as exc:
                raise DocumentError(source, _bomb_reason(exc)) from exc
            except MemoryError as exc:
                raise DocumentError(source, "out of memory") from exc
            except Exception as exc:
                where = f"frame {index + 1} of {count}: " if count > 1 else ""
                raise DocumentError(source, f"broken {fmt} file ({where}{_short(exc)})") from exc


def _open_fitz(label: str, file: Path | bytes, kind: str, password: str | None) -> Document:
    if isinstance(file, bytes):
        source = mupdf.Source(kind, data=file, password=password)
    else:
        source = mupdf.Source(kind, path=str(file), password=password)
    try:
        info = mupdf.open_document(source)
    except mupdf.MuPDFError as exc:
        mupdf.forget(source)
        if exc.password:
            raise PasswordRequiredError(label, exc.reason) from exc
        raise DocumentError(label, exc.reason) from exc
    return _FitzDocument(label, source, info)


# --------------------------------------------------------------------------- finding


def find_documents(
    inputs: Sequence[str | os.PathLike[str]],
) -> tuple[list[Path], list[DocumentError]]:
    """Turn dropped or command-line paths into the list of files to open.

    Files are kept as given, whatever their suffix (opening says what is wrong with them).
    Folders are searched recursively for files with a suffix in `SUPPORTED_SUFFIXES` (any case),
    skipping names that start with a dot and not following symbolic links to folders; their files
    come in natural order ("page2" before "page10"). A file found twice is listed once.
    Returns (files, errors): a path that does not exist, or a folder with nothing to open, gives
    a `DocumentError` in errors.
    """
    found: list[Path] = []
    errors: list[DocumentError] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            found.append(path)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            members = sorted(_walk(path), key=lambda p: _natural_key(p.relative_to(path)))
            if not members:
                errors.append(DocumentError(path, "no PDF, e-book or image files in this folder"))
            for member in members:
                add(member)
        elif path.exists() or path.is_symlink():
            add(path)
        else:
            errors.append(DocumentError(path, "no such file or folder"))
    return found, errors


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for file_name in files:
            if file_name.startswith("."):
                continue
            if Path(file_name).suffix.lower() in SUPPORTED_SUFFIXES:
                candidate = Path(root) / file_name
                if candidate.is_file():
                    yield candidate


def _natural_key(path: Path) -> list[tuple[tuple[int, int | str], ...]]:
    return [
        tuple(
            (0, int(chunk)) if chunk.isdigit() else (1, chunk)
            for chunk in re.split(r"(\d+)", part.casefold())
            if chunk
        )
        for part in path.parts
    ]
