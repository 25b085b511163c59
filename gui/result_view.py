"""The result view: a page's markdown rendered (tables, KaTeX formulas, figures) or its raw output.

A QWebEngineView in an off-the-record profile that cannot reach the network: remote URLs are off
for local content, and a request interceptor blocks every URL that is not file:, qrc:, data:,
blob: or about:. The page is one shell (resources/result.html, its result.css and result.js, and
the vendored KaTeX; its Content-Security-Policy allows no inline script, style or handler) loaded
once; content is swapped in with JavaScript, at most `MAX_FPS` times a second while a page
streams. Block k is `[data-block="k"]`; a click on it comes back through a console message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtWebEngineCore import (
    QWebEnginePage,
    QWebEngineProfile,
    QWebEngineSettings,
    QWebEngineUrlRequestInfo,
    QWebEngineUrlRequestInterceptor,
)
from PySide6.QtWebEngineWidgets import QWebEngineView
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ocrdesk.gui.html import render_blocks, render_raw
from ocrdesk.resources import RESOURCES

log = logging.getLogger(__name__)

SHELL = RESOURCES / "result.html"
MAX_FPS = 10
#: A page switch draws a body of up to this many characters of raw output at once, on the GUI
#: thread (about 1 ms for a typical page; a 36,000-character garbage loop took 80 ms).
SWITCH_NOW_CHARS = 8000
LOADING = '<p class="empty">Loading…</p>'
LOCAL_SCHEMES = {"file", "qrc", "data", "blob", "about"}
#: Double-click (edit) and right-click (menu) on a block, reported like the shell's clicks. Run
#: from here once the shell has loaded (its policy allows no inline script; this is not one).
LISTENERS = """
["dblclick", "contextmenu"].forEach(function (kind) {
  document.addEventListener(kind, function (e) {
    var b = e.target.closest ? e.target.closest("[data-block]") : null;
    if (!b) return;
    if (kind === "contextmenu") e.preventDefault();
    console.log("ocrdesk:" + (kind === "dblclick" ? "edit" : "menu") + ":" + b.dataset.block);
  });
});
"""


def _body(raw_mode: bool, blocks: list[Any], raw: str, figures: dict[int, str]) -> str:
    """The result HTML (worker thread)."""
    return render_raw(raw) if raw_mode else render_blocks(blocks, figures)


class LocalOnly(QWebEngineUrlRequestInterceptor):
    """Blocks every request that would leave the machine; counts what it blocked."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.blocked: list[str] = []

    def interceptRequest(self, info: QWebEngineUrlRequestInfo) -> None:
        url = info.requestUrl()
        if url.scheme().lower() not in LOCAL_SCHEMES:
            self.blocked.append(url.toString())
            info.block(True)


_PROFILE: tuple[QWebEngineProfile, LocalOnly] | None = None


def shared_profile() -> tuple[QWebEngineProfile, LocalOnly]:
    """One off-the-record profile for the app (it must outlive every page that uses it)."""
    global _PROFILE
    if _PROFILE is None:
        app = QCoreApplication.instance()
        profile = QWebEngineProfile(app)  # no storage name: off the record
        interceptor = LocalOnly(profile)
        profile.setUrlRequestInterceptor(interceptor)
        _PROFILE = (profile, interceptor)
    return _PROFILE


class ResultPage(QWebEnginePage):
    """Turns the shell's console messages into signals; refuses every navigation but ours."""

    blockClicked = Signal(int)
    blockActivated = Signal(int)  # double-clicked: edit it
    blockMenu = Signal(int)  # right-clicked: its menu

    def __init__(self, profile: QWebEngineProfile, parent: QObject | None = None) -> None:
        super().__init__(profile, parent)
        self.js_errors: list[str] = []

    def javaScriptConsoleMessage(
        self, level: QWebEnginePage.JavaScriptConsoleMessageLevel, message: str, line: int, src: str
    ) -> None:
        signal = {
            "ocrdesk:click:": self.blockClicked,
            "ocrdesk:edit:": self.blockActivated,
            "ocrdesk:menu:": self.blockMenu,
        }.get(message[: message.rfind(":") + 1])
        if signal is not None:
            with contextlib.suppress(ValueError):
                signal.emit(int(message.rsplit(":", 1)[1]))
        elif level == QWebEnginePage.JavaScriptConsoleMessageLevel.ErrorMessageLevel:
            # A script error (KaTeX, the page's own code, a blocked load) would otherwise vanish.
            self.js_errors.append(f"{message} ({src}:{line})")
            log.warning("result view: %s (%s:%d)", message, src, line)

    def acceptNavigationRequest(
        self, url: QUrl | str, kind: QWebEnginePage.NavigationType, is_main_frame: bool
    ) -> bool:
        url = QUrl(url)
        return kind == QWebEnginePage.NavigationType.NavigationTypeTyped or url.scheme() in (
            "data",
            "about",
        )


