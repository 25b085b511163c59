"""Rasterising speed: engine.documents (PyMuPDF -> PIL RGB) against poppler's `pdftoppm`.

    python benchmarks/bench_raster.py                   # a generated 30-page text + vector PDF
    python benchmarks/bench_raster.py --pdf FILE.pdf    # any PDF
    python benchmarks/bench_raster.py --pages 60 --dpi 144 --repeat 3 --threads 4

The engine renders every page to a PIL image in memory (what the pipeline sends to the model),
once on one thread and once from --threads threads at a time (as the pipeline's pages do: PyMuPDF
pages render in engine.mupdf's render processes, in parallel); pdftoppm, when installed (Debian:
apt-get install poppler-utils), writes PPM files (its cheapest output) into a temporary folder on
one thread. Each runs --repeat times, alternating, and the best time is kept. Prints pages/s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pymupdf  # noqa: E402

from ocrdesk.engine.documents import open_document  # noqa: E402

fitz: Any = pymupdf

_TEXT = (
    "the patient report shows results within normal range except where noted below and the "
    "measurements were taken at the clinic under standard conditions by qualified staff"
)
WORDS = _TEXT.split()


def make_pdf(path: Path, pages: int) -> None:
    """Write an A4 PDF whose pages carry a title, paragraphs, a table grid, a chart and curves."""
    doc = fitz.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((56, 60), f"Quarterly report, section {number}", fontsize=20)
        text = " ".join(WORDS[(i * 7 + number) % len(WORDS)] for i in range(220))
        page.insert_textbox(fitz.Rect(56, 80, 539, 300), text, fontsize=10, fontname="helv")
        page.insert_textbox(fitz.Rect(56, 560, 539, 800), text, fontsize=9, fontname="tiro")
        for row in range(9):  # a table grid with numbers
            y = 320 + row * 24
            page.draw_line((56, y), (539, y), color=(0, 0, 0), width=0.5)
            for col in range(5):
                x = 56 + col * 96.6
                page.insert_text((x + 4, y + 16), f"{(row + 1) * (col + 3) * number:,}", fontsize=9)
        for col in range(6):
            x = 56 + col * 96.6
            page.draw_line((x, 320), (x, 512), color=(0, 0, 0), width=0.5)
        for bar in range(12):  # a bar chart
            height = 20 + (bar * 37 + number * 11) % 90
            rect = fitz.Rect(380 + bar * 13, 548 - height, 390 + bar * 13, 548)
            page.draw_rect(rect, color=None, fill=(0.2, 0.4, 0.8), fill_opacity=0.8)
        shape = page.new_shape()
        for k in range(6):  # curves
            shape.draw_bezier((56, 540 - k * 5), (150, 440 + k * 9), (250, 560), (360, 520 - k))
        shape.finish(color=(0.8, 0.1, 0.1), width=1.2)
        shape.commit()
    doc.save(str(path), deflate=True)
    doc.close()


def time_engine(pdf: Path, dpi: int) -> tuple[float, int]:
    start = time.perf_counter()
    with open_document(pdf) as doc:
        for number in range(1, doc.page_count + 1):
            image = doc.render(number, dpi)
            image.tobytes()[:1]  # make sure the pixels exist
        count = doc.page_count
    return time.perf_counter() - start, count


def time_engine_threads(pdf: Path, dpi: int, threads: int) -> float:
    start = time.perf_counter()
    with open_document(pdf) as doc, ThreadPoolExecutor(threads) as pool:
        numbers = range(1, doc.page_count + 1)
        for image in pool.map(lambda n: doc.render(n, dpi), numbers):
            image.tobytes()[:1]
    return time.perf_counter() - start


def time_pdftoppm(pdftoppm: str, pdf: Path, dpi: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-raster-") as out:
        start = time.perf_counter()
        subprocess.run([pdftoppm, "-r", str(dpi), str(pdf), f"{out}/page"], check=True)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pdf", type=Path, help="a PDF to rasterise (default: generate one)")
    parser.add_argument("--pages", type=int, default=30, help="pages of the generated PDF")
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="threads of the parallel run")
    args = parser.parse_args(argv)

    pdftoppm = shutil.which("pdftoppm")
    version = ""
    if pdftoppm is not None:
        done = subprocess.run([pdftoppm, "-v"], capture_output=True, text=True)
        version = done.stderr.split("\n")[0]

    with tempfile.TemporaryDirectory(prefix="bench-raster-") as tmp:
        pdf = args.pdf
        if pdf is None:
            pdf = Path(tmp) / f"generated-{args.pages}p.pdf"
            make_pdf(pdf, args.pages)
        engine_times: list[float] = []
        thread_times: list[float] = []
        poppler_times: list[float] = []
        pages = 0
        time_engine(pdf, args.dpi)  # warm the file cache, fonts and render processes once
        time_engine_threads(pdf, args.dpi, args.threads)
        for _ in range(args.repeat):
            elapsed, pages = time_engine(pdf, args.dpi)
            engine_times.append(elapsed)
            thread_times.append(time_engine_threads(pdf, args.dpi, args.threads))
            if pdftoppm is not None:
                poppler_times.append(time_pdftoppm(pdftoppm, pdf, args.dpi))

    engine_rate = pages / min(engine_times)
    print(f"pdf: {pdf if args.pdf else f'generated, {pages} pages'} at {args.dpi} dpi")
    print(f"pymupdf {fitz.VersionBind} (engine.documents -> PIL RGB), 1 thread: "
          f"{engine_rate:7.1f} pages/s")  # fmt: skip
    print(f"same, {args.threads} threads: {pages / min(thread_times):7.1f} pages/s")
    print(f"best of {args.repeat}; all engine s: {[round(t, 3) for t in engine_times]}")
    print(f"all {args.threads}-thread s: {[round(t, 3) for t in thread_times]}")
    if poppler_times:
        poppler_rate = pages / min(poppler_times)
        print(f"{version} (pdftoppm -r {args.dpi}, PPM files): {poppler_rate:7.1f} pages/s")
        print(f"ratio engine / pdftoppm: {engine_rate / poppler_rate:.2f}x")
        print(f"all pdftoppm s: {[round(t, 3) for t in poppler_times]}")
    else:
        print("pdftoppm not found (apt-get install -y poppler-utils): no comparison")
    return 0


if __name__ == "__main__":
    sys.exit(main())
