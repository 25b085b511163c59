"""The parser on real model output (every corpus file), hand-made breakage, and random text."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrdesk.engine.parser import (
    EOS_TOKEN,
    MAX_LABEL,
    MAX_STRAY,
    StreamParser,
    parse,
    pixel_box,
    strip_tags,
)
from ocrdesk.engine.results import Block, ParsedPage

MODEL_OUTPUTS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "model-outputs"
CORPUS_FILES = sorted(MODEL_OUTPUTS.glob("*.txt"))
W, H = 1000, 1400
# A prefix no generated text contains, so links are told apart from text in markdown.
PREFIX = "§p_"
LINK = re.compile(r"!\[\]\(images/§p_\d+\.png\)")


def corpus(name_start: str) -> str:
    if not MODEL_OUTPUTS.is_dir():
        pytest.skip(f"{MODEL_OUTPUTS} is not here (the shared corpus sits beside the checkout)")
    (path,) = MODEL_OUTPUTS.glob(f"{name_start}*.txt")
    return path.read_text(encoding="utf-8")


def corpus_param() -> list[object]:
    if not CORPUS_FILES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {MODEL_OUTPUTS}"))]
    return [pytest.param(p, id=p.name[:2]) for p in CORPUS_FILES]


def kept_chars(raw: str) -> str:
    """The non-whitespace characters of `raw` outside well-formed tag syntax, in order.

    Written apart from the parser: split at the tags; a label is removed when `<|ref|>` is followed
    by text of at most MAX_LABEL characters without a newline and then `<|/ref|>`; after `<|det|>`
    a complete `[[n, n, ...], ...]` list is removed, also when a box holds at most MAX_STRAY stray
    characters among at least four numbers; every tag marker is removed.
    """
    tags = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", EOS_TOKEN)
    parts = re.split("(" + "|".join(re.escape(t) for t in tags) + ")", raw)
    coords = re.compile(r"\s*\[(?:[\s,]*\[[^\[\]]*\])*[\s,]*\]")
    out: list[str] = []
    for i in range(0, len(parts), 2):
        text = parts[i]
        before = parts[i - 1] if i else ""
        after = parts[i + 1] if i + 1 < len(parts) else ""
        is_label = len(text) <= MAX_LABEL and "\n" not in text
        if before == "<|ref|>" and after == "<|/ref|>" and is_label:
            continue
        if before == "<|det|>" and (m := coords.match(text)) and boxes_read(m.group()):
            text = text[m.end() :]
        out.append(text)
    return _nonspace("".join(out))


def boxes_read(coords: str) -> bool:
    """Whether every box of a `[[...], ...]` list is read: numbers and separators only, or at
    most MAX_STRAY other characters beside at least four numbers."""
    for content in re.findall(r"\[([^\[\]]*)\]", coords):
        numbers = re.findall(r"[0-9]+(?:\.[0-9]+)?", content)
        stray = re.sub(r"[\s,]", "", re.sub(r"[0-9]+(?:\.[0-9]+)?", "", content))
        if stray and (len(numbers) < 4 or len(stray) > MAX_STRAY):
            return False
    return True


def markdown_chars(page: ParsedPage) -> str:
    return _nonspace(LINK.sub("", page.markdown))


def _nonspace(text: str) -> str:
    """Non-whitespace characters, with the official LaTeX rewrites that markdown gets."""
    text = re.sub(r"\s+", "", text)
    return text.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:")


def stream(raw: str, cuts: list[int]) -> tuple[StreamParser, list[Block]]:
    parser = StreamParser(W, H, PREFIX)
    closed: list[Block] = []
    last = 0
    for cut in [*sorted(cuts), len(raw)]:
        closed += parser.feed(raw[last:cut])
        last = max(last, cut)
    return parser, closed


# Every corpus file


@pytest.mark.parametrize("path", corpus_param())
def test_corpus_file_keeps_all_text_and_streams_to_the_same_result(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    page = parse(raw, W, H, PREFIX)
    assert kept_chars(raw) == markdown_chars(page)
    assert "<|ref|>" not in page.markdown and "<|/det|>" not in page.markdown
    assert page.markdown == page.markdown.rstrip()
    assert "\n\n\n" not in page.markdown
    for block in page.blocks:
        assert block.text == block.text.strip()
        for x1, y1, x2, y2 in block.boxes:
            assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
    # Random-size deltas and 1-character deltas give exactly the parse of the whole.
    rng = random.Random(path.name)
    cuts = sorted(rng.randrange(len(raw) + 1) for _ in range(len(raw) // 7))
    parser, closed = stream(raw, cuts)
    assert parser.text == raw
    assert parser.finish() == page
    assert [(b.label, b.boxes) for b in closed] == [
        (b.label, b.boxes) for b in page.blocks if b.boxes
    ]
    parser, _ = stream(raw, list(range(len(raw))))
    assert parser.finish() == page


@pytest.mark.parametrize("path", corpus_param())
def test_corpus_file_snapshots_grow_towards_the_final_page(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    parser = StreamParser(W, H, PREFIX)
    previous = 0
    for i in range(0, len(raw), 97):
        parser.feed(raw[i : i + 97])
        snap = parser.snapshot()
        assert len(snap.blocks) >= previous
        previous = len(snap.blocks)
        assert "<|" not in snap.markdown  # never a tag or half a tag in the live preview
    # Every corpus file ends outside any tag, so nothing is pending at the end.
    assert parser.snapshot() == parse(raw, W, H, PREFIX)


def test_01_table_caption_and_html_table_survive() -> None:
    page = parse(corpus("01"), W, H)
    labels = [b.label for b in page.blocks]
    assert labels[0] == "text" and page.blocks[0].boxes == ()  # untagged text before the first tag
    assert page.blocks[0].text.startswith("order to compute the TED score.")
    assert labels.index("table") + 1 == labels.index("table_caption")
    assert '<table><tr><th rowspan="2"># enc-layers</th>' in page.markdown
    assert page.markdown.count("</table>") == corpus("01").count("</table>")
    caption = page.blocks[labels.index("table_caption")]
    assert caption.text.startswith("Table 1. HPO performed")
    assert "<table>" in caption.text  # the table follows the caption, up to the next tag


def test_04_out_of_range_and_reversed_box_is_clamped_and_ordered() -> None:
    page = parse(corpus("04"), W, H)
    (block,) = [b for b in page.blocks if b.text.startswith("\\[f'(x) = 3^{-x^2}")]
    assert block.label == "equation"
    x1, y1, x2, y2 = block.boxes[0]
    assert x1 == pytest.approx(465 / 999 * W) and x2 == pytest.approx(W)
    assert y1 == pytest.approx(281 / 999 * H) and y2 == pytest.approx(302 / 999 * H)


def test_07_leading_space_det_broken_det_and_garbage_loop() -> None:
    raw = corpus("07")
    page = parse(raw, W, H)
    spaced = next(
        b
        for b in page.blocks
        if b.text.startswith("\\[ \\underline{\\nabla} f = ") and "3x-5" in b.text
    )
    assert spaced.boxes[0] == pytest.approx(pixel_box([125, 264, 737, 311], W, H))
    latex = "\\[ \\underline{\\nabla} V = \\begin{bmatrix} V_{,1} \\\\ V_{,2} \\end{bmatrix}"
    no_coords = next(b for b in page.blocks if b.text.startswith(latex))
    assert no_coords.label == "equation" and no_coords.boxes == ()
    assert latex in page.markdown
    garbage = page.blocks[-1]
    assert garbage.label == "equation" and garbage.boxes == ()
    assert garbage.text.startswith("[underline[underline[underline")
    assert "[underline[underline[underline" in page.markdown
    assert "overline[[overline][||" in page.markdown
    assert len(page.markdown) > 0.95 * len(raw)


def test_08_unclosed_det_at_the_end_gives_a_zero_height_box() -> None:
    page = parse(corpus("08"), W, H)
    assert page.blocks[0].label == "text" and page.blocks[0].boxes == ()
    assert "**0** **0**" in page.blocks[0].text
    last = page.blocks[-1]
    assert last.label == "text" and last.text == ""
    assert last.boxes == (pytest.approx((0.0, 0.0, 997 / 999 * W, 0.0)),)
    assert "[[0" not in page.markdown and "<|" not in page.markdown


def test_14_pixel_conversion_matches_the_app_that_produced_it() -> None:
    page = parse(corpus("14"), 1012, 586)
    box = page.blocks[0].box
    assert box is not None
    assert box == pytest.approx((165.1, 105.6, 799.3, 162.5), abs=0.1)
    assert [int(v) for v in box] == [165, 105, 799, 162]
    assert page.blocks[0].label == "sub_title"
    assert page.blocks[0].text == "## You're browsing as a Guest"
    assert page.markdown.startswith("## You're browsing as a Guest")
    assert page.markdown.endswith("Learn more")


def test_06_repetition_loop_keeps_all_text() -> None:
    raw = corpus("06")
    page = parse(raw, W, H)
    assert page.markdown.count("\\begin{pmatrix}") == raw.count("\\begin{pmatrix}")
    assert page.markdown.endswith(raw.rstrip()[-40:])


def test_image_blocks_become_numbered_links_with_the_prefix() -> None:
    raw = corpus("12")
    page = parse(raw, W, H, "p3_")
    images = [b for b in page.blocks if b.label == "image"]
    assert len(images) == raw.count("<|ref|>image<|/ref|>") == 6
    for k in range(6):
        assert f"![](images/p3_{k}.png)" in page.markdown
    assert "![](images/p3_6.png)" not in page.markdown
    assert page.markdown.index("images/p3_0.png") < page.markdown.index("# 骨密度")


def test_image_block_without_box_counts_but_gets_no_link() -> None:
    raw = (
        "<|ref|>image<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n\n"
        "<|ref|>image<|/ref|><|det|>oops\n\n"
        "<|ref|>image<|/ref|><|det|>[[5, 6, 7, 8]]<|/det|>\n"
    )
    page = parse(raw, W, H)
    assert [b.label for b in page.blocks] == ["image"] * 3
    assert page.markdown == "![](images/0.png)\n\noops\n\n![](images/2.png)"


def test_formats_markdown_like_the_official_pipeline() -> None:
    raw = (
        "<|ref|>equation<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n\\[a \\coloneqq b \\eqqcolon c\\]"
        "\n\n\n\n  \n<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nend  \n" + EOS_TOKEN + "\n"
    )
    page = parse(raw, W, H)
    assert page.markdown == "\\[a := b =: c\\]\n\nend"
    assert page.blocks[0].text == "\\[a \\coloneqq b \\eqqcolon c\\]"  # blocks keep the raw LaTeX
    assert EOS_TOKEN not in strip_tags(raw) and strip_tags(raw).endswith("end")


def test_broken_tags_keep_their_text() -> None:
    page = parse("<|ref|>never closed\nrest of page", W, H)
    assert page.markdown == "never closed\nrest of page"
    assert page.blocks == [Block("text", (), "never closed\nrest of page")]
    page = parse("<|ref|>two\nlines<|/ref|>x", W, H)  # a label has no newline: all text
    assert page.blocks == [Block("text", (), "two\nlinesx")]
    long = "y" * (MAX_LABEL + 1)
    assert parse(f"<|ref|>{long}<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>", W, H).markdown == long
    page = parse("<|ref|>text<|/ref|><|det|>[[1, 2, 3]]<|/det|>short box", W, H)
    assert page.blocks == [Block("text", (), "short box")]
    page = parse("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4, 5]]<|/det|>x", 999, 999)
    assert page.blocks == [Block("text", ((1.0, 2.0, 3.0, 4.0),), "x")]
    page = parse("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]then text<|/det|>", 999, 999)
    assert page.blocks == [Block("text", ((1.0, 2.0, 3.0, 4.0),), "then text")]
    page = parse("<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]", 999, 999)
    assert page.blocks == [Block("text", (), "[[1, 2, 3, 4]")]
    page = parse("<|det|>[[1, 2, 3, 4], [5, 6, 7, 8]]<|/det|>two <|re", 999, 999)
    assert page.blocks == [Block("text", ((1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)), "two <|re")]
    assert parse("", W, H) == ParsedPage([], "")
    assert parse("  \n " + EOS_TOKEN, W, H) == ParsedPage([], "")


def test_empty_broken_tag_does_not_end_the_block() -> None:
    page = parse("<|ref|>title<|/ref|><|ref|><|det|>[[1, 2, 3, 4]]<|/det|>T", 999, 999)
    assert page.blocks == [Block("title", ((1.0, 2.0, 3.0, 4.0),), "T")]


def test_degenerate_box_is_kept() -> None:
    page = parse("<|ref|>text<|/ref|><|det|>[[5, 5, 5, 5]]<|/det|>", 999, 999)
    assert page.blocks == [Block("text", ((5.0, 5.0, 5.0, 5.0),), "")]


def test_pixel_box() -> None:
    assert pixel_box([1200, 281, 465, 302], 999, 1998) == (465.0, 562.0, 999.0, 604.0)
    assert pixel_box([-5, 10, 0, 0], 999, 999) == (0.0, 0.0, 0.0, 10.0)
    assert pixel_box([0, 0, 999, 999, 7], 100, 50) == (0.0, 0.0, 100.0, 50.0)
    with pytest.raises(ValueError):
        pixel_box([1, 2, 3], 10, 10)


def test_feed_reports_each_box_once_when_it_closes() -> None:
    parser = StreamParser(999, 999)
    assert parser.feed("<|ref|>title<|/ref|><|det|>[[1, 2,") == []
    snap = parser.snapshot()
    assert snap.blocks == [Block("title", (), "")] and snap.markdown == ""
    assert parser.feed(" 3, 4]]") == [Block("title", ((1.0, 2.0, 3.0, 4.0),), "")]
    assert parser.feed("<|/det|>\n# Hello") == []
    assert parser.snapshot().blocks == [Block("title", ((1.0, 2.0, 3.0, 4.0),), "# Hello")]
    assert parser.feed(" world <|de") == []
    assert parser.snapshot().markdown == "# Hello world"  # the partial tag is not shown
    assert parser.finish().markdown == "# Hello world <|de"  # but finish keeps it as text
    assert parser.feed("t|>[[5,6,7,8]]") == [Block("text", ((5.0, 6.0, 7.0, 8.0),), "")]
    assert parser.finish() == parse(parser.text, 999, 999)


def test_stray_text_among_a_boxs_numbers_is_dropped_and_the_box_read() -> None:
    # A real output (issue 11): the box used to leak into the text and the block had no box.
    raw = "<|ref|>text<|/ref|><|det|>[[44, raw 666, 501, 707]]<|/det|>\nCourse notes"
    page = parse(raw, 999, 999)
    assert page.blocks == [Block("text", ((44.0, 666.0, 501.0, 707.0),), "Course notes")]
    assert page.markdown == "Course notes"
    parser, closed = stream(raw, list(range(len(raw))))
    assert parser.finish() == parse(raw, W, H, PREFIX)
    assert [b.boxes for b in closed] == [parse(raw, W, H).blocks[0].boxes]
    # "7." ends a number; the dot is stray.
    two = parse("<|det|>[[1, 2, 3, 4.], [x5 6 7 8]]<|/det|>t", 999, 999)
    assert two.blocks == [Block("text", ((1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)), "t")]


def test_a_box_with_too_much_stray_text_or_too_few_numbers_stays_text() -> None:
    few = "<|ref|>text<|/ref|><|det|>[[44, raw 666, 501]]<|/det|>x"
    assert parse(few, W, H).blocks == [Block("text", (), "[[44, raw 666, 501]]x")]
    words = "y" * (MAX_STRAY + 1)
    many = f"<|ref|>text<|/ref|><|det|>[[1, {words} 2, 3, 4]]<|/det|>x"
    assert parse(many, W, H).blocks == [Block("text", (), f"[[1, {words} 2, 3, 4]]x")]
    # Stray text outside a box is no box either.
    outside = "<|det|>[[1, 2, 3, 4] raw]<|/det|>x"
    assert parse(outside, W, H).blocks == [Block("text", (), "[[1, 2, 3, 4] raw]x")]


def test_live_view_holds_back_an_incomplete_tag_until_it_completes() -> None:
    """While a page streams, no partial tag shows (issue 11: `[[536`, `<|det|`, `equation<|/ref`
    in the result view); each shows once complete, or as text when the stream ends without it."""
    parser = StreamParser(999, 999)
    steps = [  # (delta, the live markdown, the live raw text after it)
        ("Intro <|det|", "Intro", "Intro "),
        (">[[536", "Intro", "Intro "),
        (", 1, 540, 9]]", "Intro", "Intro <|det|>[[536, 1, 540, 9]]"),
        ("<|/det|>\n<|ref|>equation<|/ref", "Intro", "Intro <|det|>[[536, 1, 540, 9]]<|/det|>\n"),
        ("|><|det|>[[1, 2, 3, 4]]<|/det|>\n\\[x\\]", "Intro \n\n\\[x\\]", None),
    ]
    for delta, markdown, settled in steps:
        parser.feed(delta)
        assert parser.snapshot().markdown == markdown, delta
        assert parser.settled_text == (parser.text if settled is None else settled), delta
    assert [b.label for b in parser.snapshot().blocks] == ["text", "text", "equation"]
    # A tag that never completes is text once the stream ends.
    parser.feed(" <|ref|>equation<|/re")
    assert parser.snapshot().markdown == "Intro \n\n\\[x\\]"
    assert parser.settled_text == parser.text.removesuffix("<|ref|>equation<|/re")
    assert parser.finish().markdown == "Intro \n\n\\[x\\] equation<|/re"
    assert parser.finish() == parse(parser.text, 999, 999)


def test_feed_indexed_gives_each_box_the_index_of_its_final_block() -> None:
    raw = (
        "<|det|>\\[ no box \\]\n"  # a det with no coordinates: a block without a box
        "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# T\n"
        "<|ref|>text<|/ref|><|det|>[[5, 6, 7, 8], [1, 1, 2, 2]]<|/det|>\nbody"
    )
    final = parse(raw, 999, 999).blocks
    for size in (1, 3, len(raw)):
        parser = StreamParser(999, 999)
        indexed = []
        for i in range(0, len(raw), size):
            indexed += parser.feed_indexed(raw[i : i + size])
        assert [(k, b.label, b.boxes) for k, b in indexed] == [
            (k, b.label, b.boxes) for k, b in enumerate(final) if b.boxes
        ]


def test_strip_tags_on_free_ocr_and_grounded_text() -> None:
    assert strip_tags("Plain text\n\n\n\nmore" + EOS_TOKEN) == "Plain text\n\nmore"
    raw = (
        "<|ref|>image<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n"
        "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nA"
    )
    assert strip_tags(raw) == "A"


# Random text


_PIECES = [
    "<|ref|>",
    "<|/ref|>",
    "<|det|>",
    "<|/det|>",
    EOS_TOKEN,
    "<|",
    "|>",
    "<",
    "<｜",
    "[[",
    "]]",
    "[",
    "]",
    ", ",
    " ",
    "\n",
    "\n\n\n",
    "text",
    "image",
    "table",
    "[[10, 20, 30, 40]]",
    "[[1200, 5, 3, 999], [1, 2, 3, 4]]",
    "[[1, 2, 3]]",
    "[[0, 0, 997, 0]]",
    "[[44, raw 666, 501, 707]]",
    "[[1, x 2, 3]]",
    " raw ",
    "1.5",
    "7.",
    "[underline[underline",
    "\\[ x^2 \\]",
    "<table><tr><td>1</td></tr></table>",
    "Grüße 测量",
    "\\coloneqq",
    "\\eqqcolon",
]
_snippets = st.sampled_from(_PIECES)
_free = st.text(alphabet="<|/>[]., 0123456789abc\n\t｜▁", max_size=8)
_texts = st.lists(st.one_of(_snippets, _snippets, _free), max_size=40).map("".join)


@settings(max_examples=200, deadline=None)
@given(raw=_texts, data=st.data())
def test_random_text_never_raises_keeps_characters_and_streams_equally(
    raw: str, data: st.DataObject
) -> None:
    page = parse(raw, W, H, PREFIX)
    assert kept_chars(raw) == markdown_chars(page)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    parser, closed = stream(raw, cuts)
    parser.snapshot()
    assert parser.finish() == page
    assert [(b.label, b.boxes) for b in closed if b.boxes] == [
        (b.label, b.boxes) for b in page.blocks if b.boxes
    ]


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=60), width=st.integers(0, 5000), height=st.integers(0, 5000))
def test_any_string_parses_and_keeps_its_characters(raw: str, width: int, height: int) -> None:
    page = parse(raw, width, height, PREFIX)
    assert kept_chars(raw) == markdown_chars(page)
    assert EOS_TOKEN not in strip_tags(raw + EOS_TOKEN)
