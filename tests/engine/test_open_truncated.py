"""A cut image file is refused when it is opened (issue 11, item 21), as a broken PDF is: by the
engine, by the CLI (before any request is sent), not only when its page is run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFile

from ocrdesk.engine.cli import main
from ocrdesk.engine.documents import open_document
from ocrdesk.engine.errors import DocumentError, PageRenderError
from tests.conftest import CORPUS, need
from tests.fakes.openai_server import FakeOpenAIServer

LECTURE_PAGE = CORPUS / "pages" / "lecture-006.jpg"


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.fixture
def lecture_jpeg() -> bytes:
    return need(LECTURE_PAGE).read_bytes()


def test_truncated_images_stay_refused_by_pillow() -> None:
    import ocrdesk.engine  # noqa: F401  (importing the engine must not switch it on)

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_jpeg_file_is_refused_at_open(tmp_path: Path, lecture_jpeg: bytes) -> None:
    path = tmp_path / "lecture-cut.jpg"
    path.write_bytes(cut_in_half(lecture_jpeg))
    with pytest.raises(DocumentError) as caught:
        open_document(path)
    error = caught.value
    assert not isinstance(error, PageRenderError)  # the file, not one page of it
    assert error.source == str(path)
    assert error.reason.startswith("broken JPEG file (")
    assert "truncated" in error.reason


def test_truncated_jpeg_bytes_are_refused_at_open(lecture_jpeg: bytes) -> None:
    with pytest.raises(DocumentError, match=r"scan\.jpg: broken JPEG file \(.*truncated"):
        open_document(cut_in_half(lecture_jpeg), name="scan.jpg")


def test_whole_jpeg_still_opens_and_renders(tmp_path: Path, lecture_jpeg: bytes) -> None:
    path = tmp_path / "lecture.jpg"
    path.write_bytes(lecture_jpeg)
    with open_document(path) as doc:
        assert doc.page_count == 1
        page = doc.render(1)
        assert page.mode == "RGB" and page.size == Image.open(path).size


def test_multi_frame_tiff_with_a_cut_last_frame_names_the_frame() -> None:
    frames = [Image.effect_noise((300, 200), 40 + 20 * k).convert("L") for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    last: Any = Image.open(io.BytesIO(data))  # a TiffImageFile: its tags are untyped
    last.seek(2)
    (start,), (length,) = last.tag_v2[273], last.tag_v2[279]  # frame 3's one strip
    cut = data[: start + length // 2]  # every frame's directory is there, frame 3's pixels half
    assert getattr(Image.open(io.BytesIO(cut)), "n_frames", 1) == 3
    with pytest.raises(DocumentError, match=r"scan\.tif: broken TIFF file \(frame 3 of 3: "):
        open_document(cut, name="scan.tif")


def test_cli_reports_a_truncated_jpeg_like_a_broken_pdf(
    tmp_path: Path, lecture_jpeg: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cut.jpg").write_bytes(cut_in_half(lecture_jpeg))
    (inputs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with FakeOpenAIServer() as server:
        status = main(
            [
                "convert",
                str(inputs),
                "-o",
                str(tmp_path / "out"),
                "--server",
                server.url,
                "--api-key",
                server.api_key or "",
            ]
        )
        requests = len(server.requests)
    err = capsys.readouterr().err
    assert status == 1
    assert requests == 0  # refused before any page was sent
    assert "Traceback" not in err
    cut_lines = [line for line in err.splitlines() if "cut.jpg" in line]
    pdf_lines = [line for line in err.splitlines() if "broken.pdf" in line]
    assert cut_lines and pdf_lines
    assert any("broken JPEG file" in line and "truncated" in line for line in cut_lines)
