"""While a page streams, every box the window draws links to the block the final parse gives it,
also after a `<|det|>` with no coordinates (a real output: shared/corpus/model-outputs/07, see its
SOURCES.md). The streaming state is the engine's own StreamParser, kept per running page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QRectF

from ocrdesk.engine import Block, PageStatus, StreamParser, parse
from ocrdesk.gui.library import PageState
from tests.conftest import MODEL_OUTPUTS, need
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import tokenize
from tests.gui.conftest import arun, wait_until

BROKEN_DET = MODEL_OUTPUTS / "07_broken_det_and_garbage_loop.txt"
W, H = 1240, 1754


def broken_det_output() -> str:
    raw = need(BROKEN_DET).read_text(encoding="utf-8")
    assert "<|det|>\\[" in raw  # the coordinate-less tag this test is about
    return raw


def links_right(pairs: list[tuple[int, Block]], final: list[Block]) -> list[str]:
    """What is wrong with drawn (index, block) pairs against the final parse's blocks."""
    wrong = []
    for index, block in pairs:
        target = final[index] if index < len(final) else None
        if target is None or (target.label, target.boxes) != (block.label, block.boxes):
            wrong.append(f"box {block.boxes[:1]} ({block.label}) drawn as block {index}")
    return wrong


@pytest.mark.parametrize("cut", ["tokens", "characters"])
def test_each_drawn_box_links_to_its_final_block_at_every_step(cut: str) -> None:
    raw = broken_det_output()
    # The whole output token by token; its first blocks (up to the garbage loop) a character
    # at a time, so that every tag also arrives in pieces.
    pieces = tokenize(raw) if cut == "tokens" else list(raw[: raw.index("<|det|>[underline")])
    text = "".join(pieces)
    final = parse(text, W, H).blocks
    page = PageState(1, PageStatus.RUNNING, W, H, stream=StreamParser(W, H))
    drawn: list[tuple[int, Block]] = []  # what the window's page view has been given
    for step, piece in enumerate(pieces):
        drawn.extend(page.feed(piece))
        wrong = links_right(drawn, final) + links_right(page.boxed(), final)
        assert not wrong, f"after piece {step} ({piece!r}): {wrong[:3]}"
    boxed = {k for k, b in enumerate(final) if b.boxes}
    assert {k for k, _ in drawn} == boxed
    assert any(not b.boxes for b in final[: max(boxed)])  # a block without a box came first
    assert page.stream is not None and page.stream.finish().blocks == final


def test_the_window_draws_streamed_boxes_at_their_blocks(
    windows: Any, qtbot: Any, tmp_path: Path
) -> None:
    raw = broken_det_output()
    head = raw[: raw.index("<|det|>[underline")]
    controller, window = windows(head, token_delay=0.0005)
    pdf = make_pdf(tmp_path / "doc.pdf", 1)
    controller.add_paths([str(pdf)])
    arun(qtbot, wait_until(lambda: controller.order and controller.docs[controller.order[0]].pages))
    doc = controller.docs[controller.order[0]]
    window.show_page(doc.id, 1)
    checked: list[int] = []
    wrong: list[str] = []

    def check(*_: Any) -> None:  # connected after the window: it sees what was just drawn
        page = doc.pages[1]
        if not page.width or window.current != (doc.id, 1):
            return
        final = parse(head, page.width, page.height).blocks
        for item in window.page_view.boxes:
            target = final[item.index] if item.index < len(final) else None
            boxes = target.boxes if target is not None else ()
            rects = [QRectF(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
            if target is None or target.label != item.label or item.rect() not in rects:
                wrong.append(f"box {item.rect()} ({item.label}) linked to block {item.index}")
        checked.append(len(window.page_view.boxes))

    controller.pageBoxes.connect(check)
    controller.pageChanged.connect(check)
    window.run()
    arun(qtbot, wait_until(lambda: doc.pages[1].status is PageStatus.DONE, timeout=60))
    check()
    assert not wrong, wrong[:3]
    assert len(checked) > 2 and checked[-1] == sum(
        len(b.boxes) for b in parse(head, doc.pages[1].width, doc.pages[1].height).blocks
    )
