"""Writing results to disk as they arrive, and reading them back to resume.

Layout of one document's export, `OUT/<stem>/`:

    <stem>.md          clean markdown, each page after a `<!-- page N -->` line
    <stem>.raw.mmd     raw model output, pages split by `<--- Page Split --->` (as the official
                       pipeline writes it)
    <stem>.json        {"source", "model", "task", "pages": [...]} (see PageResult.to_json)
    <stem>.layout.pdf  every page image with its boxes and labels drawn
    images/            figure crops, `p0001_0.png` ... (linked from the markdown)
    pages/             the journal: one `NNNN.json` per finished page (plus its layout image),
                       written atomically the moment the page finishes

The journal is what makes the export crash-proof and resumable; the combined files are rebuilt
from it at most once per `flush_interval` and always at the end, because rewriting a 2,000-page
JSON after every page would cost quadratic I/O. The layout PDF, the costliest file, is rebuilt
only at the end (and by `flush(layout=True)`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pymupdf
from PIL import Image, ImageDraw

from .pipeline import image_prefix
from .results import PageResult, PageStatus

PAGE_SPLIT = "\n<--- Page Split --->\n"

#: Pages of the layout PDF built in memory at a time (see `DocumentExport._write_layout_pdf`).
LAYOUT_CHUNK_PAGES = 100

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


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file so that a reader (or a crash) sees the old content or the new, never half."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def draw_layout(image: Image.Image, result: PageResult) -> Image.Image:
    """The page image with each block's boxes outlined and labelled in its label's colour."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas, "RGBA")
    line = max(2, round(min(canvas.size) / 500))
    for block in result.blocks:
        color = label_color(block.label)
        for x1, y1, x2, y2 in block.boxes:
            draw.rectangle((x1, y1, x2, y2), outline=(*color, 255), width=line)
            draw.rectangle((x1, y1, x2, y2), fill=(*color, 28))
            text_box = draw.textbbox((x1, y1), block.label)
            top = max(0, y1 - (text_box[3] - text_box[1]) - 4)
            draw.rectangle((x1, top, x1 + text_box[2] - text_box[0] + 6, y1), fill=(*color, 220))
            draw.text((x1 + 3, top + 1), block.label, fill=(255, 255, 255, 255))
    return canvas


def crop_figures(image: Image.Image, result: PageResult, images_dir: Path) -> list[Path]:
    """Cut each `image` block out of the page into images/, named as the markdown links them."""
    written = []
    k = 0
    for block in result.blocks:
        if block.label != "image" or not block.boxes:
            continue
        x1, y1, x2, y2 = block.boxes[0]
        box = (int(x1), int(y1), max(int(x1) + 1, round(x2)), max(int(y1) + 1, round(y2)))
        path = images_dir / f"{image_prefix(result.number)}{k}.png"
        k += 1
        crop = image.crop(box)
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, format="PNG")
        written.append(path)
    return written


def page_markdown(result: PageResult) -> str:
    """A page's section of the document markdown, with the page marker and any problem flagged."""
    if result.status is PageStatus.FAILED:
        return f"<!-- page {result.number} -->\n\n<!-- failed: {_comment(result.error or '')} -->"
    marker = f"<!-- page {result.number} -->"
    if result.status is PageStatus.TRUNCATED:
        marker += "\n<!-- truncated: the model hit max_tokens; the page may be incomplete -->"
    return f"{marker}\n\n{result.markdown}".rstrip()


def _comment(text: str) -> str:
    return text.replace("--", "- -").replace("\n", " ")


