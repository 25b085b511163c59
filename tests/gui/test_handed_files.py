"""The running window's side of a hand-over (issue 11, item 19): the files a second
`ocrdesk FILE` hands over open in the real window, and the window says so in its status bar
(the second start says it only on its own stdout, which the person may not see)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ocrdesk.gui.app import HandedFiles
from ocrdesk.gui.single_instance import SingleInstance, server_name
from tests.engine.helpers import make_pdf
from tests.gui.conftest import arun, wait_until
from tests.gui.test_single_instance import DEADLINE, Child

TEXT = "<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\nWords of a page.\n"

#: A second start: hands its files to the instance of NAME, prints "handed" (or "first").
SECOND = """
import sys
from PySide6.QtCore import QCoreApplication
from ocrdesk.gui.single_instance import SingleInstance
app = QCoreApplication([])
print("first" if SingleInstance(sys.argv[1]).claim(sys.argv[2:]) else "handed", flush=True)
"""


def queued_names(controller: Any) -> list[str]:
    return sorted(controller.docs[i].name for i in controller.order)


def count_raises(window: Any, monkeypatch: Any) -> list[None]:
    """Each raise_() of `window` (offscreen Qt has none: it warns)."""
    raised: list[None] = []
    monkeypatch.setattr(window, "raise_", lambda: raised.append(None))
    return raised


def test_a_second_start_s_files_open_in_the_window_and_it_says_so(
    windows: Any, qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    controller, window = windows(TEXT)
    raised = count_raises(window, monkeypatch)
    first = make_pdf(tmp_path / "first.pdf", 1)
    second = make_pdf(tmp_path / "second.pdf", 2)
    instance = SingleInstance(server_name(tmp_path / "settings"))
    assert instance.claim([]) is True
    try:
        handed = HandedFiles(instance)
        handed.window = window
        args = [sys.executable, "-c", SECOND, instance.name, first.name, second.name]
        child = Child(args, tmp_path)
        try:
            arun(
                qtbot,
                wait_until(
                    lambda: len(controller.order) == 2, timeout=DEADLINE, what="files opened"
                ),
            )
            assert child.exit_status(qtbot) == 0
            assert child.line() == "handed"
        finally:
            child.stop()
        assert queued_names(controller) == ["first.pdf", "second.pdf"]
        assert window.statusBar().currentMessage() == (
            "Opened 2 files handed over by another OCRDesk start"
        )
        assert raised
    finally:
        instance.close()


def test_files_handed_before_the_window_exists_open_in_it_once_it_does(
    windows: Any, qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    instance = SingleInstance(server_name(tmp_path / "settings"))
    handed = HandedFiles(instance)
    pdf = make_pdf(tmp_path / "early.pdf", 1)
    handed.receive([str(pdf)])  # the window is still being built
    controller, window = windows(TEXT)
    assert controller.order == []
    raised = count_raises(window, monkeypatch)
    handed.window = window
    arun(qtbot, wait_until(lambda: controller.order, what="the early file opened"))
    assert queued_names(controller) == ["early.pdf"]
    assert window.statusBar().currentMessage() == (
        "Opened 1 file handed over by another OCRDesk start"
    )
    handed.receive([])  # a second start without files only raises the window
    assert len(raised) == 1
    assert window.statusBar().currentMessage() == (
        "Opened 1 file handed over by another OCRDesk start"
    )
    assert len(controller.order) == 1
