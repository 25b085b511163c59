"""Parse page ranges such as "1-3,7,10-" into a sorted list of 1-based page numbers.

Grammar (spaces are allowed anywhere, parts are separated by commas):

    ""  / "all"     every page
    N               page N
    N-M             pages N to M (M >= N)
    N-              page N to the last page
    -M              pages 1 to M

Pages are counted from 1. Numbers past the end of the document are clipped to it, so "5-99" on a
10-page document means 5 to 10 and "2,20-" means 2; a range that selects no page of the document
at all ("7-9" of 3 pages) raises `PageRangeError`, since converting nothing is never what was
asked. Page 0, reversed ranges ("3-1"), and
anything that is not a number ("a", "1--2") raise `PageRangeError` naming the part that is wrong.
An en dash ("1–3") is read as a hyphen.
"""

from __future__ import annotations

import re

from .errors import PageRangeError

__all__ = ["format_page_range", "parse_page_range"]

_PART = re.compile(r"^(?P<start>\d+)?\s*(?P<dash>-)?\s*(?P<end>\d+)?$")


def parse_page_range(spec: str | None, page_count: int) -> list[int]:
    """Return the 1-based, sorted, unique page numbers that `spec` selects out of `page_count`."""
    if page_count < 0:
        raise ValueError(f"page_count must be >= 0, not {page_count}")
    if spec is None:
        return list(range(1, page_count + 1))
    text = spec.replace("\u2013", "-").replace("\u2014", "-").strip()
    if text == "" or text.lower() == "all":
        return list(range(1, page_count + 1))

    pages: set[int] = set()
    for raw in text.split(","):
        part = raw.strip()
        first, last = _parse_part(part, spec)
        if last is None:
            last = page_count
        last = min(last, page_count)
        pages.update(range(first, last + 1))
    if not pages and page_count:
        plural = "s" if page_count != 1 else ""
        raise PageRangeError(
            f"page range {spec!r} selects no page: the document has {page_count} page{plural}"
        )
    return sorted(pages)


def _parse_part(part: str, spec: str) -> tuple[int, int | None]:
    """Return (first, last) for one comma-separated part; last None means "to the end"."""
    if not part:
        raise PageRangeError(f"page range {spec!r}: empty part (two commas in a row?)")
    match = _PART.match(part)
    if (
        match is None
        or (match["start"] is None and match["end"] is None)
        or (match["dash"] is None and match["end"] is not None)
    ):
        raise PageRangeError(
            f"page range {spec!r}: {part!r} is not a page number or a range like 2-5"
        )
    start = int(match["start"]) if match["start"] is not None else 1
    if match["dash"] is None:
        end: int | None = start
    else:
        end = int(match["end"]) if match["end"] is not None else None
    if start == 0 or end == 0:
        raise PageRangeError(f"page range {spec!r}: {part!r}: pages are counted from 1")
    if end is not None and end < start:
        raise PageRangeError(f"page range {spec!r}: {part!r} runs backwards ({start} > {end})")
    return start, end


def format_page_range(pages: list[int] | set[int]) -> str:
    """The pages as this grammar writes them, shortest: {1, 2, 3, 7, 9, 10} -> "1-3,7,9-10"."""
    parts: list[str] = []
    run: list[int] = []
    for page in sorted(set(pages)):
        if run and page == run[-1] + 1:
            run.append(page)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [page]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)
