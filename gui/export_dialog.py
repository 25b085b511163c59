"""The export dialog: the folder to export to and the formats to write, one checkbox a format.

    dialog = ExportDialog.ask(parent, settings, on_chosen)   # opens it (window-modal)
    ... a person picks, presses Export ...                  -> on_chosen(ExportChoice)

The formats, their names and their descriptions are the engine's registry (`FORMATS`): a new
format there is a new checkbox here. The boxes checked are the last choice (settings key
`export/formats`), the registry's defaults until there is one; "Defaults" checks those again.
The folder starts at the output folder of Settings; Browse... picks another (not saved: the
output folder is Settings' to change). Export is offered only with a folder and a format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ocrdesk.engine import DEFAULT_FORMATS, FORMATS, ExportFormat
from ocrdesk.gui.settings import Settings

__all__ = ["FORMATS_KEY", "ExportChoice", "ExportDialog", "stored_formats"]

#: The settings key of the formats last chosen (names joined by commas, registry order).
FORMATS_KEY = "export/formats"
_COLUMNS = 2


@dataclass(frozen=True)
class ExportChoice:
    """What a person chose: the folder to export into, the format names (registry order)."""

    folder: Path
    formats: tuple[str, ...]


def stored_formats(settings: Settings) -> tuple[str, ...]:
    """The formats last chosen, in registry order; the defaults when none (or none known now:
    a format that is gone from the registry is dropped)."""
    names = {name.strip() for name in str(settings.get(FORMATS_KEY)).split(",")}
    chosen = tuple(name for name in FORMATS if name in names)
    return chosen or DEFAULT_FORMATS


def _label(fmt: ExportFormat) -> str:
    """ "Word (.docx)": the registry's title in sentence case (hOCR stays hOCR), its file."""
    title = fmt.title
    if title[:1].islower() and not title[1:2].isupper():
        title = title[0].upper() + title[1:]
    return f"{title} ({fmt.suffix})"


class ExportDialog(QDialog):
    """Folder and formats; `chosen` (the callback of `ask`) gets the `ExportChoice`."""

    def __init__(
        self,
        parent: QWidget | None,
        settings: Settings,
        on_chosen: Callable[[ExportChoice], object] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("export-dialog")
        self.setWindowTitle("Export")
        self.settings = settings
        self._on_chosen = on_chosen
        self.folder_dialog: QFileDialog | None = None

        self.folder_edit = QLineEdit(str(settings.get("output/folder")), self)
        self.folder_edit.setObjectName("export-folder")
        self.folder_edit.setMinimumWidth(360)
        browse = QPushButton("Browse…", self)
        browse.setObjectName("export-browse")
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Folder", folder_row)

        group = QGroupBox("Formats", self)
        grid = QGridLayout(group)
        self.boxes: dict[str, QCheckBox] = {}
        for index, fmt in enumerate(FORMATS.values()):
            box = QCheckBox(_label(fmt), group)
            box.setObjectName(f"format-{fmt.name}")
            default = "written by default" if fmt.default else "on request"
            box.setToolTip(f"<stem>{fmt.suffix} in each document's folder ({default})")
            box.toggled.connect(self._update)
            grid.addWidget(box, index // _COLUMNS, index % _COLUMNS)
            self.boxes[fmt.name] = box

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults,
            self,
        )
        self.export_button = self.buttons.addButton(
            "Export", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.export_button.setDefault(True)
        defaults = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        defaults.setText("Defaults")
        defaults.clicked.connect(lambda: self.check(DEFAULT_FORMATS))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.folder_edit.textChanged.connect(self._update)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(group)
        layout.addWidget(self.buttons)
        self.check(stored_formats(settings))

    @classmethod
    def ask(
        cls,
        parent: QWidget | None,
        settings: Settings,
        on_chosen: Callable[[ExportChoice], object],
    ) -> ExportDialog:
        """Open the dialog (window-modal, without blocking the event loop); `on_chosen` is
        called with the choice when a person presses Export, not at all on Cancel."""
        dialog = cls(parent, settings, on_chosen)
        dialog.open()
        return dialog

    def check(self, names: Iterable[str]) -> None:
        """Check exactly the formats `names`."""
        wanted = set(names)
        for name, box in self.boxes.items():
            box.setChecked(name in wanted)
        self._update()

    def choice(self) -> ExportChoice | None:
        """What the dialog says now; None while it lacks a folder or a format."""
        folder = self.folder_edit.text().strip()
        formats = tuple(name for name, box in self.boxes.items() if box.isChecked())
        if not folder or not formats:
            return None
        return ExportChoice(Path(folder).expanduser(), formats)

    def _update(self) -> None:
        self.export_button.setEnabled(self.choice() is not None)

    def _browse(self) -> None:
        dialog = QFileDialog(self, "Export to folder", self.folder_edit.text())
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.folder_edit.setText)
        dialog.open()
        self.folder_dialog = dialog

    def accept(self) -> None:
        choice = self.choice()
        if choice is None:  # Enter with nothing chosen: the button is off, the dialog stays
            return
        self.settings.set(FORMATS_KEY, ",".join(choice.formats))
        self.settings.sync()
        super().accept()
        if self._on_chosen is not None:
            self._on_chosen(choice)
