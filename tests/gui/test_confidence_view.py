"""Asked for confidence (Run > Ask for confidence, kept in the settings), the window's requests
carry `logprobs`, each block gets its confidence, and a block the model was unsure of is flagged
and tinted in the result view (issue 12: low-confidence blocks tinted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrdesk.engine import LOW_CONFIDENCE
from ocrdesk.engine.results import FlagKind
from ocrdesk.gui.html import render_blocks
from tests.engine.helpers import make_pdf
from tests.gui.test_editing import GROUNDED
from tests.gui.test_editing_kept import served  # noqa: F401  (the fixture)
from tests.gui.test_result_render import convert


def test_asked_for_confidence_the_window_tints_what_the_model_was_unsure_of(
    served: Any,  # noqa: F811
    qtbot: Any,
    tmp_path: Path,
) -> None:
    controller, window, server = served([GROUNDED])
    server.unsure = ["The second paragraph."]
    assert not window.confidence_action.isChecked()  # off by default, as in the CLI
    window.confidence_action.trigger()
    assert window.settings.get("run/confidence") is True
    item = convert(qtbot, controller, window, make_pdf(tmp_path / "sure.pdf", 1))
    assert server.requests[-1]["logprobs"] is True
    result = item.pages[1].result
    by_text = {b.text: b for b in result.blocks}
    unsure = by_text["The second paragraph."]
    assert unsure.confidence is not None and unsure.confidence < LOW_CONFIDENCE
    sure = by_text["# Heading of the page"]
    assert sure.confidence is not None and sure.confidence > LOW_CONFIDENCE
    assert FlagKind.LOW_CONFIDENCE in {f.kind for f in result.flags}
    page = render_blocks(result.blocks)
    index = result.blocks.index(unsure)
    assert f'<div class="block unsure" data-block="{index}"' in page
    assert page.count("block unsure") == 1
