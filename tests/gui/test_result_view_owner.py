"""The result view never shows another page's or another document's text (issue 11, item 4: a
page-6 header over page 1's text; a waiting document showing another document's page).

Pages and documents are switched in the real window while a run streams into it, and again once
it is idle. Every page's answer carries a word of its own; each time the view's title changes
(`show_source`) or a body is sent to the page (`_set`), the words of the body it then shows are
recorded with its title, and each must be the word of the page the title names."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from ocrdesk.engine import PageStatus
from ocrdesk.gui.result_view import SWITCH_NOW_CHARS
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import prose
from tests.gui.conftest import arun, wait_until
from tests.gui.test_run_control import add

WORD = re.compile(r"Qmark\d+q")
#: Every fourth answer longer than a page switch draws at once (it clears the view instead).
OUTPUTS = [
    "<|ref|>text<|/ref|><|det|>[[60, 40, 940, 700]]<|/det|>\n"
    f"Qmark{k}q {prose(60 if k % 4 else 1300, seed=k)}\n"
    for k in range(60)
]
#: (document, page) to show, in turn: far and near pages, the other document, back.
STEPS = [
    ("a", 1), ("a", 6), ("a", 2), ("b", 1), ("a", 5), ("b", 3), ("a", 1), ("a", 3),
    ("b", 2), ("a", 6), ("a", 4), ("b", 1), ("a", 1),
]  # fmt: skip


class Timeline:
    """(title, words of the body shown) after each title change and each body sent."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.body = ""
        self.states: list[tuple[str, set[str]]] = []
        self.kinds: list[str] = []  # "title" or "body": what changed
        show, put = view.show_source, view._set

        def show_source(*args: Any, **kwargs: Any) -> None:
            show(*args, **kwargs)
            self.note("title")

        def _set(body: str) -> None:
            put(body)
            self.body = body
            self.note("body")

        view.show_source, view._set = show_source, _set

    def note(self, kind: str) -> None:
        self.states.append((self.view.title.text(), set(WORD.findall(self.body))))
        self.kinds.append(kind)


def wrong_states(timeline: Timeline, words: dict[str, set[str]]) -> list[str]:
    """The states whose body has words of a page other than the one its title names."""
    return [
        f"state {k} ({timeline.kinds[k]}): {title!r} over {sorted(shown)}"
        f" (its page: {sorted(words.get(title, set()))})"
        for k, (title, shown) in enumerate(timeline.states)
        if title and not shown <= words.get(title, set())
    ]


def page_words(controller: Any, items: dict[str, Any]) -> dict[str, set[str]]:
    """Title -> the words of that page's answer."""
    out = {}
    for item in items.values():
        for number, page in item.pages.items():
            raw = page.result.raw if page.result is not None else page.raw_text
            out[f"{item.name} — page {number}"] = set(WORD.findall(raw))
    return out


async def walk(window: Any, items: dict[str, Any], pause: float) -> None:
    for name, number in STEPS:
        window.show_page(items[name].id, number)
        await asyncio.sleep(pause)


def test_the_result_view_shows_only_the_shown_page_s_text(
    windows: Any, qtbot: Any, tmp_path: Path, settings: Any
) -> None:
    settings.set("engine/concurrency", 2)
    controller, window = windows(OUTPUTS, token_delay=0.002)
    items = {
        "a": add(qtbot, controller, window, make_pdf(tmp_path / "a.pdf", 6)),
        "b": add(qtbot, controller, window, make_pdf(tmp_path / "b.pdf", 3)),
    }
    timeline = Timeline(window.result_view)
    window.run()
    arun(qtbot, wait_until(lambda: controller.running, what="running"))
    arun(
        qtbot,
        wait_until(
            lambda: any(p.status is PageStatus.RUNNING for p in items["a"].pages.values()),
            what="a page streams",
        ),
    )
    streaming = 0
    while controller.running and streaming < 4:  # rounds while pages stream
        arun(qtbot, walk(window, items, 0.05))
        streaming += 1
    arun(qtbot, wait_until(lambda: not controller.running, timeout=120, what="run over"))
    assert streaming >= 1
    arun(qtbot, walk(window, items, 0.05))  # and idle
    arun(qtbot, walk(window, items, 0.0))  # as fast as keys repeat
    arun(qtbot, wait_until(lambda: not window.result_view._busy, what="last render"))
    words = page_words(controller, items)
    lengths = [len(p.result.raw) for i in items.values() for p in i.pages.values()]
    assert min(lengths) <= SWITCH_NOW_CHARS < max(lengths)  # both ways of a switch were taken
    assert all(len(w) == 1 for w in words.values()), words
    assert any(shown for _, shown in timeline.states)  # the words were shown at all
    wrong = wrong_states(timeline, words)
    bodies = [w for w in wrong if "(body)" in w]
    assert not wrong, f"{len(wrong)} of {len(timeline.states)} states wrong: {(bodies + wrong)[:4]}"
    # the view ends on the last page asked for, with its text
    last = f"a.pdf — page {STEPS[-1][1]}"
    assert timeline.states[-1] == (last, words[last])
