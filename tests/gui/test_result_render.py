"""The result view in the real window, against the loopback OpenAI server: KaTeX renders every
LaTeX delimiter offline, figure crops show inline, the raw switch, no network from the view, and
streaming (boxes before the page is done, redraws throttled to about ten a second)."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtTest import QTest

from ocrdesk.engine import PageStatus
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import prose
from tests.gui.conftest import arun, js, wait_until
from tests.gui.test_run_control import add
from tests.gui.test_window import wait_until_async

MATH = (
    "<|ref|>title<|/ref|><|det|>[[60, 40, 940, 90]]<|/det|>\n# Formulas\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 110, 940, 200]]<|/det|>\n"
    "Inline parentheses \\(a^2 + b^2 = c^2\\) and inline dollars $E = mc^2$ here.\n\n"
    "<|ref|>equation<|/ref|><|det|>[[60, 220, 940, 300]]<|/det|>\n"
    "\\[\\int_0^1 x^2 \\, dx = \\frac{1}{3}\\]\n\n"
    "<|ref|>equation<|/ref|><|det|>[[60, 320, 940, 400]]<|/det|>\n"
    "$$\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$$\n"
)

FIGURE = (
    "<|ref|>title<|/ref|><|det|>[[60, 40, 940, 90]]<|/det|>\n# A page with a figure\n\n"
    # make_pdf draws a rectangle at (72, 300)-(400, 500) pt on a 595 x 842 pt page
    "<|ref|>image<|/ref|><|det|>[[110, 345, 690, 605]]<|/det|>\n\n"
    "<|ref|>image_caption<|/ref|><|det|>[[110, 615, 690, 640]]<|/det|>\n"
    "Figure 1: a rectangle.\n"
)

RAW = (
    "<|ref|>title<|/ref|><|det|>[[60, 40, 940, 90]]<|/det|>\n# Raw or rendered\n\n"
    "<|ref|>text<|/ref|><|det|>[[60, 110, 940, 200]]<|/det|>\n"
    "Some **bold** words in a paragraph.\n"
)

STREAM = "".join(
    f"<|ref|>text<|/ref|><|det|>[[60, {60 + 110 * k}, 940, {150 + 110 * k}]]<|/det|>\n"
    + f"Paragraph {k + 1} of the streamed page: {prose(24, seed=k)}"
    + "\n\n"
    for k in range(8)
)


@pytest.fixture
def launch(windows: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
    """launch(output, token_delay) -> (controller, window), built against a loopback server
    that answers every page with `output` (streamed in steps of half a millisecond unless said)."""
    return functools.partial(windows, token_delay=0.0005)


def convert(qtbot: Any, controller: Any, window: Any, path: Path) -> Any:
    """Queue the one-page `path`, run it, wait until it is done and shown; its DocItem."""
    item = add(qtbot, controller, window, path)
    window.run()
    arun(
        qtbot,
        wait_until(
            lambda: item.pages.get(1) and item.pages[1].status is PageStatus.DONE,
            timeout=30,
            what="page done",
        ),
    )
    assert window.current == (item.id, 1)
    return item


def dom(window: Any, qtbot: Any, script: str) -> Any:
    return arun(qtbot, js(window.result_view, script))


def until_dom(window: Any, qtbot: Any, script: str, value: Any, timeout: float = 10) -> None:
    arun(qtbot, wait_until_async(lambda: js(window.result_view, script), value, timeout))


def test_latex_in_every_delimiter_renders_with_katex(
    launch: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window = launch(MATH)
    blocked = len(window.result_view.interceptor.blocked)  # one interceptor for the process
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "math.pdf", 1))
    assert len(item.pages[1].result.blocks) == 4
    until_dom(window, qtbot, "document.querySelectorAll('[data-block]').length", 4)
    # one .katex per formula (the last one closes the output: this is the final redraw),
    # nothing left as TeX source, two of them in display mode
    until_dom(window, qtbot, "document.querySelectorAll('.katex').length", 4)
    assert dom(window, qtbot, "document.querySelectorAll('.katex-display').length") == 2
    assert dom(window, qtbot, "document.querySelectorAll('.katex-error').length") == 0
    assert dom(window, qtbot, "document.querySelectorAll('.katex-mathml math').length") == 4
    text = dom(window, qtbot, "document.getElementById('c').innerText")
    for source in ("\\(", "\\[", "$$", "$E", "\\frac"):
        assert source not in text, source
    # KaTeX's stylesheet and fonts came from the vendored copy (the layout depends on them)
    font = dom(
        window,
        qtbot,
        "getComputedStyle(document.querySelector('.katex')).fontFamily",
    )
    assert "KaTeX_Main" in font
    assert window.result_view.page.js_errors == []
    assert window.result_view.interceptor.blocked[blocked:] == []


def test_figure_crop_shows_inline(launch: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = launch(FIGURE)
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "figure.pdf", 1))
    blocks = item.pages[1].result.blocks
    assert [b.label for b in blocks] == ["title", "image", "image_caption"]
    image = "document.querySelector('[data-block=\"1\"] img.figure')"
    until_dom(window, qtbot, f"!!{image} && {image}.complete && {image}.naturalWidth > 0", True)
    width = dom(window, qtbot, f"{image}.naturalWidth")
    height = dom(window, qtbot, f"{image}.naturalHeight")
    x1, y1, x2, y2 = blocks[1].box
    assert width == pytest.approx(min(640, x2 - x1), abs=2)
    assert height == pytest.approx((y2 - y1) * width / (x2 - x1), abs=2)
    assert dom(window, qtbot, f"{image}.src.startsWith('data:image/jpeg;base64,')")
    assert dom(window, qtbot, "document.querySelectorAll('img').length") == 1
    assert window.result_view.page.js_errors == []


def test_raw_switch_shows_tags_and_back(launch: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = launch(RAW)
    convert(qtbot, controller, window, make_pdf(tmp_path / "raw.pdf", 1))
    view = window.result_view
    body = "document.getElementById('c').innerText"
    rendered = "!!document.querySelector('h1') && document.querySelectorAll('strong').length"
    until_dom(window, qtbot, rendered, 1)
    assert "<|ref|>" not in dom(window, qtbot, body)

    # the check box, clicked with the mouse
    assert not view.raw_switch.isChecked()
    QTest.mouseClick(view.raw_switch, Qt.MouseButton.LeftButton)
    assert view.raw_switch.isChecked()
    until_dom(window, qtbot, "!!document.querySelector('pre.raw')", True)
    text = dom(window, qtbot, body)
    assert "<|ref|>title<|/ref|><|det|>[[60, 40, 940, 90]]<|/det|>" in text
    assert "# Raw or rendered" in text and "**bold**" in text
    assert dom(window, qtbot, "document.querySelectorAll('pre.raw .tag').length") == 8
    assert dom(window, qtbot, "document.querySelectorAll('h1, strong').length") == 0

    QTest.mouseClick(view.raw_switch, Qt.MouseButton.LeftButton)
    assert not view.raw_switch.isChecked()
    until_dom(window, qtbot, rendered, 1)
    assert "<|ref|>" not in dom(window, qtbot, body)

    # and from the keyboard: the check box takes focus and Space toggles it
    view.raw_switch.setFocus(Qt.FocusReason.TabFocusReason)
    QTest.keyClick(view.raw_switch, Qt.Key.Key_Space)
    assert view.raw_switch.isChecked()
    until_dom(window, qtbot, "!!document.querySelector('pre.raw')", True)
    assert "<|ref|>" in dom(window, qtbot, body)
    QTest.keyClick(view.raw_switch, Qt.Key.Key_Space)
    until_dom(window, qtbot, rendered, 1)
    assert "<|ref|>" not in dom(window, qtbot, body)

    # and the window's shortcut, wherever the focus is (View > Raw output with tags)
    window.page_view.setFocus()
    QTest.keyClick(window, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)
    assert view.raw_switch.isChecked()
    until_dom(window, qtbot, "!!document.querySelector('pre.raw')", True)
    QTest.keyClick(window, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)
    assert not view.raw_switch.isChecked()
    until_dom(window, qtbot, rendered, 1)
    assert view.page.js_errors == []


#: Tries each of `urls` (a JSON object: name -> URL) with fetch() (names starting with "fetch")
#: or an <img>; `window.__net[name]` says how it ended.
PROBE = """
(function (urls) {
  window.__net = {};
  Object.keys(urls).forEach(function (name) {
    var url = urls[name];
    if (name.indexOf("fetch") === 0) {
      fetch(url).then(function () { window.__net[name] = "loaded"; },
                      function () { window.__net[name] = "rejected"; });
    } else {
      var img = document.createElement("img");
      img.onload = function () { window.__net[name] = "loaded:" + img.naturalWidth; };
      img.onerror = function () { window.__net[name] = "error:" + img.naturalWidth; };
      img.src = url;
      document.body.appendChild(img);
    }
  });
  return 1;
})(%s)
"""


@pytest.fixture
def web_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request it gets: (its base URL, the paths)."""
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(b"reached")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


