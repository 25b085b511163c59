"""The settings dialog against real QSettings (an ini file): every field round-trips, the window
reconnects to what it says, and the remote API key goes to the keyring when there is one (here
an in-memory keyring backend from tests/fakes) and is never written in clear then."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtCore import QSettings

from ocrdesk.engine import Task
from ocrdesk.gui.settings import KEYRING_SERVICE, KEYRING_USER, Settings
from ocrdesk.gui.settings_dialog import SettingsDialog
from tests.fakes.memory_keyring import MemoryKeyring
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, wait_until

SECRET = "sk-test-not-in-clear-1234"


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(fail.Keyring())


def ini(tmp_path: Path) -> tuple[Settings, Path]:
    path = tmp_path / "settings.ini"
    return Settings(QSettings(str(path), QSettings.Format.IniFormat)), path


def fill(dialog: SettingsDialog, out: Path) -> None:
    dialog.remote_radio.setChecked(True)
    dialog.url_edit.setText("  http://gpu-box:8000/v1 ")
    dialog.key_edit.setText(SECRET)
    dialog.model_edit.setText("/models/DeepSeek-OCR-2")
    dialog.vllm_edit.setText("/opt/vllm/bin/vllm")
    dialog.gpu_spin.setValue(0.75)
    dialog.concurrency_spin.setValue(8)
    dialog.task_combo.setCurrentIndex(dialog.task_combo.findData(Task.FREE.value))
    dialog.dpi_spin.setValue(200)
    dialog.output_edit.setText(str(out))


def test_every_field_round_trips_and_the_key_goes_to_the_keyring(
    qapp: Any, tmp_path: Path, ring: MemoryKeyring
) -> None:
    settings, path = ini(tmp_path)
    dialog = SettingsDialog(settings)
    fill(dialog, tmp_path / "out")
    dialog.accept()
    assert settings.get("engine/mode") == "remote"
    assert settings.get("engine/url") == "http://gpu-box:8000/v1"
    assert settings.get("engine/model") == "/models/DeepSeek-OCR-2"
    assert settings.get("engine/vllm") == "/opt/vllm/bin/vllm"
    assert settings.get("engine/gpu_memory_utilization") == pytest.approx(0.75)
    assert settings.get("engine/concurrency") == 8
    assert settings.get("run/task") == Task.FREE.value
    assert settings.get("run/dpi") == 200
    assert settings.get("output/folder") == str(tmp_path / "out")
    assert ring.passwords[(KEYRING_SERVICE, KEYRING_USER)] == SECRET
    assert SECRET not in path.read_text(encoding="utf-8")  # nothing secret in clear
    # read back by a fresh dialog, as on the next start
    again = SettingsDialog(Settings(QSettings(str(path), QSettings.Format.IniFormat)))
    assert again.remote_radio.isChecked()
    assert again.key_edit.text() == SECRET
    assert again.dpi_spin.value() == 200
    assert again.task_combo.currentData() == Task.FREE.value
    # clearing the key removes it from the keyring
    again.key_edit.setText("")
    again.accept()
    assert (KEYRING_SERVICE, KEYRING_USER) not in ring.passwords


def test_without_a_keyring_the_dialog_says_where_the_key_goes(qapp: Any, tmp_path: Path) -> None:
    settings, _ = ini(tmp_path)
    assert settings.key_storage() == "settings"  # the conftest's failing backend
    dialog = SettingsDialog(settings)
    from PySide6.QtWidgets import QLabel

    notes = [w.text() for w in dialog.findChildren(QLabel)]
    assert any("No system keyring" in text for text in notes)
    fill(dialog, tmp_path / "out")
    dialog.accept()
    assert settings.api_key() == SECRET


def test_accepting_the_dialog_reconnects_the_window(
    qloop: Any, qtbot: Any, settings: Any, ring: MemoryKeyring
) -> None:
    """Settings (Ctrl+,) → remote server with a key → OK: the window connects to it."""
    from ocrdesk.gui.app import build

    with FakeOpenAIServer(["text"], api_key=SECRET) as server:
        controller, window = build([], server=None, settings=settings, history=False)
        qtbot.addWidget(window)
        window.show()
        window.settings_action.trigger()
        dialog = window.settings_dialog
        dialog.remote_radio.setChecked(True)
        dialog.url_edit.setText(server.url)
        dialog.key_edit.setText(SECRET)
        dialog.accept()
        arun(qtbot, wait_until(lambda: controller.state == "ready", timeout=30, what="ready"))
        assert server.url.rstrip("/") in controller.detail
        assert window.run_action.isEnabled()
        arun(qtbot, controller.close())
