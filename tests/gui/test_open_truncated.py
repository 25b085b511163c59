"""The window refuses a cut JPEG when it is added, as it does a broken PDF (issue 11, item 21):
the row says "cannot open: broken JPEG file (...)", it has no pages, a run sends nothing for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrdesk.engine import PageStatus
from ocrdesk.gui.queue_view import progress_text
from tests.conftest import CORPUS, need
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, open_window, wait_until

LECTURE_PAGE = CORPUS / "pages" / "lecture-006.jpg"
LECTURE_RAW = CORPUS / "pages" / "lecture-006.raw.txt"


def test_cut_jpeg_shows_the_broken_file_error_like_a_pdf(
    qloop: Any, qtbot: Any, settings: Any, tmp_path: Path
) -> None:
    whole = need(LECTURE_PAGE).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 garbage")
    good = tmp_path / "good.jpg"
    good.write_bytes(whole)
    raw = need(LECTURE_RAW).read_text(encoding="utf-8")
    with FakeOpenAIServer([raw]) as server:
        controller, window = open_window(qtbot, settings, server.url)
        try:
            arun(qtbot, controller.add_paths([str(cut), str(broken), str(good)]))
            docs = {}

            def settled() -> bool:
                docs.update({controller.docs[i].name: controller.docs[i] for i in controller.order})
                return len(docs) == 3 and all(d.error or d.page_count for d in docs.values())

            arun(qtbot, wait_until(settled, what="three rows opened or refused"))
            jpeg, pdf, fine = docs["cut.jpg"], docs["broken.pdf"], docs["good.jpg"]
            assert jpeg.error is not None and pdf.error is not None and fine.error is None
            assert jpeg.error.startswith("broken JPEG file (") and "truncated" in jpeg.error
            for refused in (jpeg, pdf):
                assert progress_text(refused) == f"cannot open: {refused.error}"
                assert refused.page_count == 0 and not refused.pages
            window.run()
            arun(
                qtbot,
                wait_until(lambda: fine.pages[1].status is PageStatus.DONE, what="good page done"),
            )
            assert len(server.requests) == 1  # the good page only
            assert jpeg.error and not jpeg.pages
        finally:
            arun(qtbot, controller.close())