#: The result view logs each request its policy refused (the point of the test below).
REFUSED = r"^result view: (Refused to|Fetch API cannot load).*Content Security Policy"


@pytest.mark.allow_log(REFUSED)
def test_the_view_cannot_reach_the_network(
    launch: Any, qtbot: Any, tmp_path: Path, web_server: tuple[str, list[str]]
) -> None:
    base, hits = web_server
    controller, window = launch(RAW)
    convert(qtbot, controller, window, make_pdf(tmp_path / "net.pdf", 1))
    view = window.result_view
    until_dom(window, qtbot, "document.querySelectorAll('[data-block]').length", 2)
    urls = {
        "fetch": "http://example.com/x",
        "fetchLocal": f"{base}/fetch",
        "img": "https://example.com/a.png",
        "imgLocal": f"{base}/a.png",
    }
    dom(window, qtbot, PROBE % json.dumps(urls))
    until_dom(window, qtbot, "Object.keys(window.__net).length", 4)
    results = json.loads(dom(window, qtbot, "JSON.stringify(window.__net)"))
    assert results == {
        "fetch": "rejected",
        "fetchLocal": "rejected",
        "img": "error:0",
        "imgLocal": "error:0",
    }
    # No request left: not even the server on this machine saw one. Each was stopped and
    # recorded, by the shell's Content-Security-Policy (a console error) or by the interceptor.
    time.sleep(0.2)
    assert hits == []
    for url in urls.values():
        assert url in view.interceptor.blocked or any(
            url in e and "Content Security Policy" in e for e in view.page.js_errors
        ), url

    # The interceptor alone, on a page of the same profile without the shell's policy: it
    # blocks and records every URL that would leave the machine.
    from PySide6.QtWebEngineCore import QWebEnginePage

    page = QWebEnginePage(view.profile)
    try:
        loaded: list[bool] = []
        page.loadFinished.connect(loaded.append)
        page.setHtml("<p>bare</p>", QUrl(base + "/"))
        arun(qtbot, wait_until(lambda: loaded, what="bare page loaded"))
        before = len(view.interceptor.blocked)
        answers: list[Any] = []
        page.runJavaScript(PROBE % json.dumps(urls), 0, answers.append)
        arun(qtbot, wait_until(lambda: answers, what="probe started"))

        async def outcome() -> Any:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            page.runJavaScript("JSON.stringify(window.__net)", 0, future.set_result)
            return json.loads(await future)

        arun(qtbot, wait_until_async(lambda: _count(outcome), 4))
        assert arun(qtbot, outcome()) == results
        blocked = view.interceptor.blocked[before:]
        assert set(urls.values()) <= set(blocked), blocked
        assert hits == []
    finally:
        page.deleteLater()


