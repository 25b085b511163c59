"""The one allow-list for the model's HTML, and the one definition of where its formulas are.

The model writes markdown with HTML in it (tables with rowspan/colspan, now and then anything
else). Two places show it: the window, which renders the markdown and cleans the resulting HTML
with `clean_html` (nh3), and the exported `.md`, which stays markdown and is cleaned with
`sanitize_html`. Both keep the same tags and attributes, and the same URLs: `data:image/...` and
in-page `#anchors` only, so nothing in a result runs script or reaches the network.

`sanitize_html` works on markdown, not on HTML: it rewrites only what an HTML reader would take
for markup (tags rebuilt from the allow-list or removed, comments and declarations removed, a `<`
that opens markup never closed written `&lt;`) and leaves every other character as it was, so
`> quote`, `a < b`, `&` and the model's LaTeX (`\\( \\)`, `\\[ \\]`, `$`) stay readable in any
text editor. Inside a formula a `<` before a letter gets a space (`$a< b$`: the same TeX, no tag).
Markdown's own links and images are cleaned too: a link keeps an http(s), mailto or relative
target (else only its text), an image a relative path or `data:image/` (else only its alt text).

`split_math` finds the formulas. A formula's body never contains another `\\(`, `\\)`, `\\[`, `\\]`
nor a blank line, so one unbalanced delimiter (`\\( ... \\]`, or a `\\(` never closed) spoils at
most that formula, never its paragraph or page.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

import nh3

ALLOWED_TAGS = frozenset({
    "a", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "del",
    "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol",
    "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "u", "ul",
})  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "td": frozenset({"rowspan", "colspan", "align"}),
    "th": frozenset({"rowspan", "colspan", "align"}),
    "col": frozenset({"span"}),
    "colgroup": frozenset({"span"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "a": frozenset({"href"}),
    "ol": frozenset({"start"}),
}
# Tags whose content is code, not page text: it goes with them.
_CONTENT_TAGS = frozenset({"script", "style"})
_CLOSING = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in _CONTENT_TAGS}
_URL_ATTRIBUTES = frozenset({"src", "href"})
# Whitespace and control characters that browsers ignore inside a URL's scheme (`java\tscript:`).
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")


def url_allowed(value: str) -> bool:
    """True for the only URLs a result may hold: an inline `data:image/...` or an `#anchor`."""
    v = _URL_NOISE.sub("", html.unescape(value)).lower()
    return v.startswith("data:image/") or v.startswith("#")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr in _URL_ATTRIBUTES and not url_allowed(value):
        return None
    return value


def clean_html(fragment: str) -> str:
    """An HTML fragment with only the allowed tags and attributes: no script, style, event
    handler, comment or remote URL."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={"data"},
        link_rel=None,
        strip_comments=True,
    )


# What an HTML tokenizer takes for markup, read as a browser reads it (not only as CommonMark
# does, since a lenient viewer may render the .md as HTML): a tag runs from `<` and a letter to
# the first `>` outside quotes. One with a `<` inside is not taken for a tag (its first `<`
# becomes text), so that no scan reads past the next `<`. Every token is a maximal run with its
# own first characters: matching is linear.
_ATTR_VALUE = r"""(?:"[^"<]*"|'[^'<]*'|[^\s"'<>][^\s<>]*(?![^\s<>]))"""
_TAG = re.compile(
    r"""<(?P<close>/)?(?P<name>[A-Za-z][^\s/<>]*(?![^\s/<>]))(?P<attrs>(?:"""
    r"""[\s/]+(?![\s/])"""
    rf"""|=\s*(?:{_ATTR_VALUE}|(?=>))"""
    r"""|[^\s/<>=]+(?![^\s/<>=])"""
    r""")*)>"""
)
# Declarations, processing instructions and CDATA end at the first `>` (as browsers read them).
_BOGUS_COMMENT = re.compile(r"<[!?][^<>]*>")


