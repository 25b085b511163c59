"""hOCR: the OCR's text and layout as XHTML (hOCR 1.2), page / block / paragraph / line / word.

    text = hocr_document(layouts, title="scan.pdf")  -> one XHTML file, an ocr_page per page
    for part in hocr_parts(layouts, title=...): ...  -> the same file in pieces, a page each
    text = hocr_page(layout)                         -> the same for one page (OCRmyPDF reads
                                                        the first ocr_page of a file)

Boxes are `bbox x1 y1 x2 y2` in whole pixels of the page image that was sent, lines and words
as `text_layer` estimates them. Each block is a `div` (`ocr_carea` for text, `ocr_table` for a
table, `ocr_photo` for a figure), holding one `p.ocr_par` whose lines are `span.ocr_line`, or
`ocr_header` for titles, `ocr_caption` for captions, `ocr_footer` for page footers (the classes
Tesseract writes and OCRmyPDF's hOCR reader takes), each word a `span.ocrx_word`. Every class
attribute holds exactly one class: OCRmyPDF's reader matches them whole. A block's model label
is its `x_label` property. A line's `x_size` is its estimated font size, its baseline a fifth
of that above its bottom (a common descender).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

from .results import Box
from .text_layer import BlockLayout, Line, PageLayout, label_role

__all__ = ["hocr_document", "hocr_page", "hocr_parts"]

_LINE_CLASSES = {"heading": "ocr_header", "caption": "ocr_caption", "page_footer": "ocr_footer"}
_BLOCK_CLASSES = {"table": "ocr_table", "figure": "ocr_photo"}
_DESCENDER = 0.2  # em below the baseline, for the baseline property
_NOT_WORD = re.compile(r"[^A-Za-z0-9_-]")
_CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocr_header ocr_caption ocr_footer"


def _bbox(box: Box) -> str:
    x1, y1, x2, y2 = box
    return f"bbox {round(x1)} {round(y1)} {max(round(x1), round(x2))} {max(round(y1), round(y2))}"


def hocr_document(layouts: Iterable[PageLayout], *, title: str = "", source: str = "") -> str:
    """The pages as one hOCR document. `source` names the image or document in each page's
    `image` property (optional)."""
    return "".join(hocr_parts(layouts, title=title, source=source))


def hocr_parts(
    layouts: Iterable[PageLayout], *, title: str = "", source: str = ""
) -> Iterator[str]:
    """`hocr_document` in pieces: the head, one piece per page (each layout taken as it comes),
    the end; for writing a long document to a file without holding it."""
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
        '    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
        "<head>\n"
        f"<title>{escape(title)}</title>\n"
        '<meta http-equiv="Content-Type" content="text/html; charset=utf-8"/>\n'
        '<meta name="ocr-system" content="OCRDesk (DeepSeek-OCR)"/>\n'
        f'<meta name="ocr-capabilities" content="{_CAPABILITIES}"/>\n'
        "</head>\n<body>\n"
    )
    for layout in layouts:
        yield _page(layout, source)
    yield "</body>\n</html>\n"


def hocr_page(layout: PageLayout, *, source: str = "") -> str:
    """One page as a complete hOCR document."""
    return hocr_document([layout], title=f"page {layout.number}", source=source)


def _page(layout: PageLayout, source: str) -> str:
    n = layout.number
    props = [f"bbox 0 0 {layout.width} {layout.height}", f"ppageno {n - 1}"]
    if source:
        props.insert(0, "image " + _quote_property(source))
    out = [f'<div class="ocr_page" id="page_{n}" title={quoteattr("; ".join(props))}>\n']
    for b, block in enumerate(layout.blocks, 1):
        out.append(_block(block, f"{n}_{b}"))
    out.append("</div>\n")
    return "".join(out)


def _quote_property(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(block: BlockLayout, ident: str) -> str:
    role = label_role(block.label)
    cls = _BLOCK_CLASSES.get(role, "ocr_carea")
    box = _bbox(block.box)
    title = f"{box}; x_label {_NOT_WORD.sub('_', block.label) or '_'}"
    if not block.lines:
        return f'<div class="{cls}" id="block_{ident}" title="{title}"></div>\n'
    line_class = _LINE_CLASSES.get(role, "ocr_line")
    out = [
        f'<div class="{cls}" id="block_{ident}" title="{title}">\n',
        f'<p class="ocr_par" id="par_{ident}" title="{box}">\n',
    ]
    for i, line in enumerate(block.lines, 1):
        out.append(_line(line, line_class, f"{ident}_{i}"))
    out.append("</p>\n</div>\n")
    return "".join(out)


def _line(line: Line, cls: str, ident: str) -> str:
    descent = round(line.font_size * _DESCENDER)
    title = f"{_bbox(line.box)}; baseline 0 {-descent}; x_size {line.font_size:.1f}"
    words = " ".join(
        f'<span class="ocrx_word" id="word_{ident}_{k}" title="{_bbox(word.box)}">'
        f"{escape(word.text)}</span>"
        for k, word in enumerate(line.words, 1)
    )
    return f'<span class="{cls}" id="line_{ident}" title="{title}">{words}</span>\n'
