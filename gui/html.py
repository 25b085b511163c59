"""Model output to safe HTML: markdown rendered, model HTML sanitised, LaTeX kept for KaTeX.

Each grounded block becomes `<div class="block" data-block="k" data-label="LABEL">…</div>` so the
result view can scroll to and highlight block k. Formulas are cut out before markdown sees them
(markdown would eat their backslashes) and come back as `<span class="math" data-display="0|1">`
holding the escaped TeX, which the page's script renders with the vendored KaTeX.

Model HTML is cleaned with an allow-list (nh3): no script, no style, no event handlers, and no URL
but `data:image/...` and in-page `#anchors`, so nothing in a result can reach the network.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

from ocrdesk.engine import Block

ALLOWED_TAGS = {
    "a", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "td": {"rowspan", "colspan", "align"},
    "th": {"rowspan", "colspan", "align"},
    "col": {"span"},
    "colgroup": {"span"},
    "img": {"src", "alt", "width", "height"},
    "a": {"href"},
    "ol": {"start"},
}

# \[ … \], $$ … $$, \( … \), $ … $ (a lone `$` before a digit-free space is not math).
_MATH = re.compile(
    r"\\\[(?P<d1>.+?)\\\]|\$\$(?P<d2>.+?)\$\$|\\\((?P<i1>.+?)\\\)|(?<![\\$])\$(?P<i2>[^\s$](?:[^$\n]*?[^\s$])?)\$(?!\d)",
    re.DOTALL,
)
_PLACEHOLDER = re.compile(r"OCRDESKMATH(\d+)X")
_md = MarkdownIt("commonmark", {"html": True, "breaks": False}).enable("table")


def _url_ok(value: str) -> bool:
    v = value.strip().lower()
    return v.startswith("data:image/") or v.startswith("#")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr in ("src", "href") and not _url_ok(value):
        return None
    return value


def sanitize(fragment: str) -> str:
    """Keep only allowed tags and attributes; drop scripts, handlers and remote URLs."""
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes={"data"},
        link_rel=None,
        strip_comments=True,
    )


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """Markdown (with HTML and LaTeX) to sanitised HTML with math left for KaTeX (cached: a
    streaming page re-renders only its growing last block)."""
    formulas: list[tuple[str, bool]] = []

    def cut(match: re.Match[str]) -> str:
        display = match.group("d1") is not None or match.group("d2") is not None
        tex = next(g for g in match.group("d1", "d2", "i1", "i2") if g is not None)
        formulas.append((tex.strip(), display))
        return f"OCRDESKMATH{len(formulas) - 1}X"

    protected = _MATH.sub(cut, text)
    rendered = sanitize(_md.render(protected))

    def paste(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(formulas):
            return match.group(0)
        tex, display = formulas[index]
        tag = "div" if display else "span"
        return f'<{tag} class="math" data-display="{int(display)}">{html.escape(tex)}</{tag}>'

    return _PLACEHOLDER.sub(paste, rendered)


def render_blocks(blocks: Sequence[Block], figures: dict[int, str] | None = None) -> str:
    """The page's blocks, each in a `data-block` div; `figures`: block index -> data URL."""
    parts = []
    figures = figures or {}
    for k, block in enumerate(blocks):
        label = html.escape(block.label, quote=True)
        body = render_markdown(block.text) if block.text.strip() else ""
        if block.label == "image" and k in figures:
            body = f'<img class="figure" src="{html.escape(figures[k], quote=True)}" alt="figure">'
            if block.text.strip():
                body += render_markdown(block.text)
        parts.append(f'<div class="block" data-block="{k}" data-label="{label}">{body}</div>')
    return "\n".join(parts)


def render_raw(raw: str) -> str:
    """The raw output with its tags, escaped, tags emphasised."""
    escaped = html.escape(raw)
    escaped = re.sub(
        r"(&lt;\|/?(?:ref|det|grounding)\|&gt;)", r'<span class="tag">\1</span>', escaped
    )
    return f'<pre class="raw">{escaped}</pre>'
