"""Issue 11 item 17: at 1024x640 the engine status (its light and line, and the Engine
settings… and Log buttons of its state) stays in sight, never in the tool bar's overflow menu:
with the prompt field shown, in the no-engine state with a long reason, in the error state
with a long error and when ready."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication, QToolBar, QToolButton, QWidget

from ocrdesk.engine.tasks import Task
from ocrdesk.gui.engine_link import EngineState

LONG = "the server said: " + "a very long reason, " * 30 + "the end"


def in_sight(widget: QWidget) -> bool:
    """Shown, not covered or clipped away, and inside the window."""
    window = widget.window()
    corner = widget.mapTo(window, QPoint(0, 0))
    inside = window.rect().contains(corner) and window.rect().contains(
        corner + QPoint(widget.width() - 1, widget.height() - 1)
    )
    return widget.isVisible() and not widget.visibleRegion().isEmpty() and inside


def overflowed(window: Any) -> bool:
    """Whether the main tool bar put widgets into its overflow menu."""
    bar = window.findChild(QToolBar, "main-toolbar")
    return any(
        b.isVisible()
        for b in bar.findChildren(QToolButton)
        if b.objectName() == "qt_toolbar_ext_button"
    )


def test_the_engine_status_stays_in_sight_at_1024x640(windows: Any) -> None:
    controller, window = windows("text")
    window.resize(1024, 640)
    # The widest tool bar: the task with the text to locate shows its prompt field.
    window.task_combo.setCurrentIndex(window.task_combo.findData(Task.LOCATE.value))
    QApplication.processEvents()
    assert window.prompt_edit.isVisible()
    states = [
        ("ready", [window.engine_label]),
        ("none", [window.engine_label, window.engine_settings]),
        ("error", [window.engine_label, window.engine_settings, window.engine_log]),
    ]
    for state, shown in states:
        if state == "none":
            controller.no_engine(LONG)
        elif state == "error":
            # A long error as the link reports one (a failed start says this much).
            controller.link._set(EngineState.ERROR, LONG)
        QApplication.processEvents()
        assert controller.state == state
        for widget in shown:
            assert in_sight(widget), (state, widget)
        assert not overflowed(window), state
        text = window.engine_label.text()
        assert "●" in text and "the end" not in text, state  # elided, whole in the tooltip
        assert "the end" in window.engine_label.toolTip() or state == "ready"
    # Smaller still, the line is elided to fit rather than cut or pushed out.
    window.resize(800, 600)
    QApplication.processEvents()
    for widget in (window.engine_label, window.engine_settings, window.engine_log):
        assert in_sight(widget), widget
    assert window.engine_label.width() >= window.engine_label.minimumSizeHint().width()