class DocumentExport:
    """One document's export folder, written page by page."""

    def __init__(
        self,
        folder: Path,
        *,
        source: str,
        model: str,
        task: str,
        flush_interval: float = 1.0,
    ) -> None:
        self.folder = folder
        self.stem = folder.name
        self.source = source
        self.model = model
        self.task = task
        self.flush_interval = flush_interval
        self.pages_dir = folder / "pages"
        self.images_dir = folder / "images"
        self.results: dict[int, PageResult] = {}
        self._last_flush = 0.0

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

    def _page_layout(self, number: int) -> Path:
        return self.pages_dir / f"{number:04d}.layout.jpg"

    def load_finished(self) -> dict[int, PageResult]:
        """Pages finished (done or truncated) by an earlier run with the same model and task.

        Those are not requested again on resume; failed pages are."""
        found: dict[int, PageResult] = {}
        if not self.pages_dir.is_dir():
            return found
        for path in sorted(self.pages_dir.glob("[0-9]*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                result = PageResult.from_json(data["page"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged journal entry: that page is simply done again
            if data.get("model") != self.model or data.get("task") != self.task:
                continue
            if result.status in (PageStatus.DONE, PageStatus.TRUNCATED):
                found[result.number] = result
        self.results.update(found)
        return found

    def add_page(self, result: PageResult, image: Image.Image | None) -> None:
        """Record a finished or failed page: crops, layout image and journal entry at once;
        the combined files when `flush_interval` has passed."""
        if image is not None and result.status is not PageStatus.FAILED:
            crop_figures(image, result, self.images_dir)
            layout = draw_layout(image, result)
            self.pages_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._page_layout(result.number).with_suffix(".tmp.jpg")
            layout.save(tmp, format="JPEG", quality=85)
            os.replace(tmp, self._page_layout(result.number))
        entry = {"model": self.model, "task": self.task, "page": result.to_json()}
        atomic_write(self._page_json(result.number), json.dumps(entry, ensure_ascii=False))
        self.results[result.number] = result
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def document_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": self.model,
            "task": self.task,
            "pages": [self.results[n].to_json() for n in sorted(self.results)],
        }

    def flush(self, *, layout: bool = False) -> None:
        """Rebuild the combined files from the pages recorded so far."""
        pages = [self.results[n] for n in sorted(self.results)]
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.markdown_path, "\n\n".join(page_markdown(p) for p in pages) + "\n")
        atomic_write(self.raw_path, PAGE_SPLIT.join(p.raw for p in pages) + PAGE_SPLIT)
        atomic_write(self.json_path, json.dumps(self.document_json(), ensure_ascii=False, indent=1))
        if layout:
            self._write_layout_pdf(pages)
        self._last_flush = time.monotonic()

    def finish(self) -> None:
        """Write everything, the layout PDF included."""
        self.flush(layout=True)

    def _write_layout_pdf(self, pages: list[PageResult]) -> None:
        # Built in chunks of LAYOUT_CHUNK_PAGES pages, each appended to the file by an
        # incremental save, because MuPDF holds every inserted image in memory until the document
        # is saved and closed: in one piece, 2,000 pages of ~290 KB layout JPEGs raised the
        # process's peak RSS by ~800 MiB (benchmarks/results/engine-cpu.md). A reopened file's
        # images stay on disk, so the peak is one chunk's images whatever the page count.
        entries = [
            (result, self._page_layout(result.number))
            for result in pages
            if result.width and self._page_layout(result.number).exists()
        ]
        if not entries:
            with contextlib.suppress(OSError):
                self.layout_path.unlink()
            return
        tmp = self.layout_path.with_suffix(".tmp.pdf")
        try:
            for start in range(0, len(entries), LAYOUT_CHUNK_PAGES):
                pdf = pymupdf.open(tmp) if start else pymupdf.open()
                try:
                    for result, layout in entries[start : start + LAYOUT_CHUNK_PAGES]:
                        # 1 image pixel = 1/2 pt: a 144 dpi render comes back at its paper size.
                        page = pdf.new_page(width=result.width / 2, height=result.height / 2)
                        page.insert_image(page.rect, filename=str(layout))
                    if start:
                        pdf.save(tmp, incremental=True, encryption=0)  # 0: PDF_ENCRYPT_KEEP
                    else:
                        pdf.save(tmp, garbage=1, deflate=True)
                finally:
                    pdf.close()
            os.replace(tmp, self.layout_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def export_folder(out_root: Path, stem: str, taken: set[str]) -> Path:
    """OUT/<stem>/, with `-2`, `-3`... when two inputs of one run share a stem."""
    name = stem or "document"
    candidate = name
    n = 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return out_root / candidate
