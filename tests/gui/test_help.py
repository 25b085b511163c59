"""Help: the shortcuts dialog shows the window's own actions and keys (so it cannot drift from
them), and the About box names the version, the model, the licence and the models' pages."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow

from ocrdesk import __version__
from ocrdesk.engine import DEFAULT_MODEL, FAMILIES
from ocrdesk.gui.help import OTHER_SECTION, AboutDialog, ShortcutsDialog, shortcut_text


def _window(qtbot: Any) -> tuple[QMainWindow, dict[str, QAction]]:
    window = QMainWindow()
    qtbot.addWidget(window)
    made: dict[str, QAction] = {}

    def action(text: str, keys: str | None) -> QAction:
        made[text] = a = QAction(text, window)
        if keys:
            a.setShortcut(QKeySequence(keys))
        window.addAction(a)
        return a

    file_menu = window.menuBar().addMenu("&File")
    file_menu.addAction(action("&Open…", "Ctrl+O"))
    file_menu.addSeparator()
    file_menu.addAction(action("Open output folder", None))  # no key: not listed
    recent = file_menu.addMenu("Open &recent")
    recent.addAction(action("Clear recent", "Ctrl+Alt+R"))
    window.menuBar().addMenu("&View").addAction(action("Zoom in", "Ctrl++"))
    action("Next block", "Ctrl+Down")  # in no menu
    return window, made


def test_every_action_with_a_shortcut_is_listed_under_its_menu(qtbot: Any) -> None:
    window, _ = _window(qtbot)
    rows = ShortcutsDialog(window).rows()
    ctrl_o = QKeySequence("Ctrl+O").toString(QKeySequence.SequenceFormat.NativeText)
    assert rows[0] == ("File", "Open", ctrl_o)
    assert [(section, name) for section, name, _ in rows] == [
        ("File", "Open"),
        ("File", "Clear recent"),
        ("View", "Zoom in"),
        (OTHER_SECTION, "Next block"),
    ]


def test_a_changed_shortcut_shows_changed(qtbot: Any) -> None:
    window, made = _window(qtbot)
    made["Zoom in"].setShortcuts([QKeySequence("Ctrl+="), QKeySequence("Ctrl++")])
    made["Open output folder"].setShortcut(QKeySequence("Ctrl+Shift+O"))
    rows = {name: keys for _, name, keys in ShortcutsDialog(window).rows()}
    assert rows["Zoom in"] == shortcut_text(made["Zoom in"])
    assert ", " in rows["Zoom in"]
    assert "Open output folder" in rows


def test_the_real_window_lists_all_its_shortcuts(windows: Any, qtbot: Any) -> None:
    _, window = windows("")
    dialog = ShortcutsDialog(window)
    shown = {(name, keys) for _, name, keys in dialog.rows()}
    expected = {
        (a.text().replace("&", "").rstrip("…"), shortcut_text(a))
        for a in window.actions()
        if shortcut_text(a)
    }
    assert expected and expected <= shown
    dialog.resize(460, 640)
    dialog.grab().save("/tmp/h11-shortcuts.png")


def test_about_names_version_model_licence_and_links(qtbot: Any) -> None:
    about = AboutDialog(DEFAULT_MODEL)
    qtbot.addWidget(about)
    text = about.label.text()
    assert f"OCRDesk {__version__}" in text
    assert f"Model: <b>{DEFAULT_MODEL}</b>" in text
    assert "Licence: MIT" in text
    for spec in FAMILIES.values():
        assert f"https://github.com/{spec.hub_id}" in text
        assert f"https://huggingface.co/{spec.hub_id}" in text
    assert about.label.openExternalLinks()
    about.grab().save("/tmp/h11-about.png")
