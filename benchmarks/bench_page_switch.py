"""How long a page switch takes in the window when it is idle (issue 11 item 4: 0.4-0.6 s).

A 40-page PDF is converted against the loopback OpenAI test server (its own process; a page of
text for every page, BENCH_CORPUS=1: the real corpus outputs), then, the run over, the window is
paged through: to the next page (its image prefetched while the page before was looked at) and
by jumps of 10 pages (not prefetched). For each switch: the ms `show_page` holds the GUI thread,
and the ms until the page is whole (its image and boxes in the page view, its body sent to the
result view's page; no JavaScript round trip: each runJavaScript answer costs a reference to
None in PySide6 6.12). Last, the references to None lost a switch: PySide bugs drop them, and at
zero the interpreter aborts ("none_dealloc").

    QT_QPA_PLATFORM=offscreen QTWEBENGINE_CHROMIUM_FLAGS=--no-sandbox \\
        .venv/bin/python benchmarks/bench_page_switch.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import qasync  # noqa: E402
from PySide6 import QtWebEngineWidgets  # noqa: E402, F401
from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from benchmarks.bench_gui_latency import make_pdf, server_process  # noqa: E402
from ocrdesk.gui.app import build, install_asyncgen_hooks  # noqa: E402
from ocrdesk.gui.settings import Settings  # noqa: E402
from tests.fakes.openai_server import prose  # noqa: E402

PAGES = 40


def server(tmp: Path) -> contextlib.AbstractContextManager[str]:
    """The loopback server in its own process (as vLLM would be): a page of text and a box for
    every page, or with BENCH_CORPUS=1 the real corpus outputs (figures: their crops too)."""
    if os.environ.get("BENCH_CORPUS"):
        return server_process()
    plain = tmp / "plain.txt"
    plain.write_text("<|ref|>text<|/ref|><|det|>[[60, 40, 940, 700]]<|/det|>\n" + prose(200))
    return server_process(["--outputs", str(plain)])


LOOK = 0.3  # seconds a person looks at a page before the next switch (prefetch has it)


async def switch(window: Any, doc_id: int, number: int) -> tuple[float, float]:
    """(ms show_page held the GUI thread, ms until the page is whole)."""
    started = time.perf_counter()
    window.show_page(doc_id, number)
    call = time.perf_counter() - started
    view = window.result_view
    while not (window.page_view.has_image() and window.page_view.boxes) or (
        view._busy or view._dirty
    ):
        await asyncio.sleep(0.001)
    return call * 1000, (time.perf_counter() - started) * 1000


def line(name: str, samples: list[tuple[float, float]]) -> str:
    calls, whole = [c for c, _ in samples], [w for _, w in samples]
    return (
        f"{name}: {len(samples)} switches; show_page {statistics.median(calls):.1f} ms median "
        f"(max {max(calls):.1f}); whole page {statistics.median(whole):.1f} ms median "
        f"(max {max(whole):.1f})"
    )


async def bench(tmp: Path) -> None:
    settings = Settings(QSettings(str(tmp / "bench.ini"), QSettings.Format.IniFormat))
    settings.set("output/folder", str(tmp / "out"))
    pdf = make_pdf(tmp / "forty.pdf", PAGES)
    with server(tmp) as url:
        controller, window = build([], server=url, settings=settings, history=False)
        window.resize(1280, 900)
        window.show()
        while controller.state != "ready" or not window.result_view.ready:
            await asyncio.sleep(0.02)
        controller.add_paths([str(pdf)])
        while not controller.order or not controller.docs[controller.order[0]].pages:
            await asyncio.sleep(0.01)
        doc = controller.docs[controller.order[0]]
        started = time.perf_counter()
        window.run()
        while not controller.running:
            await asyncio.sleep(0.02)
        while controller.running:
            await asyncio.sleep(0.05)
        print(f"converted {doc.finished} of {PAGES} pages in {time.perf_counter() - started:.1f} s")
        await switch(window, doc.id, 1)
        refs = sys.getrefcount(None)
        neighbours: list[tuple[float, float]] = []
        for number in range(2, 22):
            await asyncio.sleep(LOOK)
            neighbours.append(await switch(window, doc.id, number))
        jumps: list[tuple[float, float]] = []
        for number in [31, 21, 11, 1, 11, 21, 31, 40, 30, 20, 10]:
            await asyncio.sleep(LOOK)
            jumps.append(await switch(window, doc.id, number))
        lost = refs - sys.getrefcount(None)
        print(line("next page (prefetched)", neighbours))
        print(line("jump of 10 pages", jumps))
        # PySide bugs drop references to None; at zero the interpreter aborts (none_dealloc)
        print(f"references to None lost: {lost / (len(neighbours) + len(jumps)):.0f} a switch")
        await controller.close()
        window.close()
        window.deleteLater()


def main() -> int:
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox")
    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_asyncgen_hooks(loop)
    tmp = Path(tempfile.mkdtemp(prefix="ocrdesk-bench-"))
    with loop:
        loop.run_until_complete(bench(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