class _Finder:
    """Next-match lookups for a left-to-right scan that remember their answers, so that a text
    full of openers never closed is still read in linear time."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._memo: dict[str, int] = {}

    def find(self, pattern: re.Pattern[str], start: int) -> int:
        """Where `pattern` next matches at or after `start` (-1: nowhere); `start` never
        decreases between calls for one pattern."""
        hit = self._memo.get(pattern.pattern)
        if hit is None or (hit != -1 and hit < start):
            found = pattern.search(self.text, start)
            hit = found.start() if found else -1
            self._memo[pattern.pattern] = hit
        return hit


_COMMENT_END = re.compile("-->")


def _markup_end(text: str, start: int, finder: _Finder) -> tuple[re.Match[str] | None, int]:
    """The markup that starts at text[start] == "<": (its tag match or None, its end), or
    (None, -1) when none starts there."""
    tag = _TAG.match(text, start)
    if tag:
        return tag, tag.end()
    if text.startswith("<!--", start):
        end = finder.find(_COMMENT_END, start + 4)
        if end >= 0:
            return None, end + 3
    bogus = _BOGUS_COMMENT.match(text, start)
    return (None, bogus.end()) if bogus else (None, -1)


# ---- formulas ----------------------------------------------------------------------------------

# A body holds no other bracket delimiter and no blank line.
_BODY = r"(?:(?!\\[\[\]()]|\n[ \t]*\n).)+?"
_MATH = re.compile(
    rf"\\(?P<open>[\[(])(?P<b1>{_BODY})\\[\])]"
    rf"|\$\$(?P<b2>{_BODY})\$\$"
    r"|(?<![\\$])\$(?P<b3>[^\s$](?:(?!\\[\[\]()])[^$\n])*?(?<=[^\s$]))\$(?!\d)",
    re.DOTALL,
)


class Formula(NamedTuple):
    """One formula: its TeX, whether it is display math, and its text with delimiters."""

    tex: str
    display: bool
    source: str


def _formula(match: re.Match[str]) -> Formula:
    if match.group("b1") is not None:
        tex, display = match.group("b1"), match.group("open") == "["
    elif match.group("b2") is not None:
        tex, display = match.group("b2"), True
    else:
        tex, display = match.group("b3"), False
    return Formula(tex.strip(), display, match.group(0))


def split_math(text: str) -> list[str | Formula]:
    """The text cut into plain strings and formulas, in order; joined sources give the text.

    Read left to right as a markdown reader does: a `$` inside a tag (`<img alt="$x$">`) belongs
    to the tag, a `<` inside a formula (`$a<b$`) belongs to the formula.
    """
    parts: list[str | Formula] = []
    pos = last = 0
    finder = _Finder(text)
    math = _MATH.search(text)
    while math is not None:
        lt = text.find("<", pos, math.start())
        if lt >= 0:
            end = _markup_end(text, lt, finder)[1]
            pos = end if end >= 0 else lt + 1
            if pos > math.start():
                math = _MATH.search(text, pos)
            continue
        if math.start() > last:
            parts.append(text[last : math.start()])
        parts.append(_formula(math))
        pos = last = math.end()
        math = _MATH.search(text, pos)
    if last < len(text):
        parts.append(text[last:])
    return parts


# ---- markdown with HTML ------------------------------------------------------------------------

_ATTR = re.compile(rf"""(?P<name>[^\s/>="']+)(?:\s*=\s*(?P<value>{_ATTR_VALUE}))?""")
_AUTOLINK = re.compile(
    r"<(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{1,31}):[^\s<>]*"
    r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?)>"
)
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])")
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_MD_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<text>[^\[\]\n]*)\]\(\s*(?:<(?P<d1>[^<>\n]*)>|(?P<d2>(?:[^\s()]|\([^\s()]*\))*))"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)))?\s*\)"
)
_MD_DEFINITION = re.compile(
    r"^[ ]{0,3}\[(?P<label>[^\[\]\n]+)\]:[ \t]*(?:<(?P<d1>[^<>\n]*)>|(?P<d2>\S+)).*$",
    re.MULTILINE,
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_MAX_PASSES = 8


def _rebuild_tag(match: re.Match[str]) -> str:
    name = match.group("name").lower()
    if name not in ALLOWED_TAGS:
        return ""
    if match.group("close"):
        return f"</{name}>"
    allowed = ALLOWED_ATTRIBUTES.get(name, frozenset())
    kept: dict[str, str] = {}
    for attr in _ATTR.finditer(match.group("attrs")):
        attr_name = attr.group("name").lower()
        raw = attr.group("value") or ""
        if raw[:1] in ('"', "'"):
            raw = raw[1:-1]
        value = html.unescape(raw)
        if (
            attr_name in allowed
            and attr_name not in kept
            and _attribute_filter(name, attr_name, value) is not None
        ):
            kept[attr_name] = value
    attrs = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in kept.items())
    return f"<{name}{attrs}>"


