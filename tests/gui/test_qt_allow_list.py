"""tests/gui/conftest.py's Qt allow-list: every pattern is anchored, so a message that only
contains an allowed one (or a word of one) still fails its test."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QtMsgType

from tests.gui import conftest


def test_every_pattern_is_anchored() -> None:
    assert all(p.startswith("^") and p.endswith("$") for p in conftest.ALLOWED)


@pytest.mark.parametrize(
    "message",
    [
        "the result view's sandbox crashed",  # once allowed by r".*sandbox.*"
        "js: Uncaught ReferenceError: katex is not defined",  # once allowed by r"js: .*"
        "QOpenGLContext broke the page view",  # once allowed by r".*OpenGL.*"
        "This plugin does not support propagateSizeHints() and the window is gone",
    ],
)
def test_a_message_near_an_allowed_one_is_kept(message: str) -> None:
    conftest._handler(QtMsgType.QtWarningMsg, None, message)
    assert conftest._messages == [f"QtWarningMsg: {message}"]
    conftest._messages.clear()


def test_an_allowed_message_is_dropped() -> None:
    conftest._handler(QtMsgType.QtWarningMsg, None, "GPUInfo not initialized on GpuInfoUpdate")
    assert conftest._messages == []