async def _count(outcome: Callable[[], Any]) -> int:
    return len(await outcome())


def test_streaming_boxes_and_throttled_redraws(launch: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = launch(STREAM, token_delay=0.01)
    item = add(qtbot, controller, window, make_pdf(tmp_path / "stream.pdf", 1))
    view = window.result_view
    #: (time, status, boxes drawn, redraws, blocks in the result DOM)
    samples: list[tuple[float, PageStatus | None, int, int, int]] = []
    blocks = "document.querySelectorAll('[data-block]').length"

    async def watch() -> None:
        while True:
            page = item.pages.get(1)
            status = page.status if page else None
            shown = int(await js(view, blocks)) if status is PageStatus.RUNNING else -1
            boxes = len(window.page_view.boxes)
            samples.append((time.monotonic(), status, boxes, view.redraws, shown))
            if status is PageStatus.DONE:
                return
            await asyncio.sleep(0.01)

    window.run()
    arun(qtbot, watch(), timeout=60)
    running = [s for s in samples if s[1] is PageStatus.RUNNING]
    assert running, "never saw the page running"
    seconds = running[-1][0] - running[0][0]
    redraws = running[-1][3] - running[0][3]
    boxes = [s[2] for s in running]
    shown = [s[4] for s in running]
    assert seconds > 1.5, f"streamed for {seconds:.2f}s only"
    # (a) boxes appear while the page streams, block by block
    assert max(boxes) >= 6, boxes
    assert len({b for b in boxes if 0 < b < 8}) >= 3, boxes
    assert boxes == sorted(boxes)  # none taken away while the page streams
    # ... and so do the blocks in the result view
    assert len({n for n in shown if 0 < n < 8}) >= 3, shown
    # (b) the view redraws as text streams in, at most about ten times a second
    assert redraws >= 5
    assert redraws <= 12 * seconds + 1, f"{redraws} redraws in {seconds:.2f}s"
    # done: every box and block, and the view caught up with the final text
    assert len(window.page_view.boxes) == 8
    until_dom(window, qtbot, blocks, 8)
    last = "document.querySelector('[data-block=\"7\"]').innerText"
    ending = prose(24, seed=7).split()[-1]  # the last paragraph's last word
    until_dom(window, qtbot, f"{last}.trim().endsWith('{ending}')", True)
    assert view.page.js_errors == []


def test_figure_of_a_page_finished_while_another_was_shown(
    launch: Any, qtbot: Any, tmp_path: Path
) -> None:
    """Page 1 is shown (its image rendered and cached), the user moves to page 2, page 1 is
    done meanwhile, and the user comes back to page 1: its figure crop is shown."""
    controller, window = launch(FIGURE, token_delay=0.002)
    item = add(qtbot, controller, window, make_pdf(tmp_path / "two.pdf", 2))
    arun(qtbot, wait_until(lambda: window.page_view.has_image(), what="page 1 image"))
    assert window.current == (item.id, 1)
    window.next_page()
    assert window.current == (item.id, 2)
    window.run()
    arun(
        qtbot,
        wait_until(
            lambda: (
                all(p.status is PageStatus.DONE for p in item.pages.values())
                and not controller.running
            ),
            timeout=30,
            what="both pages done",
        ),
    )
    image = "document.querySelector('[data-block=\"1\"] img.figure')"
    until_dom(window, qtbot, f"!!{image} && {image}.naturalWidth > 0", True)
    # page 2's figure goes from the DOM, so that only page 1's redraw can bring one back
    dom(window, qtbot, "document.getElementById('c').innerHTML = ''; 1")
    redraws = window.result_view.redraws
    window.prev_page()
    assert window.current == (item.id, 1)
    assert window.result_view.title.text() == "two.pdf — page 1"
    arun(qtbot, wait_until(lambda: window.result_view.redraws > redraws, what="redraw"))
    until_dom(window, qtbot, "document.querySelectorAll('[data-block]').length", 3)
    until_dom(window, qtbot, f"!!{image} && {image}.naturalWidth > 0", True, timeout=5)
    assert window.result_view.page.js_errors == []


#: Free OCR's answer (no tags): one formula opened with `\(` and closed with `\]`, good ones after.
UNBALANCED = (
    "Intro words \\(a + b\\] middle words \\(c^2\\) and \\[\\frac{1}{2}\\] end words. "
    "A \\( never closed, then $d$."
)


def test_an_unbalanced_formula_spoils_only_itself(launch: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = launch(UNBALANCED)
    convert(qtbot, controller, window, make_pdf(tmp_path / "unbalanced.pdf", 1))
    until_dom(window, qtbot, "document.querySelectorAll('.katex').length", 4)
    assert dom(window, qtbot, "document.querySelectorAll('.katex-error').length") == 0
    # the words between the formulas are text, not TeX
    outside = dom(
        window,
        qtbot,
        "(function () { var c = document.getElementById('c').cloneNode(true);"
        " c.querySelectorAll('.katex').forEach(function (k) { k.remove(); });"
        " return c.innerText; })()",
    )
    for words in ("Intro words", "middle words", "end words.", "never closed, then"):
        assert words in outside, outside
    assert window.result_view.page.js_errors == []


@pytest.mark.allow_log(REFUSED)
def test_the_page_runs_no_inline_handler(launch: Any, qtbot: Any, tmp_path: Path) -> None:
    controller, window = launch(RAW)
    convert(qtbot, controller, window, make_pdf(tmp_path / "csp.pdf", 1))
    until_dom(window, qtbot, "document.querySelectorAll('[data-block]').length", 2)
    # the page's own style and script came from files (result.css, result.js)
    assert dom(window, qtbot, "getComputedStyle(document.body).fontSize") == "14px"
    assert dom(window, qtbot, "typeof ocrSet") == "function"
    # markup that got past the sanitiser, as if: its handler must not run
    ran = dom(
        window,
        qtbot,
        "document.getElementById('c').insertAdjacentHTML('beforeend',"
        ' \'<div id="t" onclick="window.__ran = 1">t</div>\');'
        " document.getElementById('t').click(); window.__ran === undefined",
    )
    assert ran is True
