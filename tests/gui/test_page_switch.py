"""Paging through a converted document in the real window: a page's boxes never show on a blank
page before its image, and the pages beside the one shown are ready, so paging to them shows
them at once (issue 11: "page switches pass through a frame of boxes on a blank page")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrdesk.engine import PageStatus
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until

TEXT = (
    "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n# A heading\n\n"
    "<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\nWords of a page.\n"
)


def test_boxes_come_with_their_page_and_neighbours_are_ready(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = windows(TEXT)
    controller.add_paths([str(make_pdf(tmp_path / "doc.pdf", 4))])
    arun(qtbot, wait_until(lambda: controller.order and controller.docs[controller.order[0]].pages))
    doc = controller.docs[controller.order[0]]
    window.run()
    arun(qtbot, wait_until(lambda: doc.done == 4, timeout=60, what="all pages done"))
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))

    window.show_page(doc.id, 1)
    arun(qtbot, wait_until(window.page_view.has_image, what="page 1 shown"))
    assert len(window.page_view.boxes) == 2
    arun(qtbot, wait_until(lambda: window.has_image_of(doc.id, 2), what="page 2 made ready"))
    assert not window.has_image_of(doc.id, 3)

    window.show_page(doc.id, 3)  # not rendered yet
    assert not window.page_view.has_image()
    assert window.page_view.boxes == []  # no boxes on a blank page
    arun(qtbot, wait_until(window.page_view.has_image, what="page 3 shown"))
    assert len(window.page_view.boxes) == 2
    assert doc.pages[3].status is PageStatus.DONE

    window.show_page(doc.id, 2)  # beside the one shown before: at once, image and boxes
    assert window.page_view.has_image()
    assert len(window.page_view.boxes) == 2
