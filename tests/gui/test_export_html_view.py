"""The exported `<stem>.html` (engine/pandoc_formats.py) opened in the window's browser engine
(QtWebEngine): it shows its figure, formulas and merged table cells, and asks the network for
nothing (every request it makes is the file itself or data inside it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QCoreApplication, QObject, QUrl
from PySide6.QtWebEngineCore import (
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
)

from ocrdesk.engine.pandoc_formats import write_document
from tests.engine.test_pandoc_formats import PAGES
from tests.gui.conftest import WAIT_SECONDS, arun, js, wait_until


class Recorder(QWebEngineUrlRequestInterceptor):
    """Every URL the page asks for (nothing is blocked: what it would fetch is seen)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.urls: list[str] = []

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        self.urls.append(info.requestUrl().toString())


_PROFILE: tuple[QWebEngineProfile, Recorder] | None = None


def _profile() -> tuple[QWebEngineProfile, Recorder]:
    """An off-the-record profile for these tests, kept as long as the app (pages use it)."""
    global _PROFILE
    if _PROFILE is None:
        profile = QWebEngineProfile(QCoreApplication.instance())
        recorder = Recorder(profile)
        profile.setUrlRequestInterceptor(recorder)
        _PROFILE = (profile, recorder)
    return _PROFILE


class _View:
    """What `run_js` of tests/gui/conftest.js expects, over a bare page."""

    def __init__(self, page: QWebEnginePage) -> None:
        self.page = page

    def run_js(self, script: str, callback: Any) -> None:
        self.page.runJavaScript(script, 0, callback)


def test_exported_html_renders_offline_in_qtwebengine(
    qloop: Any, qtbot: Any, tmp_path: Path
) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (60, 40), "red").save(tmp_path / "images" / "p0001_0.png")
    out = tmp_path / "doc.html"
    write_document("html", PAGES, out, resource_dir=tmp_path, title="doc")
    profile, recorder = _profile()
    recorder.urls.clear()
    page = QWebEnginePage(profile)
    loaded: asyncio.Future[bool] = qloop.create_future()
    page.loadFinished.connect(lambda ok: None if loaded.done() else loaded.set_result(ok))
    page.load(QUrl.fromLocalFile(str(out)))
    try:
        assert arun(qtbot, asyncio.wait_for(loaded, WAIT_SECONDS)) is True
        view = _View(page)
        found = arun(
            qtbot,
            js(
                view,
                "(() => { try { return JSON.stringify(["
                "document.querySelectorAll('math').length,"
                " document.querySelectorAll('td[rowspan=\\'2\\'], td[colspan=\\'2\\']').length,"
                " Array.from(document.images).map(i => i.complete && i.naturalWidth),"
                " document.body.innerText.includes('Zweite Seite Ende')]);"
                " } catch (e) { return String(e); } })()",
            ),
        )
        assert found == json.dumps([3, 2, [60], True], separators=(",", ":"))
        # Only the file itself was asked for: the figure and the styles are inside it.
        arun(qtbot, wait_until(lambda: recorder.urls, what="the page's own request"))
        assert recorder.urls == [QUrl.fromLocalFile(str(out)).toString()], recorder.urls
    finally:
        page.deleteLater()
