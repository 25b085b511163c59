"""The installed PySide6 keeps None alive: PySide6 6.12.0 dropped a reference to None in
ordinary calls (QLabel.setText, setToolTip, QCoreApplication.processEvents), and on Python
3.11, where None is freed when its count reaches zero, a long session aborted the interpreter
("none_dealloc"). pyproject.toml keeps that release off Python < 3.12; from 3.12 None is
immortal and its count says nothing."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QLabel

CALLS = 1000


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_ordinary_calls_keep_nones_references(qtbot: Any) -> None:
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for k in range(CALLS):
        label.setText(f"page {k}")
        label.setToolTip(f"page {k}")
        QApplication.processEvents()
    lost = before - sys.getrefcount(None)
    assert lost < CALLS // 10, f"{lost} references to None lost over {3 * CALLS} calls"