def _rewrite_autolink(match: re.Match[str]) -> str:
    # An HTML reader takes `<https:/x/onclick=...>` for a tag with attributes: write the link as
    # `[url](url)`, which markdown renders alike and which holds no `<`.
    url = match.group(0)[1:-1]
    scheme = match.group("scheme")
    if scheme is not None and scheme.lower() not in _SAFE_SCHEMES:
        return "&lt;" + match.group(0)[1:]
    destination = url if scheme is not None else "mailto:" + url
    destination = destination.replace("(", "%28").replace(")", "%29")
    return "[" + re.sub(r"([\\\[\]])", r"\\\1", url) + "](" + destination + ")"


def _clean_markup(text: str) -> str:
    """One pass over text that holds no formula: every piece of markup rebuilt or removed."""
    out: list[str] = []
    pos = 0
    finder = _Finder(text)
    while True:
        start = text.find("<", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        autolink = _AUTOLINK.match(text, start)
        if autolink:
            out.append(_rewrite_autolink(autolink))
            pos = autolink.end()
            continue
        tag, end = _markup_end(text, start, finder)
        if tag is not None:
            name = tag.group("name").lower()
            pos = end
            if name in _CONTENT_TAGS and not tag.group("close"):
                closing = finder.find(_CLOSING[name], end)
                if closing >= 0:
                    close = _TAG.match(text, closing)
                    pos = close.end() if close else closing + len(name) + 2
                    continue
            out.append(_rebuild_tag(tag))
        elif end >= 0:
            pos = end  # a comment
        else:
            # A `<` that opens markup never closed: a browser would read on into what follows.
            out.append("&lt;" if _MARKUP_START.match(text, start) else "<")
            pos = start + 1


def _link_allowed(destination: str) -> bool:
    scheme = _SCHEME.match(_URL_NOISE.sub("", html.unescape(destination)))
    return scheme is None or scheme.group(1).lower() in _SAFE_SCHEMES


def _image_allowed(destination: str) -> bool:
    plain = _URL_NOISE.sub("", html.unescape(destination))
    return url_allowed(plain) or (_SCHEME.match(plain) is None and not plain.startswith("//"))


def _clean_markdown_links(text: str) -> str:
    def link(match: re.Match[str]) -> str:
        destination = match.group("d1") if match.group("d1") is not None else match.group("d2")
        ok = _image_allowed if match.group("bang") else _link_allowed
        return match.group(0) if ok(destination or "") else match.group("text")

    def definition(match: re.Match[str]) -> str:
        destination = match.group("d1") if match.group("d1") is not None else match.group("d2")
        return match.group(0) if _link_allowed(destination or "") else ""

    return _MD_DEFINITION.sub(definition, _MD_LINK.sub(link, text))


def _defuse_formula(source: str) -> str:
    # TeX ignores a space after `<`; an HTML reader then sees no tag in `$a<b$`.
    return _MARKUP_START.sub("< ", source)


def sanitize_html(markdown: str) -> str:
    """Markdown that may hold HTML, with the same allow-list as the window applied to its HTML.

    Everything but markup stays as written; formulas stay as TeX. Idempotent.
    """
    # A removal can join what was around it into new markup (`<<b></b>img ...>`): repeat to a
    # fixed point, which by construction holds no markup but rebuilt allowed tags.
    text = markdown
    for _ in range(_MAX_PASSES):
        parts = split_math(_clean_markdown_links(text))
        cleaned = "".join(
            _defuse_formula(p.source) if isinstance(p, Formula) else _clean_markup(p) for p in parts
        )
        if cleaned == text:
            return cleaned
        text = cleaned
    # Removals kept making new markup (adversarial nesting): every `<` that could open it is text.
    return _MARKUP_START.sub("&lt;", text)
