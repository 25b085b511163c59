"""engine.mupdf: the one PyMuPDF owner. Time limits, closing mid-page, silence, thread safety."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine import mupdf
from ocrdesk.engine.documents import open_document
from ocrdesk.engine.errors import PageRenderError
from tests.engine.helpers import make_pdf

fitz: Any = pymupdf
REPO = Path(__file__).resolve().parents[2]


def nested_xobject_pdf(path: Path, depth: int = 30, copies: int = 4) -> Path:
    """A ~9 kB PDF whose page draws form XObject `depth`, each drawing the one below `copies`
    times: copies ** depth fills, a render that never ends (issue 17's hostile document)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /XObject << /X 5 0 R >> >> >>",
    ]

    def stream(dictionary: bytes, data: bytes) -> bytes:
        return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"

    objects.append(stream(b"", b"q 6 0 0 7.9 0 0 cm /X Do Q"))
    for level in range(depth, 0, -1):
        number = len(objects) + 1  # this XObject's object number
        form = b"/Type /XObject /Subtype /Form /BBox [0 0 100 100]"
        if level == 1:
            objects.append(stream(form, b"0 0 1 rg 10 10 80 80 re f"))
        else:
            draw = b" ".join(b"q 0.9 0 0 0.9 %d %d cm /P Do Q" % (i, i) for i in range(copies))
            resources = b" /Resources << /XObject << /P %d 0 R >> >>" % (number + 1)
            objects.append(stream(form + resources, draw))
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def wait_until(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_the_hostile_pdf_is_small_and_valid(tmp_path: Path) -> None:
    pdf = nested_xobject_pdf(tmp_path / "nested.pdf")
    assert pdf.stat().st_size < 10_000
    with open_document(pdf) as doc:
        assert doc.page_count == 1


def test_a_page_over_its_time_limit_fails_alone(tmp_path: Path) -> None:
    hostile = nested_xobject_pdf(tmp_path / "nested.pdf")
    good = make_pdf(tmp_path / "good.pdf", 2)
    with open_document(hostile) as bad, open_document(good) as fine:
        with pytest.raises(PageRenderError, match=r"page 1: took longer than 1\.5 s"):
            bad.render(1, 72, timeout=1.5)
        # the process that was killed is replaced: both documents still render
        assert fine.render(2, 72).size == (595, 842)
        with pytest.raises(PageRenderError, match="took longer than"):
            bad.render(1, 72, timeout=0.5)


def test_other_documents_go_on_while_a_page_hangs_and_closing_stops_it(tmp_path: Path) -> None:
    hostile = nested_xobject_pdf(tmp_path / "nested.pdf")
    good = make_pdf(tmp_path / "good.pdf", 3)
    bad = open_document(hostile)
    outcome: list[BaseException] = []

    def render_forever() -> None:
        try:
            bad.render(1, 72, timeout=3600)
        except BaseException as exc:
            outcome.append(exc)

    hung = threading.Thread(target=render_forever, daemon=True)
    hung.start()
    wait_until(lambda: mupdf.busy_renders() >= 1)
    with open_document(good) as fine:
        sizes = [fine.render(n, 72).size for n in (1, 2, 3)]
    assert sizes == [(595, 842)] * 3
    assert hung.is_alive() and not outcome  # 4**29 fills: it does not end by itself
    bad.close()  # what the end of a run or Ctrl+C does: the page stops now, not in an hour
    hung.join(60)
    assert not hung.is_alive()
    assert isinstance(outcome[0], PageRenderError)
    assert "closed" in outcome[0].reason


def test_mupdf_messages_never_reach_the_terminal(tmp_path: Path) -> None:
    svg = tmp_path / "drawing.svg"
    svg.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'width="100" height="100"><image width="50" height="50" xlink:href="missing.png"/>'
        '<rect x="60" y="60" width="30" height="30" fill="red"/></svg>',
        encoding="utf-8",
    )
    code = (
        "import sys; from ocrdesk.engine.documents import find_documents, open_document\n"
        "files, errors = find_documents([sys.argv[1]])\n"
        "for f in files:\n"
        "    with open_document(f) as doc: doc.render(1, 72)\n"
        "    with open_document(f.read_bytes(), name=f.name) as doc: doc.render(1, 72)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")  # was "svg: ignoring external image ..."


def test_bytes_documents_render_in_every_process(tmp_path: Path) -> None:
    data = make_pdf(tmp_path / "doc.pdf", 4).read_bytes()
    with open_document(data, name="pasted.pdf") as doc:
        expected = [doc.render(n, 50).tobytes() for n in range(1, 5)]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda n: doc.render(n, 50).tobytes(), [1, 2, 3, 4] * 4))
    assert got == expected * 4


def test_layout_pdfs_are_built_while_pages_render(tmp_path: Path) -> None:
    """A bounded stress test: PDFs written through engine.mupdf on some threads while pages
    render and documents open and close on others; every page and every PDF comes out whole."""
    source = make_pdf(tmp_path / "source.pdf", 6)
    with open_document(source) as doc:
        expected = {n: doc.render(n, 40).tobytes() for n in range(1, 7)}
    images = []
    for i in range(3):
        image = tmp_path / f"layout{i}.jpg"
        Image.new("RGB", (120 + i, 160), (40 * i, 90, 200)).save(image, quality=80)
        images.append(image)

    def build(k: int) -> int:
        pdf = tmp_path / f"layout-{k}.pdf"
        pages = [(images[i % 3], 60.0 + i, 80.0) for i in range(5)]
        mupdf.append_image_pages(pdf, pages[:2], create=True)
        mupdf.append_image_pages(pdf, pages[2:], create=False)
        with fitz.open(pdf) as written:
            return int(written.page_count)

    def render(k: int) -> bool:
        with open_document(source) as own:
            return all(own.render(n, 40).tobytes() == expected[n] for n in (k % 6 + 1, 6))

    with ThreadPoolExecutor(8) as pool:
        builds = [pool.submit(build, k) for k in range(12)]
        renders = [pool.submit(render, k) for k in range(24)]
        assert [f.result(timeout=300) for f in builds] == [5] * 12
        assert all(f.result(timeout=300) for f in renders)


def test_a_document_closed_as_its_page_came_back_leaves_no_dead_process_for_the_next(
    tmp_path: Path,
) -> None:
    """The race behind a CI flake: a document is closed (`forget` kills its busy render
    process) just after that process's reply was read. The next document that took the dead
    process failed to open with "the document was closed"."""
    pool = mupdf._Pool(1)
    try:
        closing = mupdf.Source(path=str(make_pdf(tmp_path / "closing.pdf", 1)), kind="pdf")
        pool.call("open", closing, (), 30)
        worker = pool._acquire(closing.token)  # a request for it is under way ...
        assert worker is not None
        pool.forget(closing.token)  # ... its reply has come when the document is closed
        pool._release(worker)
        opening = mupdf.Source(path=str(make_pdf(tmp_path / "opening.pdf", 2)), kind="pdf")
        assert pool.call("open", opening, (), 30).page_count == 2
    finally:
        pool.shutdown()
