"""engine/regions.py: cropping a region and mapping its boxes back, placing blocks in reading
order, cutting a page into overlapping parts and merging their blocks."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageDraw

from ocrdesk.engine.regions import (
    CROP_MARGIN,
    PART_OVERLAP,
    crop,
    drop_covered,
    insertion_index,
    joined_raw,
    map_back,
    merge_parts,
    overlapping,
    parts,
    place_blocks,
)
from ocrdesk.engine.results import Block, BlockSource, Box


def block(text: str, box: Box, label: str = "text") -> Block:
    return Block(label, (box,), text)


def texts(blocks: list[Block]) -> list[str]:
    return [b.text for b in blocks]


# crop and map_back ----------------------------------------------------------------------------


def test_a_crop_is_the_region_with_its_margin_in_page_pixels() -> None:
    page = Image.new("RGB", (1000, 800), "white")
    ImageDraw.Draw(page).rectangle((300, 200, 399, 249), fill="black")
    piece, placed = crop(page, (300.0, 200.0, 400.0, 250.0))
    grow = CROP_MARGIN * 1000  # of the longer side
    assert placed == (300 - grow, 200 - grow, 400 + grow, 250 + grow)
    assert piece.size == (100 + 2 * grow, 50 + 2 * grow)
    # the crop's pixels are the page's: its black rectangle starts `grow` pixels in
    assert piece.getpixel((int(grow), int(grow))) == (0, 0, 0)
    assert piece.getpixel((int(grow) - 1, int(grow))) == (255, 255, 255)


def test_a_crop_is_clamped_to_the_page_and_never_empty() -> None:
    page = Image.new("RGB", (500, 400), "white")
    piece, placed = crop(page, (-50.0, 380.0, 120.5, 900.0), margin=0.0)
    assert placed == (0.0, 380.0, 121.0, 400.0)
    assert piece.size == (121, 20)
    piece, placed = crop(page, (700.0, 700.0, 800.0, 800.0), margin=0.0)  # off the page
    assert piece.size == (1, 1) and placed == (499.0, 399.0, 500.0, 400.0)


def test_boxes_are_mapped_from_a_scaled_crop_to_the_page() -> None:
    # a crop at (100, 200) of 400 x 300 page pixels, sent scaled down to 200 x 150
    found = [Block("text", ((10.0, 20.0, 110.0, 70.0), (0.0, 0.0, 200.0, 150.0)), "x")]
    (back,) = map_back(found, (100.0, 200.0, 500.0, 500.0), (200, 150))
    assert back.boxes == ((120.0, 240.0, 320.0, 340.0), (100.0, 200.0, 500.0, 500.0))
    assert back.text == "x" and back.label == "text"


# overlapping, insertion_index, place_blocks ---------------------------------------------------

# A page of one column: a title and three paragraphs, 1000 x 1000 pixels.
COLUMN = [
    block("title", (100, 50, 900, 100), "title"),
    block("one", (100, 150, 900, 300)),
    block("two", (100, 350, 900, 500)),
    block("three", (100, 700, 900, 850)),
]
# Two columns under a page-wide title, read column by column.
COLUMNS = [
    block("title", (50, 30, 950, 80), "title"),
    block("L1", (50, 100, 480, 300)),
    block("L2", (50, 320, 480, 600)),
    block("R1", (520, 100, 950, 400)),
    block("R2", (520, 420, 950, 600)),
    block("footer", (50, 900, 950, 950)),
]


def test_overlapping_counts_the_share_of_a_block_inside() -> None:
    assert overlapping(COLUMN, (0, 120, 1000, 520)) == [1, 2]
    assert overlapping(COLUMN, (0, 0, 1000, 240)) == [0, 1]  # "one" is 60 % inside
    assert overlapping(COLUMN, (0, 0, 1000, 240), share=0.7) == [0]
    assert overlapping([Block("text", (), "no box")], (0, 0, 1000, 1000)) == []


def test_a_region_between_two_blocks_goes_between_them() -> None:
    assert insertion_index(COLUMN, (100, 550, 900, 650)) == 3
    assert insertion_index(COLUMN, (100, 0, 900, 40)) == 0
    assert insertion_index(COLUMN, (100, 900, 900, 990)) == 4


def test_reading_order_follows_the_columns() -> None:
    # the top of the right column: after the whole left column, before R1 (not after the title)
    assert insertion_index(COLUMNS, (520, 85, 950, 98)) == 3
    # the bottom of the left column: after L2, not before the footer
    assert insertion_index(COLUMNS, (50, 620, 480, 700)) == 3
    # the bottom of the right column: after R2
    assert insertion_index(COLUMNS, (520, 620, 950, 700)) == 5
    # a missed right part beside a table: after the table
    table = [block("table", (50, 100, 500, 600), "table"), block("after", (50, 650, 950, 800))]
    assert insertion_index(table, (520, 100, 950, 600)) == 1


def test_new_blocks_are_placed_at_their_region_in_their_own_order() -> None:
    new = [block("a", (100, 560, 900, 600)), block("b", (100, 610, 900, 650))]
    placed = place_blocks(COLUMN, new, (100, 550, 900, 660), replace=False)
    assert texts(placed) == ["title", "one", "two", "a", "b", "three"]


def test_a_region_over_blocks_can_replace_them() -> None:
    new = [block("new one", (100, 150, 900, 300)), block("new two", (100, 350, 900, 500))]
    region = (90, 140, 910, 510)
    placed = place_blocks(COLUMN, new, region, replace=True)
    assert texts(placed) == ["title", "new one", "new two", "three"]
    kept = place_blocks(COLUMN, new, region, replace=False)
    assert texts(kept) == ["title", "one", "two", "new one", "new two", "three"]


def test_blocks_a_crop_took_of_its_neighbours_are_dropped() -> None:
    new = [block("two again", (100, 480, 900, 500)), block("new", (100, 560, 900, 650))]
    assert texts(drop_covered(new, COLUMN)) == ["new"]


def test_a_region_block_that_says_what_the_page_says_or_nothing_is_dropped() -> None:
    page = [
        *COLUMN[:3],
        block("The third paragraph, boxed away from its ink.", (100, 700, 900, 850)),
    ]
    new = [
        block("The third paragraph, boxed away from its ink", (100, 560, 900, 600)),  # again
        block("", (100, 600, 900, 620), "table"),  # a box with nothing in it
        block("", (100, 620, 500, 650), "image"),  # a figure: no text is its text
        block("two", (100, 650, 900, 680)),  # short texts repeat on pages: kept
        block("A line nobody read before.", (100, 560, 900, 600)),
    ]
    kept = drop_covered(new, page)
    assert [(b.label, b.text) for b in kept] == [
        ("image", ""),
        ("text", "two"),
        ("text", "A line nobody read before."),
    ]


# parts and merge_parts ------------------------------------------------------------------------


def test_parts_are_overlapping_bands_that_cover_the_page() -> None:
    bands = parts(800, 1200)
    assert len(bands) == 3
    assert bands[0][1] == 0 and bands[-1][3] == 1200
    for upper, lower in itertools.pairwise(bands):
        assert upper[3] - lower[1] == pytest.approx(PART_OVERLAP * 1200)
        assert upper[3] - upper[1] == pytest.approx(lower[3] - lower[1])
    assert all(b[0] == 0 and b[2] == 800 for b in bands)


def test_parts_can_be_a_grid() -> None:
    grid = parts(1000, 1000, count=2, columns=2, overlap=0.1)
    assert grid == [
        (0, 0, 550, 550),
        (450, 0, 1000, 550),
        (0, 450, 550, 1000),
        (450, 450, 1000, 1000),
    ]
    with pytest.raises(ValueError):
        parts(100, 100, count=0)


def test_a_block_in_the_overlap_is_kept_once_the_fuller_copy() -> None:
    top, bottom = (0.0, 0.0, 1000.0, 530.0), (0.0, 470.0, 1000.0, 1000.0)
    first = [
        block("Alpha paragraph.", (100, 100, 900, 300)),
        # cut by the band's edge: half its box, part of its text
        block("The line in the overlap", (100, 480, 900, 530)),
    ]
    second = [
        block("The line in the overlap, whole.", (100, 480, 900, 520)),
        block("Omega paragraph.", (100, 600, 900, 800)),
    ]
    merged = merge_parts([(top, first), (bottom, second)])
    assert texts(merged) == [
        "Alpha paragraph.",
        "The line in the overlap, whole.",
        "Omega paragraph.",
    ]


def test_a_figure_in_the_overlap_is_kept_once_with_its_larger_box() -> None:
    top, bottom = (0.0, 0.0, 1000.0, 530.0), (0.0, 470.0, 1000.0, 1000.0)
    merged = merge_parts(
        [
            (top, [block("", (100, 400, 900, 530), "image")]),
            (bottom, [block("", (100, 400, 900, 700), "image")]),
        ]
    )
    assert [b.boxes for b in merged] == [((100, 400, 900, 700),)]


def test_a_paragraph_the_cut_split_is_joined() -> None:
    top, bottom = (0.0, 0.0, 1000.0, 530.0), (0.0, 470.0, 1000.0, 1000.0)
    upper = "First lines of a long paragraph. These two lines lie in the overlap of both parts. Ha"
    lower = "ese two lines lie in the overlap of both parts. And the paragraph ends here."
    merged = merge_parts(
        [
            (top, [block(upper, (100, 300, 900, 530))]),
            (bottom, [block(lower, (100, 470, 900, 700))]),
        ]
    )
    (joined,) = merged
    assert joined.text == (
        "First lines of a long paragraph. These two lines lie in the overlap of both parts. "
        "And the paragraph ends here."
    )
    assert joined.boxes == ((100, 300, 900, 700),)


def test_different_blocks_of_two_parts_are_both_kept() -> None:
    top, bottom = (0.0, 0.0, 1000.0, 530.0), (0.0, 470.0, 1000.0, 1000.0)
    merged = merge_parts(
        [
            (top, [block("A heading", (100, 480, 900, 520), "sub_title")]),
            (bottom, [block("Something else entirely, below it", (100, 500, 900, 560))]),
        ]
    )
    assert texts(merged) == ["A heading", "Something else entirely, below it"]


def test_bands_of_a_two_column_page_merge_column_by_column() -> None:
    top, bottom = (0.0, 0.0, 1000.0, 530.0), (0.0, 470.0, 1000.0, 1000.0)
    first = [
        block("title", (50, 30, 950, 80), "title"),
        block("L1", (50, 100, 480, 400)),
        block("R1", (520, 100, 950, 400)),
    ]
    second = [
        block("L2", (50, 550, 480, 800)),
        block("R2", (520, 550, 950, 800)),
        block("footer", (50, 900, 950, 950)),
    ]
    merged = merge_parts([(top, first), (bottom, second)])
    assert texts(merged) == ["title", "L1", "L2", "R1", "R2", "footer"]


# text -----------------------------------------------------------------------------------------


def test_joined_raw_marks_where_each_answer_came_from() -> None:
    raw = joined_raw([("Part 1 of 2", (0, 0, 800, 636.4), "first"), ("Region", (5, 6, 7, 8), "x")])
    assert (
        raw
        == "<--- Part 1 of 2 at [0, 0, 800, 636] --->\nfirst\n<--- Region at [5, 6, 7, 8] --->\nx"
    )


def test_region_blocks_keep_their_source_through_placing() -> None:
    new = [Block("text", ((100.0, 560.0, 900.0, 600.0),), "a", source=BlockSource.REGION)]
    placed = place_blocks(COLUMN, new, (100, 550, 900, 660), replace=False)
    assert [b.source for b in placed] == [BlockSource.MODEL] * 3 + [BlockSource.REGION] + [
        BlockSource.MODEL
    ]
