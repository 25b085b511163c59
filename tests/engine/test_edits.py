"""engine/edits.py: every block operation, undone by restoring the list it was made from, the
page markdown rebuilt from blocks (equal to the parser's on every real model output), and the
edit store on disk (a new instance reads it, a kill mid-write leaves the old file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocrdesk.engine import edits
from ocrdesk.engine.edits import EditStore
from ocrdesk.engine.parser import parse
from ocrdesk.engine.results import (
    Attempt,
    Block,
    BlockSource,
    Flag,
    FlagKind,
    PageResult,
    PageStatus,
    Strategy,
)

MODEL_OUTPUTS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "model-outputs"
CORPUS_FILES = sorted(MODEL_OUTPUTS.glob("*.txt"))

RAW = (
    "<|ref|>title<|/ref|><|det|>[[100, 50, 900, 120]]<|/det|>\n# Quarterly Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 150, 900, 400]]<|/det|>\nRevenue grew steadily.\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 500, 600, 900]]<|/det|>\n"
    "<|ref|>image_caption<|/ref|><|det|>[[100, 910, 600, 950]]<|/det|>\n"
    "Figure 1.<｜end▁of▁sentence｜>"
)
W, H = 999, 1998  # one model unit is one pixel across, two down


def page(number: int = 3) -> PageResult:
    parsed = parse(RAW, W, H, f"p{number:04d}_")
    return PageResult(
        number,
        W,
        H,
        PageStatus.DONE,
        raw=RAW,
        markdown=parsed.markdown,
        blocks=parsed.blocks,
        finish_reason="stop",
        flags=[Flag(FlagKind.UNCOVERED, "a region has ink and no block", (1.0, 2.0, 3.0, 4.0))],
        attempts=[Attempt(Strategy.FIRST, RAW, "stop")],
    )


def as_saved(blocks: list[Block]) -> list[Block]:
    """Blocks as a journal or edits file gives them back: boxes to 0.1 px, like every box the
    exports write."""
    return [Block.from_json(b.to_json()) for b in blocks]


BLOCKS = as_saved(page().blocks)  # as the window reads them from the journal


def test_the_model_blocks_are_what_the_tests_below_assume() -> None:
    assert [b.label for b in BLOCKS] == ["title", "text", "image", "image_caption"]
    assert BLOCKS[1].box == (100.0, 300.0, 900.0, 800.0)
    assert all(b.source is BlockSource.MODEL for b in BLOCKS)


def test_set_text_changes_one_block_and_marks_it_edited() -> None:
    after = edits.set_text(BLOCKS, 1, "  Revenue fell.\n")
    assert after[1].text == "Revenue fell."
    assert after[1].source is BlockSource.EDITED
    assert after[1].label == "text" and after[1].boxes == BLOCKS[1].boxes
    assert after[1].confidence is None
    assert after[0] == BLOCKS[0] and after[2:] == BLOCKS[2:]
    assert BLOCKS[1].text == "Revenue grew steadily."  # the input list is not changed


def test_set_label_keeps_text_box_and_confidence() -> None:
    sure = [*BLOCKS[:1], Block("text", BLOCKS[1].boxes, BLOCKS[1].text, confidence=0.9)]
    after = edits.set_label(sure, 1, "sub_title")
    assert after[1].label == "sub_title" and after[1].source is BlockSource.EDITED
    assert after[1].text == BLOCKS[1].text and after[1].confidence == 0.9


def test_set_box_orders_corners_and_keeps_further_boxes() -> None:
    two = [Block("text", ((0, 0, 10, 10), (20, 20, 30, 30)), "two boxes")]
    after = edits.set_box(two, 0, (50.0, 80.0, 5.0, 8.0))
    assert after[0].boxes == ((5.0, 8.0, 50.0, 80.0), (20, 20, 30, 30))
    assert after[0].source is BlockSource.EDITED
    boxless = edits.set_box([Block("text", (), "no box")], 0, (1, 2, 3, 4))
    assert boxless[0].box == (1.0, 2.0, 3.0, 4.0)


def test_delete_removes_only_that_block() -> None:
    after = edits.delete(BLOCKS, 0)
    assert after == BLOCKS[1:]


def test_merge_with_next_joins_text_unions_boxes_keeps_first_label() -> None:
    after = edits.merge_with_next(BLOCKS, 0)
    assert len(after) == len(BLOCKS) - 1
    merged = after[0]
    assert merged.text == "# Quarterly Report\n\nRevenue grew steadily."
    assert merged.label == "title"
    assert merged.boxes == ((100.0, 100.0, 900.0, 800.0),)
    assert merged.source is BlockSource.EDITED
    assert after[1:] == BLOCKS[2:]
    # An image block has no text: nothing is joined to it with a blank line.
    assert edits.merge_with_next(BLOCKS, 2)[2].text == "Figure 1."
    with pytest.raises(ValueError):
        edits.merge_with_next(BLOCKS, len(BLOCKS) - 1)


def test_split_cuts_text_and_box_in_proportion() -> None:
    block = Block("text", ((10.0, 100.0, 90.0, 200.0), (0, 0, 1, 1)), "abc defghij")
    after = edits.split([block], 0, 3)
    assert [b.text for b in after] == ["abc", "defghij"]  # the space at the cut dropped
    assert after[0].boxes == ((10.0, 100.0, 90.0, 130.0),)  # 3 of 10 characters: 30% of 100 px
    assert after[1].boxes == ((10.0, 130.0, 90.0, 200.0), (0, 0, 1, 1))
    assert {b.label for b in after} == {"text"}
    assert {b.source for b in after} == {BlockSource.EDITED}
    for offset in (0, 11, 99, -1):
        with pytest.raises(ValueError):
            edits.split([block], 0, offset)
    no_box = edits.split([Block("text", (), "ab")], 0, 1)
    assert [b.boxes for b in no_box] == [(), ()]


def test_move_changes_reading_order_and_clamps() -> None:
    labels = lambda blocks: [b.label for b in blocks]  # noqa: E731
    assert labels(edits.move(BLOCKS, 1, -1)) == ["text", "title", "image", "image_caption"]
    assert labels(edits.move(BLOCKS, 1, +1)) == ["title", "image", "text", "image_caption"]
    assert edits.move(BLOCKS, 0, -1) == BLOCKS
    assert edits.move(BLOCKS, 3, +1) == BLOCKS
    assert labels(edits.move(BLOCKS, 0, 10)) == ["text", "image", "image_caption", "title"]
    assert all(b.source is BlockSource.MODEL for b in edits.move(BLOCKS, 1, 1))


@pytest.mark.parametrize(
    "operation",
    [
        lambda b: edits.set_text(b, 1, "new"),
        lambda b: edits.set_label(b, 1, "table"),
        lambda b: edits.set_box(b, 1, (1, 2, 3, 4)),
        lambda b: edits.delete(b, 1),
        lambda b: edits.merge_with_next(b, 1),
        lambda b: edits.split(b, 1, 7),
        lambda b: edits.move(b, 1, 1),
    ],
    ids=["text", "label", "box", "delete", "merge", "split", "move"],
)
def test_each_operation_is_undone_by_restoring_the_saved_blocks(
    operation: object, tmp_path: Path
) -> None:
    store = EditStore(tmp_path)
    store.save(3, BLOCKS)
    changed = operation(BLOCKS)  # type: ignore[operator]
    assert changed != BLOCKS
    store.save(3, changed)
    assert store.load(3) == as_saved(changed)
    store.save(3, BLOCKS)  # undo: the list before the step
    assert store.load(3) == BLOCKS
    store.clear(3)  # and all the way back to the model's blocks
    assert store.load(3) is None


def test_operations_refuse_a_block_that_is_not_there() -> None:
    for op in (
        lambda: edits.set_text(BLOCKS, 4, "x"),
        lambda: edits.delete(BLOCKS, -1),
        lambda: edits.move(BLOCKS, 9, 1),
    ):
        with pytest.raises(IndexError):
            op()


@pytest.mark.parametrize("path", CORPUS_FILES or [None], ids=lambda p: p.name[:2] if p else "none")
def test_markdown_from_unchanged_blocks_is_the_parsers(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"no corpus at {MODEL_OUTPUTS}")
    raw = path.read_text(encoding="utf-8")
    parsed = parse(raw, 1000, 1400, "p0007_")
    result = PageResult(7, 1000, 1400, PageStatus.DONE, raw=raw, markdown=parsed.markdown)

    def lines(text: str) -> list[str]:
        # A block's text is stripped, so the spaces before its end (a markdown line break before
        # a blank line, which shows nothing) are all that may differ.
        return [line.rstrip() for line in text.splitlines()]

    assert lines(edits.page_markdown_from_blocks(result, parsed.blocks)) == lines(parsed.markdown)


def test_markdown_links_figures_as_the_crops_are_named_and_keeps_tag_like_text() -> None:
    result = page(12)
    blocks = edits.set_text(edits.delete(BLOCKS, 0), 0, "Typed <|ref|>x<|/ref|> and <｜end｜>")
    markdown = edits.page_markdown_from_blocks(result, blocks)
    assert markdown == (
        "Typed <|ref|>x<|/ref|> and <｜end｜>\n\n![](images/p0012_0.png)\n\nFigure 1."
    )


def test_edited_keeps_raw_attempts_and_flags() -> None:
    result = PageResult.from_json(page().to_json())  # as the journal holds it
    blocks = edits.set_text(result.blocks, 1, "Revenue fell sharply.")
    out = edits.edited(result, blocks)
    assert out.edited and not result.edited
    assert out.blocks == blocks
    assert "Revenue fell sharply." in out.markdown and "grew" not in out.markdown
    assert out.raw == RAW and out.attempts == result.attempts and out.flags == result.flags
    assert out.status is PageStatus.DONE and out.number == 3
    data = out.to_json()
    assert data["edited"] is True and data["raw"] == RAW
    assert data["blocks"][1]["source"] == "edited" and "source" not in data["blocks"][0]
    assert PageResult.from_json(data) == out
    assert "edited" not in result.to_json()


def test_a_failed_page_given_blocks_is_done() -> None:
    failed = PageResult(2, W, H, PageStatus.FAILED, error="the server went away")
    out = edits.edited(
        failed, [Block("text", ((1, 1, 50, 50),), "typed by hand", BlockSource.EDITED)]
    )
    assert out.status is PageStatus.DONE and out.markdown == "typed by hand"


def test_the_store_survives_a_new_instance_and_lists_edited_pages(tmp_path: Path) -> None:
    changed = edits.set_text(BLOCKS, 1, "Revenue fell.")
    EditStore(tmp_path).save(3, changed)
    EditStore(tmp_path).save(12, BLOCKS[:1])
    again = EditStore(tmp_path)
    assert again.load(3) == changed
    assert again.load(12) == BLOCKS[:1]
    assert again.load(4) is None
    assert again.edited_pages() == {3, 12}
    assert (tmp_path / "pages" / "0003.edits.json").is_file()
    again.clear(12)
    again.clear(99)  # nothing to clear: no error
    assert EditStore(tmp_path).edited_pages() == {3}
    assert EditStore(tmp_path / "nowhere").edited_pages() == set()


def test_an_empty_page_is_an_edit_too(tmp_path: Path) -> None:
    """Deleting every block is kept as edits (an empty list), not mistaken for no edits."""
    store = EditStore(tmp_path)
    store.save(1, [])
    assert store.load(1) == [] and store.edited_pages() == {1}


def test_a_damaged_or_foreign_file_reads_as_no_edits(tmp_path: Path) -> None:
    store = EditStore(tmp_path)
    store.save(1, BLOCKS)
    store.path(1).write_text('{"format": "ocrdesk-edits", "number": 1, "blocks": [', "utf-8")
    assert store.load(1) is None
    store.path(2).write_text(json.dumps({"blocks": []}), "utf-8")  # not an edits file
    assert store.load(2) is None
    store.save(4, BLOCKS)
    os.replace(store.path(4), store.path(5))  # page 4's edits are not page 5's
    assert store.load(5) is None


_KILLED_WRITER = """
import os, sys
from pathlib import Path
from ocrdesk.engine import edits
from ocrdesk.engine.results import Block

