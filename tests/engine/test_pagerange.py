"""Tests for engine.pagerange.parse_page_range."""

from __future__ import annotations

import pytest

from ocrdesk.engine.errors import OCRDeskError, PageRangeError
from ocrdesk.engine.pagerange import parse_page_range


@pytest.mark.parametrize("spec", [None, "", "   ", "all", "ALL", " All "])
def test_everything(spec: str | None) -> None:
    assert parse_page_range(spec, 4) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("1", 5, [1]),
        ("1-3,7,10-", 12, [1, 2, 3, 7, 10, 11, 12]),
        ("-3", 10, [1, 2, 3]),
        ("8-", 10, [8, 9, 10]),
        (" 1 - 3 , 5 ", 10, [1, 2, 3, 5]),
        ("5,1,3,1,2-3", 10, [1, 2, 3, 5]),  # sorted and unique
        ("3-3", 10, [3]),
        ("1\u20133", 10, [1, 2, 3]),  # en dash
        ("5-99", 10, [5, 6, 7, 8, 9, 10]),  # clipped to the end
        ("2,20-30", 10, [2]),  # a part past the end adds nothing
        ("-30", 3, [1, 2, 3]),
        ("1-3", 0, []),
        ("all", 0, []),
    ],
)
def test_ranges(spec: str, count: int, expected: list[int]) -> None:
    assert parse_page_range(spec, count) == expected


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        ("0", "'0'"),
        ("0-3", "'0-3'"),
        ("3-1", "'3-1'"),
        ("a", "'a'"),
        ("1--2", "'1--2'"),
        ("1-3,x", "'x'"),
        ("1 2", "'1 2'"),
        ("-", "'-'"),
        ("1.5", "'1.5'"),
        ("-1-", "'-1-'"),
        ("1,,2", "empty part"),
        ("1,", "empty part"),
    ],
)
def test_errors_name_the_bad_part(spec: str, bad_part: str) -> None:
    with pytest.raises(PageRangeError) as caught:
        parse_page_range(spec, 10)
    assert bad_part in str(caught.value)
    assert isinstance(caught.value, OCRDeskError)
    assert isinstance(caught.value, ValueError)


def test_reversed_range_says_so() -> None:
    with pytest.raises(PageRangeError, match="backwards"):
        parse_page_range("3-1", 10)


def test_page_zero_says_pages_start_at_one() -> None:
    with pytest.raises(PageRangeError, match="counted from 1"):
        parse_page_range("0", 10)


def test_negative_page_count_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_page_range("1", -1)


@pytest.mark.parametrize(("spec", "count"), [("7-9", 3), ("20-", 10), ("15", 10), ("4,9-", 3)])
def test_a_range_that_selects_no_page_is_an_error(spec: str, count: int) -> None:
    with pytest.raises(PageRangeError, match=f"selects no page: the document has {count} pages"):
        parse_page_range(spec, count)


def test_pages_are_written_back_in_the_grammar_shortest() -> None:
    from ocrdesk.engine.pagerange import format_page_range

    assert format_page_range({1, 2, 3, 7, 9, 10}) == "1-3,7,9-10"
    assert format_page_range([5]) == "5" and format_page_range([]) == ""
    pages = [1, 4, 5, 6, 20, 21, 40]
    assert parse_page_range(format_page_range(pages), 40) == pages
