"""Model output to safe HTML: markdown rendered, model HTML sanitised, LaTeX kept for KaTeX.

A single newline inside a block is a line break (markdown-it's `breaks`), except beside a display
formula, which stands on lines of its own anyway; a blank line starts a paragraph. A title or
sub_title block the model wrote without `#` is a heading, by the exports' rule (the engine's
`mark_headings`).

Each grounded block becomes `<div class="block" data-block="k" data-label="LABEL">…</div>` (class
"block unsure" under the triage's LOW_CONFIDENCE, tinted in result.css) so the
result view can scroll to and highlight block k. Formulas (as the engine's `split_math` finds them)
are cut out before markdown sees them (markdown would eat their backslashes) and come back as
`<span class="math" data-display="0|1">` holding the escaped TeX, which the page's script renders
with the vendored KaTeX.

Model HTML is cleaned with the engine's allow-list (`clean_html`). Formulas come back only after
that, and only into text: where markdown put one into an attribute (an image's alt text) it comes
back as its source, escaped, so a formula can never close an attribute or open a tag.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache

from markdown_it import MarkdownIt

from ocrdesk.engine import LOW_CONFIDENCE, Block, Formula, clean_html, mark_headings, split_math

# Private-use characters: the model's text cannot forge a placeholder (they are taken out first).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
# A tag of clean_html's output: its attribute values are always double-quoted.
_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')
# A block's single newlines are its lines (an address, a poem, a list of lines without bullets),
# so they render as line breaks, as the page shows them; a blank line still starts a paragraph.
_md = MarkdownIt("commonmark", {"html": True, "breaks": True}).enable("table")
# A line break beside a formula's placeholder (clean_html writes `<br>`): beside a display
# formula, which is a block of its own, it would leave an empty line.
_BREAK_BESIDE = re.compile(f"(<br\\s*/?>\\s*)?({_MARK_OPEN}(\\d+){_MARK_CLOSE})(\\s*<br\\s*/?>)?")


@lru_cache(maxsize=4096)
def render_markdown(text: str) -> str:
    """Markdown (with HTML and LaTeX) to sanitised HTML with math left for KaTeX (cached: a
    streaming page re-renders only its growing last block)."""
    formulas: list[Formula] = []
    protected = []
    for part in split_math(text.replace(_MARK_OPEN, "").replace(_MARK_CLOSE, "")):
        if isinstance(part, Formula):
            protected.append(f"{_MARK_OPEN}{len(formulas)}{_MARK_CLOSE}")
            formulas.append(part)
        else:
            protected.append(part)
    rendered = clean_html(_md.render("".join(protected)))

    def formula(index: int) -> Formula | None:
        return formulas[index] if index < len(formulas) else None

    def unbroken(match: re.Match[str]) -> str:
        found = formula(int(match.group(3)))
        if found is not None and found.display:
            return match.group(2)
        return match.group(0)

    rendered = _BREAK_BESIDE.sub(unbroken, rendered)

    def in_text(match: re.Match[str]) -> str:
        found = formula(int(match.group(1)))
        if found is None:
            return ""
        tag = "div" if found.display else "span"
        tex = html.escape(found.tex)
        return f'<{tag} class="math" data-display="{int(found.display)}">{tex}</{tag}>'

    def in_tag(match: re.Match[str]) -> str:
        found = formula(int(match.group(1)))
        return "" if found is None else html.escape(found.source, quote=True)

    out: list[str] = []
    last = 0
    for tag in _TAG.finditer(rendered):
        out.append(_PLACEHOLDER.sub(in_text, rendered[last : tag.start()]))
        out.append(_PLACEHOLDER.sub(in_tag, tag.group(0)))
        last = tag.end()
    out.append(_PLACEHOLDER.sub(in_text, rendered[last:]))
    return "".join(out)


def render_blocks(blocks: Sequence[Block], figures: dict[int, str] | None = None) -> str:
    """The page's blocks, each in a `data-block` div; `figures`: block index -> data URL."""
    parts = []
    figures = figures or {}
    for k, block in enumerate(blocks):
        label = html.escape(block.label, quote=True)
        # A title or sub_title the model wrote without `#` is a heading, as in the exports.
        body = render_markdown(mark_headings(block.text, (block,))) if block.text.strip() else ""
        if block.label == "image" and k in figures:
            body = f'<img class="figure" src="{html.escape(figures[k], quote=True)}" alt="figure">'
            if block.text.strip():
                body += render_markdown(block.text)
        classes, title = "block", ""
        if block.confidence is not None and block.confidence < LOW_CONFIDENCE:
            # the triage's low_confidence threshold: the block a person should read first
            classes += " unsure"
            sure = f"{block.confidence:.0%}"
            title = f' title="The model was unsure here ({sure} mean token probability)"'
        parts.append(
            f'<div class="{classes}" data-block="{k}" data-label="{label}"{title}>{body}</div>'
        )
    return "\n".join(parts)


def render_raw(raw: str) -> str:
    """The raw output with its tags, escaped, tags emphasised."""
    escaped = html.escape(raw)
    escaped = re.sub(
        r"(&lt;\|/?(?:ref|det|grounding)\|&gt;)", r'<span class="tag">\1</span>', escaped
    )
    return f'<pre class="raw">{escaped}</pre>'
