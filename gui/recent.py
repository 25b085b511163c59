"""Recent files: a most-recent-first list of absolute paths kept in QSettings, and a menu of them.

`RecentFiles` stores the list under one QSettings key. QSettings hands back a list of strings for
several values, but a plain str for a single one (INI files, and some native back ends) and None
when nothing is stored; `_load` accepts all three. `paths()` lists only files that exist now; the
stored list keeps the others (a removable drive may come back) until they fall off the end.

`RecentMenu` rebuilds its actions each time it is about to be shown, so it needs no signal from
whoever calls `RecentFiles.add`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from ocrdesk.gui.plain_text import tooltip


def _absolute(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _same(a: str, b: str) -> bool:
    return os.path.normcase(a) == os.path.normcase(b)


class RecentFiles:
    """The recent files in `q` under `key`, most recent first, at most `limit` of them."""

    def __init__(self, q: QSettings, key: str = "recent/files", limit: int = 10) -> None:
        self.q = q
        self.key = key
        self.limit = max(1, limit)

    def _load(self) -> list[str]:
        value: Any = self.q.value(self.key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value if v]
        return []

    def _save(self, paths: list[str]) -> None:
        if paths:
            self.q.setValue(self.key, paths)
        else:
            self.q.remove(self.key)

    def stored(self) -> list[str]:
        """Every stored path, existing or not, most recent first."""
        return self._load()

    def add(self, path: str | Path) -> None:
        """Put `path` (made absolute) first, dropping an earlier entry of it; keep `limit`."""
        new = _absolute(path)
        paths = [new, *(p for p in self._load() if not _same(p, new))]
        self._save(paths[: self.limit])

    def remove(self, path: str | Path) -> None:
        gone = _absolute(path)
        self._save([p for p in self._load() if not _same(p, gone)])

    def paths(self) -> list[str]:
        """The stored files that exist now, most recent first."""
        return [p for p in self._load() if os.path.isfile(p)]

    def clear(self) -> None:
        self.q.remove(self.key)


class RecentMenu(QMenu):
    """A menu of the recent files, rebuilt when shown; emits `fileChosen(path)` on a choice."""

    fileChosen = Signal(str)

    def __init__(
        self, recent: RecentFiles, parent: QWidget | None = None, title: str = "Open &Recent"
    ) -> None:
        super().__init__(title, parent)
        self.recent = recent
        self.setToolTipsVisible(True)
        self.aboutToShow.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the actions from the recent files as they are now."""
        # The old actions are detached, not deleted: one of them may be the action whose
        # `triggered` is running this (Clear). They stay children of the menu, freed with it.
        for action in self.actions():
            self.removeAction(action)
        paths = self.recent.paths()
        if not paths:
            empty = QAction("No recent files", self)
            empty.setEnabled(False)
            self.addAction(empty)
            return
        for number, path in enumerate(paths, start=1):
            name = Path(path).name.replace("&", "&&")
            text = f"&{number} {name}" if number <= 9 else name
            action = QAction(text, self)
            action.setData(path)
            action.setToolTip(tooltip(path))
            action.setStatusTip(path)
            action.triggered.connect(lambda _checked=False, p=path: self.fileChosen.emit(p))
            self.addAction(action)
        self.addSeparator()
        clear = QAction("Clear recent files", self)
        clear.setObjectName("clearRecent")
        clear.triggered.connect(self._clear)
        self.addAction(clear)

    def _clear(self) -> None:
        self.recent.clear()
        self.refresh()
