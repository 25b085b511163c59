"""Edits are kept like finished pages: on disk the moment they are made, in the export files
rebuilt after them (the edited text, not the old), back on the page after the window is closed
and opened again, and untouched by a run that goes on while a page is corrected."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ocrdesk.engine import PageStatus
from ocrdesk.gui.queue_view import progress_text
from tests.engine.helpers import make_pdf
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, open_window, wait_until
from tests.gui.test_editing import GROUNDED, stored, texts
from tests.gui.test_page_actions import page_output
from tests.gui.test_result_render import convert
from tests.gui.test_run_control import add


@pytest.fixture
def served(qloop: Any, qtbot: Any, settings: Any) -> Iterator[Callable[..., Any]]:
    """served(outputs, token_delay=0.0) -> (controller, window, server); all closed after."""
    with contextlib.ExitStack() as servers:
        controllers: list[Any] = []

        def launch(outputs: Sequence[str], token_delay: float = 0.0) -> tuple[Any, Any, Any]:
            server = servers.enter_context(FakeOpenAIServer(outputs, token_delay=token_delay))
            controller, window = open_window(qtbot, settings, server.url)
            controllers.append(controller)
            return controller, window, server

        yield launch
        for controller in controllers:
            arun(qtbot, controller.close())


def retype(window: Any, doc_id: int, number: int, index: int, text: str) -> None:
    """Edit block `index` of the page in the block editor and confirm."""
    window.show_page(doc_id, number)
    window.edit_block(index)
    dialog = window.block_editor
    dialog.text_edit.setPlainText(text)
    dialog.confirm()


def exported(item: Any) -> tuple[str, dict[str, Any]]:
    folder = item.export.folder
    md = (folder / f"{folder.name}.md").read_text(encoding="utf-8")
    data = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
    return md, data


def test_edits_are_exported_and_come_back_after_a_restart(
    served: Any, qtbot: Any, settings: Any, tmp_path: Path
) -> None:
    from ocrdesk.gui.app import build

    controller, window, server = served([GROUNDED])
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "kept.pdf", 1))
    arun(qtbot, wait_until(lambda: window.page_view.editable, what="editable"))
    retype(window, item.id, 1, 1, "Words a person corrected.")
    window._box_clicked(3)
    window.delete_block()
    edited = ["# Heading of the page", "Words a person corrected.", "The second paragraph."]
    assert texts(item) == edited
    arun(qtbot, wait_until(lambda: stored(item) == edited, what="edits on disk"))

    # the export files are rebuilt with the edits, off the GUI thread, soon after
    rebuilt: list[int] = []
    window.editor.rebuilt.connect(rebuilt.append)
    arun(qtbot, wait_until(lambda: rebuilt, what="files rebuilt"))
    md, data = exported(item)
    assert "Words a person corrected." in md
    assert "The first paragraph." not in md and "cell a" not in md
    page = data["pages"][0]
    assert page["edited"] is True and page["raw"] == GROUNDED  # the model's words kept
    assert page["blocks"][1]["source"] == "edited"
    assert [b["text"] for b in page["blocks"]] == edited

    arun(qtbot, controller.close())
    window.close()

    controller2, window2 = build([], server=server.url, settings=settings, history=True)
    qtbot.addWidget(window2)
    try:
        arun(qtbot, wait_until(lambda: controller2.order, what="history"))
        old = controller2.docs[controller2.order[0]]
        arun(
            qtbot,
            wait_until(lambda: old.pages.get(1) and old.pages[1].result, what="history page"),
        )
        arun(qtbot, wait_until(lambda: texts(old) == edited, what="edits back"))
        window2.show_page(old.id, 1)
        arun(qtbot, wait_until(lambda: window2.page_view.editable, what="editable again"))
        assert "edited" in window2.page_label.text()
        assert progress_text(old).endswith("· 1 edited")  # the history row says so
        assert not window2.undo_action.isEnabled()  # a new session's history starts empty
        # and it can be corrected further
        retype(window2, old.id, 1, 0, "# A better heading")
        arun(qtbot, wait_until(lambda: stored(old) == ["# A better heading", *edited[1:]]))
        window2.undo_action.trigger()
        arun(qtbot, wait_until(lambda: stored(old) == edited, what="undone on disk"))
    finally:
        arun(qtbot, controller2.close())


def test_a_page_edited_mid_run_keeps_its_edit(served: Any, qtbot: Any, tmp_path: Path) -> None:
    outputs = [page_output(word, 2) for word in ("alpha", "beta", "gamma", "delta")]
    controller, window, server = served(outputs, token_delay=0.04)
    item = add(qtbot, controller, window, make_pdf(tmp_path / "midrun.pdf", 4))
    window.run()
    arun(
        qtbot,
        wait_until(
            lambda: item.pages[1].status is PageStatus.DONE and controller.running,
            what="page 1 done during the run",
        ),
    )
    assert item.job is not None and item.count(PageStatus.DONE) < 4
    heading = texts(item)[0]
    retype(window, item.id, 1, 0, "# Corrected during the run")
    assert texts(item)[0] == "# Corrected during the run"
    page_one: list[PageStatus] = []
    controller.pageChanged.connect(
        lambda d, n: page_one.append(item.pages[1].status) if (d, n) == (item.id, 1) else None
    )
    arun(qtbot, wait_until(lambda: not controller.running, timeout=60, what="run over"))
    assert all(p.status is PageStatus.DONE for p in item.pages.values())
    assert texts(item)[0] == "# Corrected during the run"
    assert PageStatus.RUNNING not in page_one  # page 1 was not asked for again
    kept = stored(item)
    assert kept is not None and kept[0] == "# Corrected during the run"
    requests = server.completed

    def files_have_it() -> bool:
        md, _ = exported(item)
        return "Corrected during the run" in md and heading not in md

    arun(qtbot, wait_until(files_have_it, what="the edit in the files the run wrote"))

    # a later run leaves the edited page alone
    window.run()
    arun(qtbot, wait_until(lambda: not controller.running, what="second run over"))
    assert server.completed == requests and texts(item)[0] == "# Corrected during the run"


def test_run_again_asks_the_model_for_edited_pages_and_drops_their_edits(
    served: Any, qtbot: Any, tmp_path: Path
) -> None:
    controller, window, server = served([GROUNDED])
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "again.pdf", 1))
    arun(qtbot, wait_until(lambda: window.page_view.editable, what="editable"))
    original = texts(item)
    retype(window, item.id, 1, 2, "A person's words.")
    arun(qtbot, wait_until(lambda: stored(item) is not None, what="edits on disk"))
    requests = server.completed
    window.run()  # a plain run leaves the edited page alone
    arun(qtbot, wait_until(lambda: not controller.running, what="run over"))
    assert server.completed == requests and texts(item)[2] == "A person's words."

    window.run_again_selected()
    arun(
        qtbot,
        wait_until(
            lambda: (
                server.completed > requests
                and item.pages[1].status is PageStatus.DONE
                and not controller.running
            ),
            what="run again over",
        ),
    )
    assert texts(item) == original and stored(item) is None
    assert not item.pages[1].result.edited
    assert not window.undo_action.isEnabled()  # the old history would undo into old pages
