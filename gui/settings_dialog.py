"""The settings dialog: engine (local vLLM or remote server), default task, DPI, output folder.

OK writes what the person changed, and `changed` names those keys, so that the window applies
only them: an unchanged engine is not restarted, and the toolbar keeps the task chosen there. A
server given with `--server` shows as the remote mode while it is in force; it is saved only
when the person changes the engine here.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ocrdesk.engine import (
    DEFAULT_MODEL,
    TASK_TITLES,
    GpuChoiceError,
    Task,
    default_vllm,
    parse_gpus,
)
from ocrdesk.gui.plain_text import tooltip
from ocrdesk.gui.settings import ENGINE_KEYS, Settings


class SettingsDialog(QDialog):
    """Edits `Settings`; writes them on OK."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("OCRDesk settings")
        self.settings = settings
        self.changed: frozenset[str] = frozenset()  # the keys OK wrote
        s = settings

        self.local_radio = QRadioButton("Local vLLM server (started by OCRDesk)", self)
        self.remote_radio = QRadioButton("Remote OpenAI-compatible server (vLLM, SGLang)", self)
        local = QGroupBox("Local", self)
        lf = QFormLayout(local)
        self.model_edit = QLineEdit(s.get("engine/model"), self)
        self.model_edit.setToolTip("A Hugging Face model id or a local model folder")
        self.vllm_edit = QLineEdit(s.get("engine/vllm"), self)
        found = default_vllm()
        self.vllm_edit.setPlaceholderText(found or "not found on PATH")
        self.vllm_edit.setToolTip(
            tooltip(
                f"Empty: {found}"
                if found
                else "No vllm on PATH and no OCRDESK_VLLM: choose the `vllm` executable of "
                "vLLM's environment (it usually lives in a venv of its own)"
            )
        )
        self.vllm_browse = QPushButton("Browse…", self)
        self.vllm_browse.clicked.connect(self._browse_vllm)
        vllm_row = QHBoxLayout()
        vllm_row.setContentsMargins(0, 0, 0, 0)
        vllm_row.addWidget(self.vllm_edit, 1)
        vllm_row.addWidget(self.vllm_browse)
        self.gpus_edit = QLineEdit(s.get("engine/gpus"), self)
        self.gpus_edit.setPlaceholderText("all")
        self.gpus_edit.setToolTip(
            tooltip(
                "The GPUs for the local vLLM, numbered as nvidia-smi shows them: all (the "
                "default), a number of GPUs (2: the first two), or GPU numbers (0,2; device=1 "
                "for GPU 1 alone). ocrdesk convert --local uses this setting too and runs one "
                "vLLM on each GPU."
            )
        )
        self.gpus_error = QLabel(self)
        self.gpus_error.setObjectName("gpus-error")
        self.gpus_error.setWordWrap(True)
        self.gpus_error.hide()
        self.gpus_edit.textChanged.connect(lambda _text: self.gpus_error.hide())
        self.gpu_spin = QDoubleSpinBox(self)
        self.gpu_spin.setRange(0.1, 0.99)
        self.gpu_spin.setSingleStep(0.05)
        self.gpu_spin.setValue(s.get("engine/gpu_memory_utilization"))
        self.concurrency_spin = QSpinBox(self)
        self.concurrency_spin.setRange(0, 512)
        self.concurrency_spin.setSpecialValueText("Auto (from the server's load)")
        self.concurrency_spin.setToolTip(
            "Pages in flight at once. Auto keeps as many as the server runs at once, read from "
            "its metrics while the run goes."
        )
        self.concurrency_spin.setValue(s.get("engine/concurrency"))
        lf.addRow("Model", self.model_edit)
        lf.addRow("vLLM executable", vllm_row)
        lf.addRow("GPUs", self.gpus_edit)
        lf.addRow(self.gpus_error)
        lf.addRow("GPU memory share", self.gpu_spin)
        lf.addRow("Pages at once", self.concurrency_spin)

        remote = QGroupBox("Remote", self)
        rf = QFormLayout(remote)
        self.url_edit = QLineEdit(s.get("engine/url"), self)
        self.url_edit.setPlaceholderText("http://gpu-box:8000/v1")
        self.key_edit = QLineEdit(s.api_key(), self)
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        rf.addRow("Server URL", self.url_edit)
        rf.addRow("API key", self.key_edit)
        self.override_note: QLabel | None = None
        override = s.server_override
        if override is not None:
            self.override_note = QLabel("From --server, for this session only", self)
            self.override_note.setObjectName("server-override")
            self.override_note.setToolTip(
                tooltip(f"{override}\nnot saved: change the engine here to replace and save it")
            )
            rf.addRow(self.override_note)
        if s.key_storage() != "keyring":
            note = QLabel("No system keyring is available: the key is stored in the settings file.")
            note.setWordWrap(True)
            rf.addRow(note)

        (self.local_radio if s.get("engine/mode") == "local" else self.remote_radio).setChecked(
            True
        )

        run = QGroupBox("Defaults", self)
        df = QFormLayout(run)
        self.task_combo = QComboBox(self)
        for task, title in TASK_TITLES.items():
            self.task_combo.addItem(title, task.value)
        index = self.task_combo.findData(s.get("run/task"))
        self.task_combo.setCurrentIndex(max(0, index))
        self.dpi_spin = QSpinBox(self)
        self.dpi_spin.setRange(72, 400)
        self.dpi_spin.setValue(s.get("run/dpi"))
        self.output_edit = QLineEdit(s.get("output/folder"), self)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(browse)
        df.addRow("Task", self.task_combo)
        df.addRow("DPI", self.dpi_spin)
        df.addRow("Output folder", out_row)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local_radio)
        layout.addWidget(local)
        layout.addWidget(self.remote_radio)
        layout.addWidget(remote)
        layout.addWidget(run)
        layout.addWidget(buttons)
        self._shown = self._values()

    def _values(self) -> dict[str, Any]:
        """What the fields say, by settings key."""
        return {
            "engine/mode": "local" if self.local_radio.isChecked() else "remote",
            "engine/model": self.model_edit.text().strip() or DEFAULT_MODEL,
            "engine/vllm": self.vllm_edit.text().strip(),
            "engine/gpus": self._gpus(),
            "engine/gpu_memory_utilization": self.gpu_spin.value(),
            "engine/concurrency": self.concurrency_spin.value(),
            "engine/url": self.url_edit.text().strip(),
            "engine/api_key": self.key_edit.text(),
            "run/task": Task(self.task_combo.currentData()).value,
            "run/dpi": self.dpi_spin.value(),
            "output/folder": self.output_edit.text().strip(),
        }

    def _gpus(self) -> str:
        """The GPUs field as the choice reads back ("0, 2" is "0,2", empty is "all"); the
        text as typed when it is no choice (OK then says why)."""
        try:
            return str(parse_gpus(self.gpus_edit.text()))
        except GpuChoiceError:
            return self.gpus_edit.text().strip()

    def _browse_vllm(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "vLLM executable", self.vllm_edit.text())
        if path:
            self.vllm_edit.setText(path)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_edit.text())
        if folder:
            self.output_edit.setText(folder)

    def accept(self) -> None:
        try:
            parse_gpus(self.gpus_edit.text())
        except GpuChoiceError as exc:
            self.gpus_error.setText(str(exc))
            self.gpus_error.show()
            self.gpus_edit.setFocus()
            return
        s = self.settings
        values = self._values()
        changed = {key for key, value in values.items() if value != self._shown[key]}
        if changed & ENGINE_KEYS and s.server_override is not None:
            # The person chose an engine: the one from the command line ends, and all of what
            # the engine fields show is saved (the URL shown was the override's, not saved yet).
            s.end_override()
            changed |= {k for k in ENGINE_KEYS if k in values}
        for key in sorted(changed):
            if key == "engine/api_key":
                s.set_api_key(values[key])
            else:
                s.set(key, values[key])
        s.sync()
        self.changed = frozenset(changed)
        super().accept()
