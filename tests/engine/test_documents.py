"""Tests for engine.images and engine.documents: opening, rendering, normalising, finding files."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from PIL import Image

from ocrdesk.engine import images
from ocrdesk.engine.documents import SUPPORTED_SUFFIXES, Document, find_documents, open_document
from ocrdesk.engine.errors import (
    DocumentError,
    EmptyFileError,
    PageRenderError,
    PasswordRequiredError,
    UnsupportedFormatError,
)
from ocrdesk.engine.images import encode_jpeg, encode_png, normalize_image

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(__file__).resolve().parents[3] / "shared"
CORPUS = SHARED / "corpus" / "pdfs"
MEDICAL_PAGE = SHARED / "corpus" / "pages" / "medical-report-p1.pdf"
PROBE = Path(__file__).with_name("_corpus_probe.py")
PROBE_TIMEOUT_S = 60
fitz: Any = pymupdf  # PyMuPDF is only partly typed


# --------------------------------------------------------------------------- helpers


def make_pdf_bytes(pages: int = 3, size: tuple[float, float] = (595, 842), **save: object) -> bytes:
    doc = fitz.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 72), f"Page {number} of {pages}", fontsize=18)
        page.draw_rect(fitz.Rect(72, 100, 72 + 20 * number, 140), color=(0, 0, 1), fill=(1, 0, 0))
    data: bytes = doc.tobytes(**save)
    doc.close()
    return data


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no real pixel data): a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- normalize_image


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    img.putpixel((2, 0), (0, 0, 0, 128))
    out = normalize_image(img)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (255, 0, 0)
    assert all(126 <= c <= 129 for c in out.getpixel((2, 0)))  # type: ignore[union-attr]


def test_la_is_composited_on_white() -> None:
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (0, 255))
    out = normalize_image(img)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (0, 0, 0)


def test_palette_with_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (2, 1), 0)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * (256 * 3 - 6))
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    out = normalize_image(img)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)  # was transparent black
    assert out.getpixel((1, 0)) == (10, 20, 30)


def test_palette_without_transparency() -> None:
    img = Image.new("P", (1, 1), 0)
    img.putpalette([200, 100, 50] + [0] * (256 * 3 - 3))
    assert normalize_image(img).getpixel((0, 0)) == (200, 100, 50)


def test_cmyk_becomes_rgb() -> None:
    out = normalize_image(Image.new("CMYK", (2, 2), (0, 0, 0, 0)))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert normalize_image(Image.new("CMYK", (1, 1), (0, 0, 0, 255))).getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_mid_gray_stays_mid_gray(mode: str) -> None:
    img = Image.new(mode, (3, 3), 32768)
    out = normalize_image(img)
    assert out.mode == "RGB"
    r, g, b = out.getpixel((1, 1))  # type: ignore[misc]
    assert 126 <= r <= 129 and r == g == b
    white = normalize_image(Image.new(mode, (1, 1), 65535)).getpixel((0, 0))
    assert white == (255, 255, 255)


def test_float_image_in_unit_range() -> None:
    out = normalize_image(Image.new("F", (1, 1), 0.5))
    assert out.getpixel((0, 0)) in ((127, 127, 127), (128, 128, 128))


@pytest.mark.parametrize("mode", ["L", "1", "RGB"])
def test_simple_modes(mode: str) -> None:
    color = (255, 255, 255) if mode == "RGB" else (1 if mode == "1" else 255)
    out = normalize_image(Image.new(mode, (2, 2), color))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)


def _jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    img = Image.new("RGB", size, (0, 128, 255))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_6_rotates() -> None:
    img = Image.open(io.BytesIO(_jpeg_with_orientation((40, 20), 6)))
    assert img.size == (40, 20)
    out = normalize_image(img)
    assert out.size == (20, 40)
    assert out.mode == "RGB"


def test_encoders_round_trip() -> None:
    img = Image.new("RGBA", (5, 3), (10, 20, 30, 255))
    assert Image.open(io.BytesIO(encode_png(img))).size == (5, 3)
    jpeg = Image.open(io.BytesIO(encode_jpeg(img, quality=80)))
    assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "RGB", (5, 3))
    cmyk_png = Image.open(io.BytesIO(encode_png(Image.new("CMYK", (2, 2)))))
    assert cmyk_png.mode == "RGB"


# --------------------------------------------------------------------------- PDFs


def test_pdf_opens_lazily_and_renders(tmp_path: Path) -> None:
    path = write(tmp_path / "Report 2024.pdf", make_pdf_bytes(pages=3))
    with open_document(path) as doc:
        assert isinstance(doc, Document)
        assert (doc.source, doc.name, doc.stem) == (str(path), "Report 2024.pdf", "Report 2024")
        assert doc.page_count == 3
        assert doc.is_image is False
        page = doc.render(2)
        assert page.mode == "RGB"
        assert page.size == (1190, 1684)  # A4 at 144 dpi
        assert doc.render(3, dpi=72).size == (595, 842)
        with pytest.raises(PageRenderError, match="no such page"):
            doc.render(4)
        with pytest.raises(PageRenderError):
            doc.render(0)
    assert doc.closed
    with pytest.raises(PageRenderError, match="closed"):
        doc.render(1)
    doc.close()  # twice is fine


def test_source_as_given_for_str_path(tmp_path: Path) -> None:
    path = write(tmp_path / "a.pdf", make_pdf_bytes(pages=1))
    with open_document(str(path)) as doc:
        assert doc.source == str(path)


def test_huge_pdf_page_is_rendered_at_a_lower_dpi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1_000_000)
    path = write(tmp_path / "poster.pdf", make_pdf_bytes(pages=1, size=(2000, 1000)))
    with open_document(path) as doc:
        page = doc.render(1, dpi=144)  # would be 4000 x 2000 = 8 Mpx
    width, height = page.size
    assert width * height <= 1_000_000
    assert width > 1000 and abs(width / height - 2.0) < 0.01


def test_medical_report_page_at_180_dpi() -> None:
    if not MEDICAL_PAGE.is_file():
        pytest.skip(f"{MEDICAL_PAGE} is absent")
    with open_document(MEDICAL_PAGE) as doc:
        width, height = doc.render(1, dpi=180).size
    assert abs(width - 1488) <= 1 and abs(height - 2105) <= 1


# --------------------------------------------------------------------------- passwords


def encrypted_pdf(tmp_path: Path) -> Path:
    data = make_pdf_bytes(
        pages=2, encryption=fitz.PDF_ENCRYPT_AES_256, user_pw="sesame", owner_pw="owner"
    )
    return write(tmp_path / "secret.pdf", data)


def test_encrypted_pdf_without_password(tmp_path: Path) -> None:
    path = encrypted_pdf(tmp_path)
    with pytest.raises(PasswordRequiredError) as caught:
        open_document(path)
    message = str(caught.value)
    assert "secret.pdf" in message and "encrypted" in message and "--password" in message


def test_encrypted_pdf_with_wrong_password(tmp_path: Path) -> None:
    with pytest.raises(PasswordRequiredError, match="wrong password"):
        open_document(encrypted_pdf(tmp_path), password="nope")


def test_encrypted_pdf_with_password(tmp_path: Path) -> None:
    with open_document(encrypted_pdf(tmp_path), password="sesame") as doc:
        assert doc.page_count == 2
        assert doc.render(2, dpi=36).mode == "RGB"


# --------------------------------------------------------------------------- images


def test_png_with_transparency_file(tmp_path: Path) -> None:
    img = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    path = write(tmp_path / "shot.png", png_bytes(img))
    with open_document(path) as doc:
        assert doc.is_image and doc.page_count == 1 and doc.format == "PNG"
        page = doc.render(1, dpi=300)  # dpi ignored for images
    assert page.mode == "RGB" and page.size == (30, 20)
    assert page.getpixel((0, 0)) == (255, 255, 255)


def test_multi_frame_tiff_every_frame_is_a_page(tmp_path: Path) -> None:
    frames = [
        Image.new("RGB", (40, 30), (255, 0, 0)),
        Image.new("L", (20, 50), 128),
        Image.new("RGBA", (10, 10), (0, 0, 255, 0)),
    ]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with open_document(path) as doc:
        assert doc.page_count == 3 and doc.is_image
        pages = [doc.render(n) for n in (3, 1, 2)]  # out of order on purpose
    assert [p.size for p in pages] == [(10, 10), (40, 30), (20, 50)]
    assert pages[0].getpixel((0, 0)) == (255, 255, 255)
    assert pages[1].getpixel((0, 0)) == (255, 0, 0)
    assert pages[2].getpixel((0, 0)) == (128, 128, 128)


def test_multi_frame_gif_every_frame_is_a_page(tmp_path: Path) -> None:
    frames = [Image.new("P", (16, 16), i) for i in range(4)]
    for frame in frames:
        frame.putpalette([c for i in range(256) for c in (i, 255 - i, 0)])
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with open_document(path) as doc:
        assert doc.page_count == 4
        assert doc.render(4).mode == "RGB"


def test_jpeg_with_exif_rotation(tmp_path: Path) -> None:
    path = write(tmp_path / "phone.jpg", _jpeg_with_orientation((40, 20), 6))
    with open_document(path) as doc:
        assert doc.page_count == 1
        assert doc.render(1).size == (20, 40)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.png", png_header_only(20_000, 10_000))
    with pytest.raises(DocumentError, match=r"image too large \(200000000 pixels, limit"):
        open_document(path)


def test_image_over_our_limit_but_under_pillows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    path = write(tmp_path / "big.png", png_bytes(Image.new("L", (100, 20))))
    with pytest.raises(DocumentError, match=r"image too large \(2000 pixels, limit 1000\)"):
        open_document(path)


def test_truncated_png_fails_at_render_with_page_error(tmp_path: Path) -> None:
    data = png_bytes(Image.effect_noise((200, 200), 50).convert("RGB"))
    path = write(tmp_path / "cut.png", data[: len(data) // 2])
    try:
        doc = open_document(path)
    except DocumentError as exc:
        assert "cut.png" in str(exc)
        return
    with doc, pytest.raises(PageRenderError) as caught:
        doc.render(1)
    assert "cut.png" in str(caught.value) and "page 1" in str(caught.value)


# --------------------------------------------------------------------------- raw bytes


def test_raw_png_bytes_get_a_clipboard_name() -> None:
    with open_document(png_bytes(Image.new("RGB", (8, 6), (1, 2, 3)))) as doc:
        assert doc.is_image and doc.page_count == 1
        assert doc.name.startswith("clipboard-") and doc.name.endswith(".png")
        assert doc.source == doc.name
        assert doc.stem == doc.name[: -len(".png")]
        assert doc.render(1).getpixel((0, 0)) == (1, 2, 3)


def test_raw_jpeg_bytes() -> None:
    with open_document(_jpeg_with_orientation((10, 10), 1)) as doc:
        assert doc.name.endswith(".jpg") and doc.format == "JPEG"


def test_raw_pdf_bytes() -> None:
    with open_document(make_pdf_bytes(pages=2)) as doc:
        assert not doc.is_image and doc.page_count == 2
        assert doc.name.endswith(".pdf")
        assert doc.render(2, dpi=72).size == (595, 842)


def test_raw_bytes_with_a_name() -> None:
    with open_document(make_pdf_bytes(pages=1), name="download.pdf") as doc:
        assert (doc.source, doc.name, doc.stem) == ("download.pdf", "download.pdf", "download")


def test_raw_svg_bytes() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="60" height="30">'
    svg += b'<rect width="60" height="30" fill="red"/></svg>'
    with open_document(svg) as doc:
        assert doc.page_count == 1 and doc.format == "SVG"
        assert doc.render(1, dpi=72).size == (60, 30)


def test_content_decides_not_the_suffix(tmp_path: Path) -> None:
    pdf_named_png = write(tmp_path / "really-a-pdf.png", make_pdf_bytes(pages=2))
    with open_document(pdf_named_png) as doc:
        assert not doc.is_image and doc.page_count == 2
    png_named_pdf = write(tmp_path / "really-a-png.pdf", png_bytes(Image.new("RGB", (3, 3))))
    with open_document(png_named_pdf) as doc:
        assert doc.is_image and doc.render(1).size == (3, 3)
    pdf_no_suffix = write(tmp_path / "scan", make_pdf_bytes(pages=1))
    with open_document(pdf_no_suffix) as doc:
        assert doc.page_count == 1


# --------------------------------------------------------------------------- failures


def test_zero_byte_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.pdf", b"")
    with pytest.raises(EmptyFileError, match=r"empty\.pdf"):
        open_document(path)


def test_zero_bytes() -> None:
    with pytest.raises(EmptyFileError):
        open_document(b"")


@pytest.mark.parametrize("suffix", [".pdf", ".png", ".epub", ".xyz", ""])
def test_garbage_file(tmp_path: Path, suffix: str, capfd: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / f"garbage{suffix}", os.urandom(3000))
    with pytest.raises(DocumentError) as caught:
        open_document(path)
    message = str(caught.value)
    assert f"garbage{suffix}" in message
    assert "Traceback" not in message and len(message) < 400
    if suffix in ("", ".xyz"):
        assert isinstance(caught.value, UnsupportedFormatError)
    assert capfd.readouterr().err == ""  # MuPDF printed nothing


def test_broken_pdf_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = make_pdf_bytes(pages=2)
    path = write(tmp_path / "broken.pdf", data[:200] + b"\x00garbage" * 50 + data[-300:])
    try:
        with open_document(path) as doc:
            for number in range(1, doc.page_count + 1):
                with contextlib.suppress(PageRenderError):
                    doc.render(number, dpi=36)
    except DocumentError as exc:
        assert "broken.pdf" in str(exc)
    assert capfd.readouterr().err == ""


def test_garbage_bytes() -> None:
    with pytest.raises(UnsupportedFormatError, match="clipboard-"):
        open_document(b"\x00\x01\x02 this is not a document" * 10)


def test_text_file_is_unsupported(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"hello, world\n")
    with pytest.raises(UnsupportedFormatError, match=r"notes\.txt.*text"):
        open_document(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no such file"):
        open_document(tmp_path / "nope.pdf")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="folder"):
        open_document(tmp_path)


# --------------------------------------------------------------------------- find_documents


def test_find_documents(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    pdf = make_pdf_bytes(pages=1)
    for name in ["b.pdf", "A.PNG", "sub/page10.png", "sub/page2.JPG", "scan.Tiff"]:
        write(folder / name, pdf)
    for name in ["notes.txt", ".hidden.pdf", ".git/x.pdf", "sub/readme.md"]:
        write(folder / name, pdf)
    odd = write(tmp_path / "odd.txt", b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.pdf"

    files, errors = find_documents([odd, folder, missing, str(folder / "b.pdf"), empty])
    rel = [p.relative_to(tmp_path).as_posix() for p in files]
    assert rel == [
        "odd.txt",
        "in/A.PNG",
        "in/b.pdf",
        "in/scan.Tiff",
        "in/sub/page2.JPG",
        "in/sub/page10.png",
    ]
    assert [(type(e), Path(e.source)) for e in errors] == [
        (DocumentError, missing),
        (DocumentError, empty),
    ]
    assert "no such file" in str(errors[0])


def test_supported_suffixes() -> None:
    assert {".pdf", ".xps", ".oxps", ".epub", ".svg", ".cbz", ".fb2"} <= SUPPORTED_SUFFIXES
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= SUPPORTED_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in SUPPORTED_SUFFIXES)


# --------------------------------------------------------------------------- threads


def test_concurrent_render_from_threads(tmp_path: Path) -> None:
    pdf_a = open_document(write(tmp_path / "a.pdf", make_pdf_bytes(pages=6)))
    pdf_b = open_document(make_pdf_bytes(pages=4, size=(300, 400)))
    frames = [Image.new("RGB", (50 + i, 40), (i * 30, 0, 0)) for i in range(5)]
    tiff_path = tmp_path / "t.tif"
    frames[0].save(tiff_path, save_all=True, append_images=frames[1:])
    tiff = open_document(tiff_path)
    docs = [pdf_a, pdf_b, tiff]
    try:
        expected = {
            (i, n): doc.render(n, dpi=72).tobytes()
            for i, doc in enumerate(docs)
            for n in range(1, doc.page_count + 1)
        }
        jobs = list(expected) * 4
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda job: docs[job[0]].render(job[1], dpi=72).tobytes(), jobs))
        assert all(g == expected[job] for g, job in zip(got, jobs, strict=True))

        async def via_to_thread() -> list[bytes]:
            tasks = [asyncio.to_thread(docs[i].render, n, 72) for i, n in jobs]
            return [img.tobytes() for img in await asyncio.gather(*tasks)]

        assert asyncio.run(via_to_thread()) == [expected[job] for job in jobs]
    finally:
        for doc in docs:
            doc.close()


# --------------------------------------------------------------------------- the corpus


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.name != "SOURCE.md")


_CORPUS_PARAMS = [pytest.param(p, id=p.name) for p in _corpus_files()] or [
    pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=f"{CORPUS} is absent"))
]

_Probe = tuple[int, str, str]  # rc (or -1 for a timeout), stdout, stderr


def _run_probe(path: Path) -> _Probe:
    try:
        done = subprocess.run(
            [sys.executable, str(PROBE), str(path), "72"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            cwd=REPO,
            env=dict(os.environ),  # started from a thread: see engine/mupdf.py's _Process
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"hung for more than {PROBE_TIMEOUT_S} s"
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def corpus_probes(request: pytest.FixtureRequest) -> Iterator[dict[Path, Future[_Probe]]]:
    """Start one probe subprocess per selected corpus file, a few at a time, in the background."""
    selected = [
        item.callspec.params["corpus_file"]
        for item in request.session.items
        if hasattr(item, "callspec") and item.callspec.params.get("corpus_file") is not None
    ]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {path: pool.submit(_run_probe, path) for path in selected}


@pytest.mark.parametrize("corpus_file", _CORPUS_PARAMS)
def test_corpus_file_opens_or_fails_cleanly(
    corpus_file: Path, corpus_probes: dict[Path, Future[_Probe]]
) -> None:
    future = corpus_probes.get(corpus_file)
    rc, stdout, stderr = future.result() if future else _run_probe(corpus_file)
    assert rc == 0, f"probe crashed or hung (rc {rc}): {stderr[-2000:]}"
    assert stderr == "", f"something was printed to stderr: {stderr[-2000:]}"
    result = json.loads(stdout.strip().splitlines()[-1])
    if result.get("ok"):
        assert result["pages"] >= 1
        assert min(result["first"]) >= 1 and min(result["last"]) >= 1
    else:
        assert result["document_error"], f"not a DocumentError: {result}"
        assert corpus_file.name in result["message"]


def test_layout_pdf_is_built_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's layout PDF is appended chunk by chunk (incremental saves), so that MuPDF never
    holds every page image of a long document at once; the file must still hold every page, in
    order, each with its own image (engine/export.py, benchmarks/results/engine-cpu.md)."""
    from ocrdesk.engine import export
    from ocrdesk.engine.results import PageResult, PageStatus

    monkeypatch.setattr(export, "LAYOUT_CHUNK_PAGES", 2)
    doc = export.DocumentExport(tmp_path / "doc", source="doc.pdf", model="m", task="t")
    for number in range(1, 6):
        shade = 40 * number
        image = Image.new("RGB", (200 + number * 10, 300), (shade, shade, shade))
        doc.add_page(PageResult(number, *image.size, PageStatus.DONE, markdown="x"), image)
    doc.add_page(PageResult(6, 0, 0, PageStatus.FAILED, error="boom"), None)
    doc.finish()
    assert not list(doc.folder.glob("*.tmp.pdf"))
    with fitz.open(doc.layout_path) as pdf:
        assert pdf.page_count == 5
        for index, page in enumerate(pdf):
            assert round(page.rect.width) == (200 + (index + 1) * 10) // 2
            assert len(page.get_images()) == 1
            shade = page.get_pixmap(dpi=10).pixel(0, 0)
            assert abs(shade[0] - 40 * (index + 1)) <= 3
    doc.finish()  # rebuilt from scratch, not appended to the previous file
    with fitz.open(doc.layout_path) as pdf:
        assert pdf.page_count == 5
