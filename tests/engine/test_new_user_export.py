"""What a new user met in the exported files (issue 11, items 20 and 21): exports that did not
follow the umask, formulas in `\\( \\)` that GitHub, Obsidian and VS Code do not render, and
sub_title blocks without `#` left as plain text. Through `ocrdesk convert` against the loopback
server."""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docx
import pytest

from ocrdesk.engine import mupdf
from ocrdesk.engine.cli import main
from ocrdesk.engine.export import MathStyle, page_markdown
from ocrdesk.engine.formats import FORMATS
from ocrdesk.engine.parser import parse
from ocrdesk.engine.results import PageResult, PageStatus
from ocrdesk.engine.sanitize import Formula, split_math
from tests.conftest import MODEL_OUTPUTS
from tests.engine.helpers import make_png
from tests.engine.test_cli import GROUNDED
from tests.fakes.openai_server import FakeOpenAIServer

MATH = (
    "<|ref|>text<|/ref|><|det|>[[100, 100, 900, 200]]<|/det|>\n"
    "Inline \\(x^2\\), display\n\\[\n\\sum_i a_i\n\\]\nand already $z$; it costs $5 or $6."
    " Code `echo $HOME` stays.\n\n"
    "<|ref|>table<|/ref|><|det|>[[100, 300, 900, 500]]<|/det|>\n"
    "<table><tr><td>\\(y\\) for $3</td></tr></table>"
)

HEADINGS = (
    "<|ref|>title<|/ref|><|det|>[[100, 20, 900, 60]]<|/det|>\nA Report\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 80, 900, 120]]<|/det|>\nMethods are described below.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[100, 140, 900, 170]]<|/det|>\nMethods\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 180, 900, 220]]<|/det|>\nWe measured.\n\n"
    "<|ref|>sub_title<|/ref|><|det|>[[100, 240, 900, 270]]<|/det|>\n## Results\n\n"
    "<|ref|>title<|/ref|><|det|>[[100, 280, 900, 320]]<|/det|>\n# Appendix"
)


def convert(tmp_path: Path, answer: str, *args: str) -> Path:
    """Convert one image whose answer is `answer`; the export folder."""
    png = make_png(tmp_path / "page.png")
    out = tmp_path / "out"
    with FakeOpenAIServer([answer]) as server:
        key = server.api_key or ""
        status = main(["convert", str(png), "-o", str(out), "--server", server.url, "-q",
                       "--api-key", key, *args])  # fmt: skip
    assert status == 0
    return out / "page"


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_exports_follow_the_umask(tmp_path: Path, umask: int) -> None:
    # Every format, default and optional: pandoc kept the 0600 of a mkstemp file (DOCX, HTML,
    # EPUB), the searchable PDF was 0644 only because MuPDF re-creates the file it saves.
    folder = convert(tmp_path, GROUNDED, "--formats", "all")
    files = [p for p in folder.rglob("*") if p.is_file()]
    names = {p.relative_to(folder).as_posix() for p in files}
    assert {f"page{f.suffix}" for f in FORMATS.values()} | {"pages/0001.json"} <= names
    modes = {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)  # 0644 under 022, 0600 under 077


def test_formulas_in_dollars_by_default_and_only_in_the_md(tmp_path: Path) -> None:
    folder = convert(tmp_path, MATH)
    md = (folder / "page.md").read_text(encoding="utf-8")
    assert "Inline $x^2$, display\n$$\n\\sum_i a_i\n$$\nand already $z$;" in md
    assert "it costs \\$5 or \\$6." in md  # a literal `$` cannot open a formula
    assert "`echo $HOME`" in md  # code is verbatim
    # In an HTML table, as the model wrote it: no viewer renders markdown math inside HTML, a
    # `\$` would show its backslash there, and MathJax/KaTeX page renderers take `\( \)`.
    assert "<td>\\(y\\) for $3</td>" in md
    assert "\\(x^2\\)" in (folder / "page.raw.mmd").read_text(encoding="utf-8")
    page = json.loads((folder / "page.json").read_text(encoding="utf-8"))["pages"][0]
    assert "\\(x^2\\)" in page["markdown"] and "costs $5" in page["markdown"]


def test_formulas_as_the_model_wrote_them_with_math_latex(tmp_path: Path) -> None:
    md = (convert(tmp_path, MATH, "--math", "latex") / "page.md").read_text(encoding="utf-8")
    assert "Inline \\(x^2\\), display\n\\[\n\\sum_i a_i\n\\]\nand already $z$;" in md
    assert "it costs $5 or $6." in md


def _formulas(text: str) -> list[tuple[str, bool]]:
    return [
        (" ".join(p.tex.split()), p.display) for p in split_math(text) if isinstance(p, Formula)
    ]


def _plain(text: str) -> str:
    return "".join(p for p in split_math(text) if isinstance(p, str))