real_replace = os.replace
def die(src, dst):  # the new content is written in full; the process dies before it replaces
    sys.stdout.write("writing\\n"); sys.stdout.flush()
    os._exit(9)
os.replace = die
edits.EditStore(Path(sys.argv[1])).save(3, [Block("text", (), "the new text")])
"""


def test_a_kill_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    store = EditStore(tmp_path)
    store.save(3, BLOCKS)
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr
    assert done.stdout == "writing\n"
    assert EditStore(tmp_path).load(3) == BLOCKS
    assert EditStore(tmp_path).edited_pages() == {3}  # the writer's temporary file is no page


def test_requests_made_from_the_window_are_kept_beside_the_edits(tmp_path: Path) -> None:
    from ocrdesk.engine.edits import Asked, EditRequest

    store = EditStore(tmp_path / "doc")
    assert store.requests(2) == []
    first = EditRequest(Asked.REGION, "ocr", (10.0, 20.0, 300.0, 400.0), "<|ref|>x", "stop")
    second = EditRequest(Asked.PAGE, "free", None, "Whole page.", "length")
    store.add_request(2, first)
    store.add_request(2, second)
    again = EditStore(tmp_path / "doc")  # as a new session reads them
    assert again.requests(2) == [first, second]
    assert again.requests(1) == []
    # they are no edits and no journal entries
    assert again.edited_pages() == set()
    assert store.requests_path(2).name == "0002.requests.json"
    store.requests_path(2).write_text("{not json", encoding="utf-8")
    assert again.requests(2) == []  # a damaged file reads as none, never as a crash


def test_pages_marked_reviewed_are_kept_with_the_export(tmp_path: Path) -> None:
    store = EditStore(tmp_path / "doc")
    assert store.reviewed() == set()
    assert store.set_reviewed(3, True) == {3}
    assert store.set_reviewed(1, True) == {1, 3}
    assert EditStore(tmp_path / "doc").reviewed() == {1, 3}  # as the next session reads it
    assert store.set_reviewed(3, False) == {1}
    assert store.edited_pages() == set()  # a mark is no edit
    store.reviewed_path.write_text("[1, 2", encoding="utf-8")
    assert store.reviewed() == set()  # a damaged file is no marks, never a crash
