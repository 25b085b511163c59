"""DOCX, EPUB and one self-contained HTML file from the pages' markdown, through pandoc.

    write_document("docx", pages, out_path, resource_dir=folder, title="scan")
    html = pages_html(pages)  -> the pages as an HTML fragment (MathML), the step all go through

`pages` are (page number, markdown) in page order, the markdown as the model's cleaned output
is exported (`images/...png` links relative to `resource_dir`). pandoc comes from the
`pypandoc-binary` wheel (`available()` says whether it is there).

Why through HTML: the model writes tables as raw HTML (`<table>` with rowspan/colspan) and
formulas as LaTeX with `\\( \\)` / `\\[ \\]`. Read as markdown with `tex_math_single_backslash`
and written as HTML with MathML, both survive: pandoc parses the markdown inside the HTML table's
cells, and the HTML reader then turns the tables into real tables (merged cells kept) and the
MathML into formulas, which the DOCX writer makes native Word equations (OMML). Straight from
markdown to DOCX, pandoc drops raw `<table>`.

Each page is a `div.ocrdesk-page`; a filter turns the start of every page after the first into a
page break in DOCX, and a style sheet into `break-before: page` in HTML and EPUB. The same filter
keeps images only where they point at a file inside `resource_dir` (no URL, no absolute path, no
`..`): the files are made offline, and pandoc would fetch any URL it is given.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import export

__all__ = ["FORMATS", "PandocError", "available", "pages_html", "write_document"]

#: What `write_document` writes, by its file suffix.
FORMATS = ("docx", "html", "epub")
#: The markdown the model writes: pandoc's, with its `\( \)` and `\[ \]` formula delimiters.
# hard_line_breaks: a block's single newlines are its lines (an address, a definition over five
# lines), as the window shows them (gui/html.py); the filter drops a break beside a display
# formula, which stands on its own lines already.
_MARKDOWN = "markdown+tex_math_single_backslash+hard_line_breaks"
_PAGE_CLASS = "ocrdesk-page"

_FILTER = r"""
local first = true
local function local_path(src)
  return not (src:match("^%a[%w+.-]*:") or src:match("^[/\\]") or src:match("%.%."))
end
function Image(img)
  if local_path(img.src) then return nil end
  return pandoc.Span(img.caption)
end
local function display(el) return el and el.t == "Math" and el.mathtype == "DisplayMath" end
function Inlines(inlines)
  for i = #inlines, 1, -1 do
    if inlines[i].t == "LineBreak" and (display(inlines[i-1]) or display(inlines[i+1])) then
      inlines:remove(i)
    end
  end
  return inlines
end
function Div(div)
  if not div.classes:includes("PAGE_CLASS") then return nil end
  if first then first = false; return nil end
  if FORMAT:match("docx") then
    local br = pandoc.RawBlock("openxml", '<w:p><w:r><w:br w:type="page"/></w:r></w:p>')
    table.insert(div.content, 1, br)
    return div
  end
  return nil
end
""".replace("PAGE_CLASS", _PAGE_CLASS)

_CSS = f"""
div.{_PAGE_CLASS} + div.{_PAGE_CLASS} {{ break-before: page; page-break-before: always; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #888; padding: 0.2em 0.4em; }}
img {{ max-width: 100%; }}
"""


class PandocError(Exception):
    """pandoc is missing or failed; `reason` is a few plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pypandoc() -> Any:
    try:
        import pypandoc
    except ImportError as exc:
        raise PandocError("pandoc is not installed (pip install pypandoc-binary)") from exc
    return pypandoc


def available() -> bool:
    """Whether pandoc can be run."""
    try:
        _pypandoc().get_pandoc_version()
    except (PandocError, OSError):
        return False
    return True


def _run(pypandoc: Any, text: str, to: str, source: str, args: list[str], **kw: Any) -> str:
    try:
        out: str = pypandoc.convert_text(text, to, format=source, extra_args=args, **kw)
    except (RuntimeError, OSError) as exc:
        lines = str(exc).strip().splitlines()
        raise PandocError(f"pandoc failed ({lines[-1] if lines else type(exc).__name__})") from exc
    return out


def _markdown(pages: Sequence[tuple[int, str]]) -> str:
    parts = []
    for number, markdown in pages:
        # A fence longer than any the page may hold closes only this div.
        parts.append(f"::::::::: {{#page-{number} .{_PAGE_CLASS}}}\n\n{markdown}\n\n:::::::::\n")
    return "\n".join(parts)


def pages_html(pages: Sequence[tuple[int, str]], *, resource_dir: Path | None = None) -> str:
    """The pages as one HTML fragment: a `div.ocrdesk-page` (id `page-N`) each, formulas in
    MathML, the model's HTML tables as they were."""
    pypandoc = _pypandoc()
    with tempfile.TemporaryDirectory(prefix="ocrdesk-pandoc-") as tmp:
        lua = Path(tmp) / "ocrdesk.lua"
        lua.write_text(_FILTER, encoding="utf-8")
        args = ["--mathml", "--wrap=none", f"--lua-filter={lua}"]
        if resource_dir is not None:
            args.append(f"--resource-path={resource_dir}")
        return _run(pypandoc, _markdown(pages), "html", _MARKDOWN, args)


def write_document(
    fmt: str,
    pages: Sequence[tuple[int, str]],
    out_path: Path,
    *,
    resource_dir: Path,
    title: str = "",
) -> None:
    """Write the pages as `fmt` (one of `FORMATS`) to `out_path`, figures embedded from
    `resource_dir`. The file appears complete or not at all. Raises `PandocError`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    pypandoc = _pypandoc()
    out_path = Path(out_path)
    body = pages_html(pages, resource_dir=resource_dir)
    # pandoc writes into the file as it finds it, keeping its mode: made by the export's rule,
    # it follows the umask (a mkstemp file stayed 0600).
    fd, tmp_name = export.create_temp(out_path)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="ocrdesk-pandoc-") as tmp:
            lua, css = Path(tmp) / "ocrdesk.lua", Path(tmp) / "ocrdesk.css"
            lua.write_text(_FILTER, encoding="utf-8")
            css.write_text(_CSS, encoding="utf-8")
            args = [
                f"--resource-path={resource_dir}",
                f"--lua-filter={lua}",
                f"--metadata=title:{title or out_path.stem}",
            ]
            if fmt == "html":
                args += ["--standalone", "--embed-resources", "--mathml", f"--css={css}"]
            elif fmt == "epub":
                args += ["--mathml", f"--css={css}", "--split-level=1"]
            _run(pypandoc, body, fmt, "html", args, outputfile=tmp_name)
        os.replace(tmp_name, out_path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