class ResultView(QWidget):
    """Rendered page markdown (or raw output), throttled, with block highlighting."""

    blockClicked = Signal(int)
    blockActivated = Signal(int)  # a block double-clicked: edit it
    blockMenu = Signal(int)  # a block right-clicked: its menu

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.profile, self.interceptor = shared_profile()
        self.page = ResultPage(self.profile, self)
        settings = self.page.settings()
        settings.setAttribute(
            QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, False
        )
        settings.setAttribute(QWebEngineSettings.WebAttribute.NavigateOnDropEnabled, False)
        settings.setAttribute(QWebEngineSettings.WebAttribute.JavascriptCanOpenWindows, False)
        settings.setAttribute(QWebEngineSettings.WebAttribute.PluginsEnabled, False)
        self.web = QWebEngineView(self)
        self.web.setPage(self.page)
        self.web.setAcceptDrops(False)
        self.page.blockClicked.connect(self._clicked)
        self.page.blockActivated.connect(self.blockActivated)
        self.page.blockMenu.connect(self._menu)
        # A block's own menu (the page's Back/Reload/View source menu has nothing to offer).
        self.web.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.raw_switch = QCheckBox("Raw output with tags", self)
        self.raw_switch.setToolTip("Show the model's raw output with its tags (Ctrl+U)")
        self.raw_switch.toggled.connect(lambda _: self._redraw_now())
        self.title = QLabel("", self)
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # a file name, not markup
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.raw_switch)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.web, 1)
        self.ready = False
        self.redraws = 0
        self.highlighted: int | None = None
        self._source: Callable[[], tuple[list[Any], str, dict[int, str]]] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(1000 // MAX_FPS)
        self._timer.timeout.connect(self._redraw_now)
        self._dirty = False
        self._token = 0
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.page.loadFinished.connect(self._loaded)
        shell = SHELL.read_text(encoding="utf-8")
        self.page.setHtml(shell, QUrl.fromLocalFile(str(RESOURCES) + "/"))

    def _loaded(self, ok: bool) -> None:
        if ok:
            self.page.runJavaScript(LISTENERS)
        self.ready = ok
        if ok and self._dirty:
            self._redraw_now()

    def _menu(self, index: int) -> None:
        self.highlight(index, scroll=False)
        self.blockMenu.emit(index)

    def _clicked(self, index: int) -> None:
        self.highlight(index, scroll=False)
        self.blockClicked.emit(index)

    # -- content -------------------------------------------------------------------------------

    def show_source(
        self, source: Callable[[], tuple[list[Any], str, dict[int, str]]] | None, title: str = ""
    ) -> None:
        """Show what `source()` gives (blocks, raw text, figures) now; `changed()` redraws it."""
        self._source = source
        self.title.setText(title)
        self.highlighted = None
        if not self.ready:
            self._redraw_now()  # drawn once the shell has loaded
            return
        # The previous page's body must never stand under this title, not even for the hop
        # to the render thread (under load that lasted over a second): a body that is quick
        # to make is made here, with the title; a long one clears the view until it is ready.
        blocks, raw, figures = source() if source is not None else ([], "", {})
        if len(raw) <= SWITCH_NOW_CHARS:
            self._timer.stop()
            self._token += 1  # a render in flight is of the page before
            self._dirty = False
            self._set(self._placeholder(blocks) or _body(self._raw_mode, blocks, raw, figures))
            return
        self._set(LOADING)
        self._redraw_now()

    def changed(self) -> None:
        """The source has more text: redraw, at most MAX_FPS times a second."""
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    def _redraw_now(self) -> None:
        self._timer.stop()
        self._dirty = True
        self._token += 1  # whatever is being rendered now is out of date
        if not self.ready or self._busy:
            return
        self._dirty = False
        blocks, raw, figures = self._source() if self._source is not None else ([], "", {})
        placeholder = self._placeholder(blocks)
        if placeholder:
            self._set(placeholder)
            return
        raw_mode = self._raw_mode
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._set(_body(raw_mode, blocks, raw, figures))
            return
        # markdown rendering and sanitising in a worker thread, not on the GUI thread
        self._busy = True
        self._task = loop.create_task(self._render(self._token, raw_mode, blocks, raw, figures))

    @property
    def _raw_mode(self) -> bool:
        return self.raw_switch.isChecked()

    def _placeholder(self, blocks: list[Any]) -> str:
        """What stands in for a body that has nothing to show yet ("" when it has)."""
        if self._source is None:
            return '<p class="empty">No page selected.</p>'
        if not self._raw_mode and not blocks:
            return '<p class="empty">Nothing yet.</p>'
        return ""

    async def _render(
        self, token: int, raw_mode: bool, blocks: list[Any], raw: str, figures: dict[int, str]
    ) -> None:
        try:
            body = await asyncio.to_thread(_body, raw_mode, list(blocks), raw, dict(figures))
        finally:
            self._busy = False
        if token == self._token:
            self._set(body)
        elif self._dirty:
            self._redraw_now()

    def _set(self, body: str) -> None:
        self.redraws += 1
        highlight = -1 if self.highlighted is None else self.highlighted
        self.page.runJavaScript(f"ocrSet({json.dumps(body)}, {highlight});")

    # -- linking -------------------------------------------------------------------------------

    def highlight(self, index: int | None, *, scroll: bool = True) -> None:
        self.highlighted = index
        if self.ready:
            k = -1 if index is None else index
            self.page.runJavaScript(f"ocrHighlight({k}, {str(scroll).lower()});")

    def run_js(self, script: str, callback: Callable[[Any], None]) -> None:
        """Evaluate `script` in the page (tests and the linking code read the DOM with it)."""
        self.page.runJavaScript(script, 0, callback)
