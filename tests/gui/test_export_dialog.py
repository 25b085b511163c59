"""The export dialog (gui/export_dialog.py): a checkbox for every format of the engine's registry,
the defaults checked until a person chooses, the choice remembered; and the library's export
writing the formats chosen, from a real lecture page and its real output."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog, QPushButton

from ocrdesk.engine import DEFAULT_FORMATS, FORMATS, PageResult, PageStatus, open_document
from ocrdesk.engine.parser import parse
from ocrdesk.gui.export_dialog import FORMATS_KEY, ExportChoice, ExportDialog, stored_formats
from ocrdesk.gui.library import DocItem, Library, PageState
from ocrdesk.gui.settings import Settings
from tests.conftest import CORPUS, need
from tests.gui.conftest import WAIT_SECONDS, arun

LECTURE = CORPUS / "pages" / "lecture-006.jpg"


def _checked(dialog: ExportDialog) -> tuple[str, ...]:
    return tuple(name for name, box in dialog.boxes.items() if box.isChecked())


def _ask(qtbot: Any, settings: Settings) -> tuple[ExportDialog, list[ExportChoice]]:
    chosen: list[ExportChoice] = []
    dialog = ExportDialog.ask(None, settings, chosen.append)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(dialog.isVisible, timeout=WAIT_SECONDS * 1000)
    return dialog, chosen


def test_every_registry_format_has_a_checkbox_and_the_defaults_are_checked(
    qtbot: Any, settings: Settings, tmp_path: Path
) -> None:
    dialog, _ = _ask(qtbot, settings)
    assert list(dialog.boxes) == list(FORMATS)
    for name, fmt in FORMATS.items():
        text = dialog.boxes[name].text()
        assert fmt.suffix in text and fmt.title.lower() in text.lower(), text
    assert dialog.boxes["hocr"].text() == "hOCR (.hocr)"  # the title's own capitals stay
    assert dialog.boxes["docx"].text() == "Word (.docx)"
    assert _checked(dialog) == DEFAULT_FORMATS
    assert dialog.folder_edit.text() == str(tmp_path / "out")  # the Settings output folder
    image = dialog.grab()
    assert not image.isNull() and image.width() > 300
    image.save(str(tmp_path / "export-dialog.png"))


def test_the_choice_is_given_and_remembered(qtbot: Any, settings: Settings, tmp_path: Path) -> None:
    dialog, chosen = _ask(qtbot, settings)
    target = tmp_path / "elsewhere"
    dialog.folder_edit.setText(str(target))
    dialog.boxes["layout"].click()
    dialog.boxes["docx"].click()
    dialog.boxes["hocr"].click()
    dialog.export_button.click()
    expected = ("md", "raw", "json", "searchable", "docx", "hocr")  # registry order
    assert chosen == [ExportChoice(target, expected)]
    assert not dialog.isVisible()
    assert settings.get(FORMATS_KEY) == ",".join(expected)
    # The next export starts from that choice, in a new session too; Defaults goes back.
    again = Settings(type(settings.q)(settings.q.fileName(), settings.q.format()))
    assert stored_formats(again) == expected
    second, _ = _ask(qtbot, again)
    assert _checked(second) == expected
    second.buttons.button(second.buttons.StandardButton.RestoreDefaults).click()
    assert _checked(second) == DEFAULT_FORMATS


def test_cancel_chooses_nothing_and_changes_nothing(qtbot: Any, settings: Settings) -> None:
    dialog, chosen = _ask(qtbot, settings)
    dialog.boxes["epub"].click()
    dialog.buttons.button(dialog.buttons.StandardButton.Cancel).click()
    assert chosen == [] and dialog.result() == QDialog.DialogCode.Rejected
    assert stored_formats(settings) == DEFAULT_FORMATS


def test_export_needs_a_folder_and_a_format(qtbot: Any, settings: Settings) -> None:
    dialog, chosen = _ask(qtbot, settings)
    dialog.check([])
    assert not dialog.export_button.isEnabled() and dialog.choice() is None
    QTest.keyClick(dialog, Qt.Key.Key_Return)  # Enter with nothing checked: it stays open
    assert dialog.isVisible() and chosen == []
    dialog.boxes["alto"].click()
    assert dialog.export_button.isEnabled()
    dialog.folder_edit.setText("  ")
    assert not dialog.export_button.isEnabled()
    dialog.folder_edit.setText("/tmp/x")
    QTest.keyClick(dialog, Qt.Key.Key_Return)
    assert chosen == [ExportChoice(Path("/tmp/x"), ("alto",))]


def test_browse_picks_the_folder(qtbot: Any, settings: Settings, tmp_path: Path) -> None:
    dialog, _ = _ask(qtbot, settings)
    browse = dialog.findChild(QPushButton, "export-browse")
    assert browse is not None
    browse.click()
    browser = dialog.folder_dialog
    assert browser is not None and browser.isVisible()
    browser.selectFile(str(tmp_path))
    browser.accept()
    assert dialog.folder_edit.text() == str(tmp_path)


def test_a_format_no_longer_known_is_dropped(settings: Settings) -> None:
    settings.set(FORMATS_KEY, "md,pdfa,hocr")
    assert stored_formats(settings) == ("md", "hocr")
    settings.set(FORMATS_KEY, "pdfa")
    assert stored_formats(settings) == DEFAULT_FORMATS


def _lecture_item() -> DocItem:
    """A queued document: the lecture photo, its one page finished with its real output."""
    path = need(LECTURE)
    with Image.open(path) as image:
        width, height = image.size
    raw = (path.with_suffix(".raw.txt")).read_text(encoding="utf-8")
    parsed = parse(raw, width, height)
    result = PageResult(1, width, height, PageStatus.DONE, raw, parsed.markdown)
    result.blocks = parsed.blocks
    item = DocItem(1, path.name, str(path), page_count=1, document=open_document(str(path)))
    item.pages[1] = PageState(1, PageStatus.DONE, width, height, result=result)
    return item


def test_library_export_writes_the_formats_chosen(qloop: Any, qtbot: Any, tmp_path: Path) -> None:
    library = Library(asyncio.ensure_future)
    item = _lecture_item()
    library.docs[item.id] = item
    library.order.append(item.id)
    try:
        chosen = ("md", "docx", "hocr")
        outcome = arun(qtbot, library.export([1], tmp_path / "a", "m", "markdown", chosen))
        assert outcome.problems == [] and outcome.folders == [tmp_path / "a" / "lecture-006"]
        written = {p.name for p in outcome.folders[0].iterdir() if p.is_file()}
        assert written == {f"lecture-006{FORMATS[n].suffix}" for n in chosen}
        assert ">Grundlagen</span>" in (outcome.folders[0] / "lecture-006.hocr").read_text("utf-8")
        # No choice: the registry's defaults, the searchable PDF among them.
        outcome = arun(qtbot, library.export([1], tmp_path / "b", "m", "markdown"))
        written = {p.name for p in outcome.folders[0].iterdir() if p.is_file()}
        assert written == {f"lecture-006{FORMATS[n].suffix}" for n in DEFAULT_FORMATS}
    finally:
        library.close()
