"""The settings dialog: engine (local vLLM or remote server), default task, DPI, output folder."""

from __future__ import annotations

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

from ocrdesk.engine import DEFAULT_MODEL, TASK_TITLES, Task
from ocrdesk.gui.settings import Settings


class SettingsDialog(QDialog):
    """Edits `Settings`; writes them on OK."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("OCRDesk settings")
        self.settings = settings
        s = settings

        self.local_radio = QRadioButton("Local vLLM server (started by OCRDesk)", self)
        self.remote_radio = QRadioButton("Remote OpenAI-compatible server (vLLM, SGLang)", self)
        local = QGroupBox("Local", self)
        lf = QFormLayout(local)
        self.model_edit = QLineEdit(s.get("engine/model"), self)
        self.model_edit.setToolTip("A Hugging Face model id or a local model folder")
        self.vllm_edit = QLineEdit(s.get("engine/vllm"), self)
        self.vllm_edit.setPlaceholderText("vllm (found on PATH)")
        self.gpu_spin = QDoubleSpinBox(self)
        self.gpu_spin.setRange(0.1, 0.99)
        self.gpu_spin.setSingleStep(0.05)
        self.gpu_spin.setValue(s.get("engine/gpu_memory_utilization"))
        self.concurrency_spin = QSpinBox(self)
        self.concurrency_spin.setRange(1, 512)
        self.concurrency_spin.setValue(s.get("engine/concurrency"))
        lf.addRow("Model", self.model_edit)
        lf.addRow("vLLM executable", self.vllm_edit)
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

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output_edit.text())
        if folder:
            self.output_edit.setText(folder)

    def accept(self) -> None:
        s = self.settings
        s.set("engine/mode", "local" if self.local_radio.isChecked() else "remote")
        s.set("engine/model", self.model_edit.text().strip() or DEFAULT_MODEL)
        s.set("engine/vllm", self.vllm_edit.text().strip())
        s.set("engine/gpu_memory_utilization", self.gpu_spin.value())
        s.set("engine/concurrency", self.concurrency_spin.value())
        s.set("engine/url", self.url_edit.text().strip())
        s.set_api_key(self.key_edit.text())
        s.set("run/task", Task(self.task_combo.currentData()).value)
        s.set("run/dpi", self.dpi_spin.value())
        s.set("output/folder", self.output_edit.text().strip())
        s.sync()
        super().accept()
