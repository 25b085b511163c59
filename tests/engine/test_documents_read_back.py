"""The DOCX and the EPUB read back with the libraries other programs use for them: python-docx
(Word's object model: tables with merged cells, paragraphs, pictures) and EbookLib (an EPUB
reader: the book's documents in reading order), not only as zip files of XML."""

from __future__ import annotations

from pathlib import Path

import docx
import ebooklib
from ebooklib import epub

from ocrdesk.engine.pandoc_formats import write_document
from tests.engine.test_pandoc_formats import PAGES, folder  # noqa: F401  (the fixture)


def test_python_docx_reads_the_merged_table_the_pages_and_the_figure(folder: Path) -> None:  # noqa: F811
    out = folder / "doc.docx"
    write_document("docx", PAGES, out, resource_dir=folder, title="doc")
    document = docx.Document(str(out))
    (table,) = document.tables
    assert len(table.rows) == 2
    # rowspan="2": the first column's two cells are one merged cell; colspan="2": the first
    # row's two right cells are one
    assert table.cell(0, 0)._tc is table.cell(1, 0)._tc
    assert table.cell(0, 1)._tc is table.cell(0, 2)._tc
    assert table.cell(0, 0).text == "Kopf"
    assert [table.cell(1, 1).text, table.cell(1, 2).text] == ["links", "rechts"]
    text = "\n".join(p.text for p in document.paragraphs)
    assert text.index("Erste Seite") < text.index("Zweite Seite Ende") < text.index("Dritte Seite")
    assert len(document.inline_shapes) == 1  # the figure, embedded


def test_ebooklib_opens_the_epub_and_finds_every_page(folder: Path) -> None:  # noqa: F811
    out = folder / "doc.epub"
    write_document("epub", PAGES, out, resource_dir=folder, title="doc")
    book = epub.read_epub(str(out))
    assert book.get_metadata("DC", "title")[0][0] == "doc"
    spine = [book.get_item_with_id(idref) for idref, _ in book.spine]
    text = "".join(item.get_content().decode("utf-8") for item in spine if item is not None)
    positions = [
        text.index(words) for words in ("Erste Seite", "Zweite Seite Ende", "Dritte Seite")
    ]
    assert positions == sorted(positions)
    images = list(book.get_items_of_type(ebooklib.ITEM_IMAGE))
    assert len(images) == 1 and images[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
