"""Recent files: order, de-duplication, the limit, missing files, QSettings' single-value str,
and the menu (numbered entries, full path as tip, fileChosen, Clear, the empty state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, Qt, QTextDocument

from ocrdesk.gui.recent import RecentFiles, RecentMenu


def touch(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"%PDF-1.4\n")
    return path


@pytest.fixture
def q(settings: Any) -> QSettings:
    return settings.q  # the isolated INI file of tests/gui/conftest.py


def test_add_orders_dedupes_and_limits(q: QSettings, tmp_path: Path, monkeypatch: Any) -> None:
    recent = RecentFiles(q, limit=3)
    files = [touch(tmp_path, f"doc{i}.pdf") for i in range(5)]
    for path in files:
        recent.add(path)
    assert recent.paths() == [str(files[4]), str(files[3]), str(files[2])]

    recent.add(str(files[2]))  # already there: moves to the front, no duplicate
    assert recent.paths() == [str(files[2]), str(files[4]), str(files[3])]

    monkeypatch.chdir(tmp_path)  # relative and unnormalised paths are stored absolute
    recent.add("doc3.pdf")
    recent.add(tmp_path / "sub" / ".." / "doc4.pdf")
    assert recent.paths() == [str(files[4]), str(files[3]), str(files[2])]
    assert all(Path(p).is_absolute() for p in recent.stored())


def test_missing_files_are_not_listed(q: QSettings, tmp_path: Path) -> None:
    recent = RecentFiles(q)
    kept, gone = touch(tmp_path, "kept.pdf"), touch(tmp_path, "gone.pdf")
    recent.add(kept)
    recent.add(gone)
    recent.add(tmp_path)  # a folder is not a file
    gone.unlink()
    assert recent.paths() == [str(kept)]
    assert str(gone) in recent.stored()  # kept in store: the file may come back
    recent.clear()
    assert recent.paths() == [] and recent.stored() == []
    assert q.value("recent/files") is None


def test_single_value_and_nothing_stored(q: QSettings, tmp_path: Path) -> None:
    only = touch(tmp_path, "only, with comma.pdf")
    recent = RecentFiles(q, key="files/recent")
    assert recent.paths() == []  # None from QSettings
    q.setValue("files/recent", str(only))  # a plain str, as INI files give back one value
    assert recent.paths() == [str(only)]

    # what a later session reads from an INI file that holds one path: a str, not a list
    # (in this process QSettings would serve its cached list, so the file is written here)
    plain = touch(tmp_path, "plain.pdf")
    ini = tmp_path / "written.ini"
    ini.write_text(f"[files]\nrecent={plain}\n", encoding="utf-8")
    later = QSettings(str(ini), QSettings.Format.IniFormat)
    assert isinstance(later.value("files/recent"), str)
    assert RecentFiles(later, key="files/recent").paths() == [str(plain)]
    RecentFiles(later, key="files/recent").add(only)  # and adding to it keeps both
    assert RecentFiles(later, key="files/recent").paths() == [str(only), str(plain)]

    # several paths, one with a comma, through save and reload
    recent.clear()
    recent.add(plain)
    recent.add(only)
    q.sync()
    again = QSettings(q.fileName(), QSettings.Format.IniFormat)
    assert RecentFiles(again, key="files/recent").paths() == [str(only), str(plain)]

    q.setValue("files/recent", 42)  # something else entirely: ignored
    assert recent.paths() == []


def entries(menu: RecentMenu) -> list[QAction]:
    return [a for a in menu.actions() if not a.isSeparator()]


def test_menu_lists_files_and_chooses(qapp: Any, q: QSettings, tmp_path: Path) -> None:
    recent = RecentFiles(q, limit=12)
    files = [touch(tmp_path, f"scan {i} & co.pdf") for i in range(11)]
    for path in files:
        recent.add(path)
    menu = RecentMenu(recent)
    chosen: list[str] = []
    menu.fileChosen.connect(chosen.append)
    menu.aboutToShow.emit()

    actions = entries(menu)
    assert len(actions) == 12  # 11 files and Clear
    assert actions[0].text() == "&1 scan 10 && co.pdf"
    assert actions[8].text() == "&9 scan 2 && co.pdf"
    assert actions[9].text() == "scan 1 && co.pdf"  # no accelerator past 9
    assert shown(actions[0].toolTip()) == str(files[10]) == actions[0].statusTip()
    assert actions[-1].text() == "Clear recent files"
    assert menu.actions()[-2].isSeparator()
    assert menu.title() == "Open &Recent"

    actions[2].trigger()
    assert chosen == [str(files[8])]

    # a file added since is listed the next time the menu is shown
    newest = touch(tmp_path, "newest.pdf")
    recent.add(newest)
    menu.aboutToShow.emit()
    assert entries(menu)[0].data() == str(newest)
    assert len(entries(menu)) == 13


def test_menu_clear_and_empty(qapp: Any, q: QSettings, tmp_path: Path) -> None:
    recent = RecentFiles(q)
    menu = RecentMenu(recent, title="Recent")
    assert [a.text() for a in menu.actions()] == ["No recent files"]
    assert not menu.actions()[0].isEnabled()

    recent.add(touch(tmp_path, "a.pdf"))
    menu.refresh()
    assert [a.text() for a in entries(menu)] == ["&1 a.pdf", "Clear recent files"]

    chosen: list[str] = []
    menu.fileChosen.connect(chosen.append)
    entries(menu)[-1].trigger()
    assert chosen == [] and recent.paths() == []
    assert [a.text() for a in menu.actions()] == ["No recent files"]
    assert q.value("recent/files") is None


def shown(tip: str) -> str:
    """The text a tooltip shows (Qt reads a tooltip that looks like HTML as rich text)."""
    if not Qt.mightBeRichText(tip):
        return tip
    document = QTextDocument()
    document.setHtml(tip)
    return document.toPlainText()


def test_a_file_name_that_looks_like_html_is_shown_as_it_is(settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "<b>bold<b> & <i>x.pdf"
    path.write_bytes(b"%PDF-1.4")
    recent = RecentFiles(settings.q)
    recent.add(str(path))
    menu = RecentMenu(recent)
    menu.aboutToShow.emit()
    assert shown(entries(menu)[0].toolTip()) == str(path)
