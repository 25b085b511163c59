"""The Settings dialog's "GPUs" field: "all" by default, a choice written back as the engine
parses it (and read from the settings file by the CLI and doctor, engine/app_settings.py), a
value that is no choice refused on OK with the reason beside the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog

from ocrdesk.engine.app_settings import saved_gpus
from ocrdesk.engine.gpus import GpuChoice
from ocrdesk.engine.local_server import choose_gpus
from ocrdesk.gui.settings import ENGINE_KEYS, Settings
from ocrdesk.gui.settings_dialog import SettingsDialog


def ini(tmp_path: Path) -> tuple[Settings, Path]:
    path = tmp_path / "settings.ini"
    return Settings(QSettings(str(path), QSettings.Format.IniFormat)), path


def test_all_gpus_by_default(qapp: Any, tmp_path: Path) -> None:
    settings, _ = ini(tmp_path)
    dialog = SettingsDialog(settings)
    assert dialog.gpus_edit.text() == "all"
    dialog.accept()
    assert dialog.changed == frozenset()  # nothing changed: the engine is not restarted


def test_a_choice_is_saved_as_the_engine_reads_it(qapp: Any, tmp_path: Path) -> None:
    settings, path = ini(tmp_path)
    for typed, saved, choice in (
        (" 0, 2 ", "0,2", GpuChoice(devices=(0, 2))),
        ("device=1", "device=1", GpuChoice(devices=(1,))),
        ("2", "2", GpuChoice(count=2)),
        ("", "all", GpuChoice()),
    ):
        dialog = SettingsDialog(settings)
        dialog.gpus_edit.setText(typed)
        dialog.accept()
        assert dialog.result() == QDialog.DialogCode.Accepted
        assert settings.get("engine/gpus") == saved
        # the headless commands read the same file without Qt
        assert saved_gpus(path) == saved
        assert choose_gpus(saved_gpus(path)) == choice
    assert "engine/gpus" in ENGINE_KEYS  # a change restarts the local engine


def test_no_choice_is_refused_with_its_reason(qapp: Any, tmp_path: Path) -> None:
    settings, _ = ini(tmp_path)
    dialog = SettingsDialog(settings)
    dialog.show()
    dialog.gpus_edit.setText("two")
    dialog.accept()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.gpus_error.isVisibleTo(dialog)
    assert "'two' is no GPU choice" in dialog.gpus_error.text()
    assert settings.get("engine/gpus") == "all"
    dialog.gpus_edit.setText("1")  # typing again clears the reason
    assert not dialog.gpus_error.isVisibleTo(dialog)
    dialog.accept()
    assert settings.get("engine/gpus") == "1"