@pytest.mark.parametrize("path", sorted(MODEL_OUTPUTS.glob("*.txt")), ids=lambda p: p.stem)
def test_dollars_keep_every_formula_and_every_character_of_real_outputs(path: Path) -> None:
    parsed = parse(path.read_text(encoding="utf-8"), 1000, 1400)
    result = PageResult(1, 1000, 1400, PageStatus.DONE, "", parsed.markdown, parsed.blocks)
    latex = page_markdown(result, MathStyle.LATEX)
    dollars = page_markdown(result, MathStyle.DOLLARS)
    assert _formulas(dollars) == _formulas(latex)
    assert _plain(dollars).replace("\\$", "$") == _plain(latex)
    outside_tables = [part.split("</table>")[-1] for part in dollars.split("<table>")]
    assert not any(
        p.source.startswith("\\")
        for part in outside_tables
        for p in split_math(part)
        if isinstance(p, Formula)
    )


def test_title_and_sub_title_blocks_are_headings_once(tmp_path: Path) -> None:
    folder = convert(tmp_path, HEADINGS)
    md = (folder / "page.md").read_text(encoding="utf-8")
    body = md.split("\n\n", 1)[1]
    assert body.splitlines() == [
        "# A Report",
        "",
        "Methods are described below.",
        "",
        "## Methods",
        "",
        "We measured.",
        "",
        "## Results",
        "",
        "# Appendix",
    ]
    page = json.loads((folder / "page.json").read_text(encoding="utf-8"))["pages"][0]
    assert page["markdown"].startswith("A Report\n")  # the model's text, as it came


def test_title_and_sub_title_blocks_are_headings_in_docx_html_and_epub(tmp_path: Path) -> None:
    # The .md's rule (mark_headings) for the pandoc formats too: they read the page markdown.
    folder = convert(tmp_path, HEADINGS, "--formats", "docx,html,epub")
    document = docx.Document(str(folder / "page.docx"))
    headings = [(p.style.name, p.text) for p in document.paragraphs if p.style is not None]
    assert [h for h in headings if h[0].startswith("Heading")] == [
        ("Heading 1", "A Report"),
        ("Heading 2", "Methods"),
        ("Heading 2", "Results"),
        ("Heading 1", "Appendix"),
    ]
    html = (folder / "page.html").read_text(encoding="utf-8")
    tags = re.findall(r"<(h[1-6])[^>]*>([^<]*)</h[1-6]>", html)
    assert [t for t in tags if t[1] != "page"] == [  # "page": the document's title
        ("h1", "A Report"),
        ("h2", "Methods"),
        ("h2", "Results"),
        ("h1", "Appendix"),
    ]
    with zipfile.ZipFile(folder / "page.epub") as epub:
        book = "".join(
            epub.read(name).decode("utf-8")
            for name in sorted(epub.namelist())
            if name.endswith(".xhtml")
        )
    assert re.search(r"<h2[^>]*>Methods</h2>", book)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("\\(a\\) and \\[b\\]", "$a$ and $$b$$"),
        ("\\(a\nb\\)", "$a b$"),  # a `$` formula holds no line break
        ("\\(a\\)\\(b\\)", "\\(a\\)$b$"),  # `$a$$b$` would read as `$$`
        ("\\(a\\)5", "\\(a\\)5"),  # `$a$5`: a closing `$` before a digit closes nothing
        ("\\(a\\\\)", "\\(a\\\\)"),  # `$a\$`: the backslash would escape the closing `$`
        ("\\( \\)", "\\( \\)"),
        ("5$ or \\$6", "5\\$ or \\$6"),  # escaped once
        ('<img alt="$5"> $', '<img alt="$5"> \\$'),  # the tag's `$` is the tag's
        ("```sh\necho $A \\(x\\)\n```\n\\(z\\)", "```sh\necho $A \\(x\\)\n```\n$z$"),
        ("`` a `$` `` $", "`` a `$` `` \\$"),
        ("<table><tr><td><table><tr><td>\\(a\\)</td></tr></table>\\(b\\)</td></tr></table>\\(c\\)",
         "<table><tr><td><table><tr><td>\\(a\\)</td></tr></table>\\(b\\)</td></tr></table>$c$"),
    ],
)  # fmt: skip
def test_dollars_where_a_dollar_would_read_otherwise(text: str, written: str) -> None:
    result = PageResult(1, 10, 10, PageStatus.DONE, "", text, [])
    assert page_markdown(result).split("\n\n", 1)[1] == written


def test_searchable_pdf_follows_the_umask_whatever_mode_mupdf_saves_with(
    tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MuPDF removes the file it saves to and makes a new one: its mode is MuPDF's, not the
    # export's rule. A save that makes it 0600 must still give the umask's mode.
    save = mupdf.write_text_layers

    def save_private(pdf: Path, pages: object, out: Path, **kw: object) -> object:
        report = save(pdf, pages, out, **kw)  # type: ignore[arg-type]
        os.chmod(out, 0o600)
        return report

    monkeypatch.setattr(mupdf, "write_text_layers", save_private)
    folder = convert(tmp_path, GROUNDED, "--formats", "searchable")
    mode = stat.S_IMODE((folder / "page.searchable.pdf").stat().st_mode)
    assert mode == 0o666 & ~umask
