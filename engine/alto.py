"""ALTO v4 XML: the OCR's text and layout for archives (Library of Congress ALTO 4.4).

    text = alto_document(layouts, source="scan.pdf")
    tags = {}; body = "".join(alto_pages(layouts, tags))   -> the pages, the tags they use
    text = alto_head(tags, source=...) + body + ALTO_TAIL   -> the same file

Measurements are pixels (`MeasurementUnit` pixel) of each page image that was sent; one `Page`
per page, its `PrintSpace` the whole image, holding the blocks in the model's reading order:
a `TextBlock` of `TextLine`s of `String`s (with `SP` between them) as `text_layer` estimates
them; a figure is an `Illustration`, a table a `ComposedBlock` of TYPE "table" around its
`TextBlock`. Each block refers (TAGREFS) to a `LayoutTag` whose LABEL is the model's label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

from .results import Box
from .text_layer import BlockLayout, Line, PageLayout, label_role

__all__ = [
    "ALTO_NAMESPACE",
    "ALTO_SCHEMA_LOCATION",
    "ALTO_TAIL",
    "alto_document",
    "alto_head",
    "alto_pages",
]

ALTO_NAMESPACE = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA_LOCATION = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
_NOT_ID = re.compile(r"[^A-Za-z0-9_.-]")


def _position(box: Box) -> str:
    x1, y1, x2, y2 = (round(v) for v in box)
    return f'HPOS="{x1}" VPOS="{y1}" WIDTH="{max(0, x2 - x1)}" HEIGHT="{max(0, y2 - y1)}"'


#: What follows the last page.
ALTO_TAIL = "</Layout>\n</alto>\n"


def alto_document(layouts: Iterable[PageLayout], *, source: str = "") -> str:
    """The pages as one ALTO v4 document. `source` is the file name it was made from."""
    tags: dict[str, str] = {}
    body = "".join(alto_pages(layouts, tags))
    return alto_head(tags, source=source) + body + ALTO_TAIL


def alto_pages(layouts: Iterable[PageLayout], tags: dict[str, str]) -> Iterator[str]:
    """Each page's `Page` element, a layout taken as it comes; `tags` (label -> LayoutTag ID)
    gets each label the first time a block has it. The Tags come before the pages in the file,
    so a long document's pages are written aside first (see formats.py) and `alto_head` after."""
    for layout in layouts:
        for block in layout.blocks:
            if block.label not in tags:
                tags[block.label] = f"tag_{len(tags) + 1}_{_NOT_ID.sub('_', block.label)[:40]}"
        yield _page(layout, tags)


def alto_head(tags: dict[str, str], *, source: str = "") -> str:
    """Everything before the first page: the description and the `tags` of `alto_pages`."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<alto xmlns="{ALTO_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{ALTO_NAMESPACE} {ALTO_SCHEMA_LOCATION}" SCHEMAVERSION="4.4">\n',
        "<Description>\n<MeasurementUnit>pixel</MeasurementUnit>\n",
    ]
    if source:
        out.append(
            f"<sourceImageInformation><fileName>{escape(source)}</fileName>"
            "</sourceImageInformation>\n"
        )
    out.append(
        '<Processing ID="ocrdesk"><processingCategory>contentGeneration</processingCategory>'
        "<processingSoftware><softwareName>OCRDesk (DeepSeek-OCR)</softwareName>"
        "</processingSoftware></Processing>\n</Description>\n"
    )
    if tags:
        out.append("<Tags>\n")
        out.extend(
            f'<LayoutTag ID="{ident}" LABEL={quoteattr(label)}/>\n' for label, ident in tags.items()
        )
        out.append("</Tags>\n")
    out.append("<Layout>\n")
    return "".join(out)


def _page(layout: PageLayout, tags: dict[str, str]) -> str:
    n = layout.number
    size = f'WIDTH="{layout.width}" HEIGHT="{layout.height}"'
    out = [
        f'<Page ID="page_{n}" PHYSICAL_IMG_NR="{n}" {size} PROCESSINGREFS="ocrdesk">\n',
        f'<PrintSpace HPOS="0" VPOS="0" {size}>\n',
    ]
    for b, block in enumerate(layout.blocks, 1):
        out.append(_block(block, f"{n}_{b}", tags[block.label]))
    out.append("</PrintSpace>\n</Page>\n")
    return "".join(out)


def _block(block: BlockLayout, ident: str, tag: str) -> str:
    role = label_role(block.label)
    where = _position(block.box)
    if role == "figure":
        return f'<Illustration ID="block_{ident}" {where} TAGREFS="{tag}"/>\n'
    lines = "".join(_line(line, f"{ident}_{i}") for i, line in enumerate(block.lines, 1))
    text = f'<TextBlock ID="block_{ident}" {where} TAGREFS="{tag}">\n{lines}</TextBlock>\n'
    if role == "table":
        text = text.replace(f'ID="block_{ident}"', f'ID="table_{ident}"', 1)
        return (
            f'<ComposedBlock ID="block_{ident}" {where} TYPE="table" TAGREFS="{tag}">\n'
            f"{text}</ComposedBlock>\n"
        )
    return text


def _line(line: Line, ident: str) -> str:
    parts = []
    for k, word in enumerate(line.words, 1):
        if k > 1:
            parts.append("<SP/>")
        content = quoteattr(word.text)
        parts.append(f'<String ID="string_{ident}_{k}" {_position(word.box)} CONTENT={content}/>')
    return f'<TextLine ID="line_{ident}" {_position(line.box)}>{"".join(parts)}</TextLine>\n'
