"""Issue 11, the settings a new user met: the settings file that may hold the API key is 0600,
a server given with `--server` shows in Settings while it is in force (and OK does not save it
or switch engines), and OK in Settings leaves the toolbar's task as the person chose it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from ocrdesk.engine import Task
from ocrdesk.gui.settings import Settings
from ocrdesk.gui.settings_dialog import SettingsDialog
from tests.fakes.openai_server import FakeOpenAIServer
from tests.gui.conftest import arun, wait_until


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def ini(path: Path) -> Settings:
    return Settings(QSettings(str(path), QSettings.Format.IniFormat))


def test_the_settings_file_with_a_key_in_clear_is_0600(
    qapp: Any, tmp_path: Path, umask_022: None
) -> None:
    path = tmp_path / "fresh" / "settings.ini"
    settings = ini(path)
    assert settings.key_storage() == "settings"  # tests/gui/conftest.py: no keyring
    settings.set_api_key("sk-in-clear")
    assert "sk-in-clear" in path.read_text(encoding="utf-8")
    assert path.stat().st_mode & 0o777 == 0o600
    # An older file, written 0644 before this was fixed, is made private when it is opened.
    path.chmod(0o644)
    again = ini(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again.set("run/dpi", 150)
    again.sync()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_server_from_the_command_line_shows_in_settings_and_is_not_saved(
    qapp: Any, tmp_path: Path
) -> None:
    path = tmp_path / "settings.ini"
    settings = ini(path)
    settings.set("engine/mode", "local")
    settings.set("engine/url", "http://old-box:8000/v1")
    settings.override_server("http://given:9000/v1", "sk-given")

    dialog = SettingsDialog(settings)
    assert dialog.remote_radio.isChecked() and not dialog.local_radio.isChecked()
    assert dialog.url_edit.text() == "http://given:9000/v1"
    assert dialog.override_note is not None and "--server" in dialog.override_note.text()
    dialog.accept()
    assert not dialog.changed & {"engine/mode", "engine/url"}  # nothing to reconnect
    saved = ini(path)
    assert saved.get("engine/mode") == "local" and saved.get("engine/url") == (
        "http://old-box:8000/v1"
    )
    assert settings.server_override == "http://given:9000/v1"

    # Changing the engine in Settings ends the override and saves what the dialog shows.
    dialog = SettingsDialog(settings)
    dialog.url_edit.setText("http://chosen:8000/v1")
    dialog.accept()
    assert "engine/url" in dialog.changed and settings.server_override is None
    saved = ini(path)
    assert saved.get("engine/mode") == "remote"
    assert saved.get("engine/url") == "http://chosen:8000/v1"


def test_ok_in_settings_keeps_the_toolbar_task(qloop: Any, qtbot: Any, settings: Any) -> None:
    from ocrdesk.gui.app import build

    with FakeOpenAIServer(["text"]) as server:
        controller, window = build([], server=server.url, settings=settings, history=False)
        qtbot.addWidget(window)
        arun(qtbot, wait_until(lambda: controller.state == "ready", what="engine ready"))
        assert window.task() is Task.MARKDOWN  # the default
        window.task_combo.setCurrentIndex(window.task_combo.findData(Task.FREE.value))
        window.dpi_spin.setValue(200)
        window.open_settings()
        dialog = window.settings_dialog
        assert dialog.remote_radio.isChecked() and dialog.url_edit.text() == server.url
        dialog.accept()
        assert window.task() is Task.FREE and window.dpi_spin.value() == 200
        # no engine switch: the one given with --server is still the one in use
        assert controller.state == "ready" and server.url in controller.detail

        # A default task changed in Settings is the toolbar's too.
        window.open_settings()
        dialog = window.settings_dialog
        dialog.task_combo.setCurrentIndex(dialog.task_combo.findData(Task.OCR.value))
        dialog.accept()
        assert window.task() is Task.OCR
        arun(qtbot, controller.close())


def test_pages_at_once_is_found_from_the_server_unless_set(
    qloop: Any, qtbot: Any, settings: Any
) -> None:
    from ocrdesk.gui.app import build

    with FakeOpenAIServer(["text"]) as server:
        controller, window = build([], server=server.url, settings=settings, history=False)
        qtbot.addWidget(window)
        assert settings.get("engine/concurrency") == 0
        assert window.options().concurrency is None  # auto (engine/concurrency.py)
        window.open_settings()
        spin = window.settings_dialog.concurrency_spin
        assert spin.text() == "Auto (from the server's load)"
        window.settings_dialog.reject()
        settings.set("engine/concurrency", 24)
        assert window.options().concurrency == 24
        arun(qtbot, controller.close())


def test_the_vllm_field_says_what_runs_and_can_browse(
    qloop: Any, qtbot: Any, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm on it
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.vllm_edit.placeholderText() == "not found on PATH"
    assert "choose the `vllm` executable" in dialog.vllm_edit.toolTip()

    fake = tmp_path / "vllm"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert SettingsDialog(settings).vllm_edit.placeholderText() == f"{fake} (found on PATH)"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: ("/opt/vllm/bin/vllm", ""))
    dialog.vllm_browse.click()
    assert dialog.vllm_edit.text() == "/opt/vllm/bin/vllm"
