"""Pages per second of each delivery writer (issue 14) on a long document.

Run from the repository root:  .venv/bin/python benchmarks/bench_writers.py [--pages 300]

The document is the six real lecture pages of shared/corpus/pages (their images and real model
output) repeated to `--pages` pages. Measured one after another, each from the parsed pages:
line layout (engine.text_layer), hOCR, ALTO, the searchable PDF from the page images (with its
layout), and DOCX / HTML / EPUB through pandoc (engine.pandoc_formats; figure crops stand in as
plain grey PNGs). Prints seconds and pages/s per writer.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocrdesk.engine.alto import alto_document  # noqa: E402
from ocrdesk.engine.hocr import hocr_document  # noqa: E402
from ocrdesk.engine.pandoc_formats import write_document  # noqa: E402
from ocrdesk.engine.parser import parse  # noqa: E402
from ocrdesk.engine.results import PageResult, PageStatus  # noqa: E402
from ocrdesk.engine.searchable_pdf import write_searchable_pdf  # noqa: E402
from ocrdesk.engine.text_layer import layout_page  # noqa: E402

PAGES = ROOT.parent / "shared" / "corpus" / "pages"
LECTURES = ["006", "015", "024", "043", "202", "354"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    count = parser.parse_args().pages
    base = []
    for name in LECTURES:
        image = PAGES / f"lecture-{name}.jpg"
        with Image.open(image) as img:
            width, height = img.size
        raw = (PAGES / f"lecture-{name}.raw.txt").read_text(encoding="utf-8")
        base.append((image, width, height, raw, parse(raw, width, height)))
    results, images = [], []
    for n in range(1, count + 1):
        image, width, height, raw, parsed = base[(n - 1) % len(base)]
        results.append(
            PageResult(n, width, height, PageStatus.DONE, raw, parsed.markdown, parsed.blocks)
        )
        images.append(image)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "images").mkdir()
        for link in {m for r in results for m in re.findall(r"\]\((images/[^)]+)\)", r.markdown)}:
            Image.new("RGB", (400, 300), "gray").save(out / link)
        layouts = [layout_page(r) for r in results]
        markdown = [(r.number, r.markdown) for r in results]
        writers: list[tuple[str, Callable[[], object]]] = [
            ("layout", lambda: [layout_page(r) for r in results]),
            ("hocr", lambda: hocr_document(layouts)),
            ("alto", lambda: alto_document(layouts)),
            ("searchable pdf", lambda: write_searchable_pdf(images, layouts, out / "s.pdf")),
        ]
        for fmt in ("docx", "html", "epub"):
            writers.append(
                (
                    fmt,
                    lambda fmt=fmt: write_document(
                        fmt, markdown, out / f"d.{fmt}", resource_dir=out
                    ),
                )
            )
        print(f"{count} pages")
        for name, writer in writers:
            start = time.perf_counter()
            writer()
            seconds = time.perf_counter() - start
            print(f"{name:>15}: {seconds:7.2f} s  {count / seconds:8.1f} pages/s")


if __name__ == "__main__":
    main()
