"""Earlier sessions' documents, read back from their exports in the output folder.

Every export folder `OUT/<stem>/` holds `<stem>.json` (source, model, task, pages) and the page
journal `pages/NNNN.json`; a folder whose combined JSON was not written yet (the app stopped
mid-run) is read from its journal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ocrdesk.engine import PageResult


@dataclass
class HistoryEntry:
    folder: Path
    source: str
    model: str
    task: str
    results: list[PageResult]


def _read_json(folder: Path) -> HistoryEntry | None:
    path = folder / f"{folder.name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = [PageResult.from_json(p) for p in data.get("pages", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return HistoryEntry(
        folder, str(data.get("source", "")), str(data.get("model", "")), str(data.get("task", "")),
        results,
    )  # fmt: skip


def _read_journal(folder: Path) -> HistoryEntry | None:
    results: dict[int, PageResult] = {}
    model = task = ""
    for path in sorted((folder / "pages").glob("[0-9]*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            result = PageResult.from_json(data["page"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        results[result.number] = result
        model, task = str(data.get("model", "")), str(data.get("task", ""))
    if not results:
        return None
    return HistoryEntry(folder, folder.name, model, task, [results[n] for n in sorted(results)])


def read_exports(root: Path) -> list[HistoryEntry]:
    """The documents exported under `root`, oldest first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: p.stat().st_mtime)
    entries = []
    for folder in folders:
        entry = _read_json(folder) or _read_journal(folder)
        if entry is not None and entry.results:
            entries.append(entry)
    return entries
