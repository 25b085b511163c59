"""OCR part of a page, or all of it, again: the dialog that asks how, and the request itself.

    dialog = OcrAgainDialog(page_task, overlapping=3, parent=window)   # a region
    dialog = OcrAgainDialog(page_task, parent=window, whole_page=True)  # the page
    dialog.chosen.connect(lambda choice: ...)                          # an OcrChoice

`ocr_again` sends the region's crop (engine.regions.ocr_region: crop, request, parse, boxes mapped
back to page pixels) through the engine link's client, on the engine thread's loop, so neither
the image work nor the request touches the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QWidget,
)

from ocrdesk.engine import (
    TASK_TITLES,
    Block,
    Box,
    ModelFamily,
    Sampling,
    Task,
    ocr_region,
    prompt_text,
)
from ocrdesk.gui.engine_link import EngineLink

#: The tasks a region is OCRed with (the page's own task is offered beside them).
REGION_TASKS = (Task.OCR, Task.FREE, Task.FIGURE)


@dataclass(frozen=True)
class OcrChoice:
    """How to OCR again: the task, its prompt (LOCATE and CUSTOM), and for a region whether the
    blocks under it are replaced by the answer's."""

    task: Task
    prompt: str | None = None
    replace: bool = False


class OcrAgainDialog(QDialog):
    """Which task (and prompt) to OCR a region or the whole page with."""

    chosen = Signal(object)  # OcrChoice

    def __init__(
        self,
        page_task: Task,
        *,
        overlapping: int = 0,
        whole_page: bool = False,
        prompt: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("ocr-page-again" if whole_page else "ocr-region")
        self.setWindowTitle("OCR the page again" if whole_page else "OCR the region")
        self.task_box = QComboBox(self)
        if whole_page:
            tasks = list(TASK_TITLES)
        else:
            tasks = list(REGION_TASKS)
            self.task_box.addItem(f"The page's own task ({TASK_TITLES[page_task]})", page_task)
        for task in tasks:
            self.task_box.addItem(TASK_TITLES[task], task)
        if whole_page:
            self.task_box.setCurrentIndex(max(0, tasks.index(page_task)))
        self.prompt_edit = QLineEdit(prompt, self)
        self.prompt_edit.setPlaceholderText("text to locate / prompt")
        self.replace_box = QCheckBox(f"Replace the {overlapping} block(s) under the region", self)
        self.replace_box.setChecked(overlapping > 0)
        self.replace_box.setVisible(overlapping > 0)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("OCR")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Task", self.task_box)
        form.addRow("Prompt", self.prompt_edit)
        form.addRow(self.replace_box)
        form.addRow(buttons)
        self.task_box.currentIndexChanged.connect(lambda _: self._task_changed())
        self._task_changed()

    def task(self) -> Task:
        return Task(self.task_box.currentData())

    def set_task(self, task: Task) -> None:
        self.task_box.setCurrentIndex(max(0, self.task_box.findData(task)))

    def _task_changed(self) -> None:
        self.prompt_edit.setEnabled(self.task().needs_prompt)

    def choice(self) -> OcrChoice:
        task = self.task()
        prompt = self.prompt_edit.text().strip() or None
        return OcrChoice(
            task,
            prompt if task.needs_prompt else None,
            self.replace_box.isVisible() and self.replace_box.isChecked(),
        )

    def _accept(self) -> None:
        choice = self.choice()
        if choice.task.needs_prompt and not choice.prompt:
            self.prompt_edit.setFocus()
            return
        self.chosen.emit(choice)
        self.accept()


async def ocr_again(
    link: EngineLink,
    image: Image.Image,
    region: Box,
    choice: OcrChoice,
    family: ModelFamily,
    sampling: Sampling,
) -> tuple[list[Block], str, str | None]:
    """OCR `region` of the page `image` (page pixels) as `choice` says, on the engine loop.
    Returns (blocks in page pixels, raw answer, finish reason)."""
    client = link.client
    if client is None:
        raise RuntimeError("the engine is not ready")
    prompt = prompt_text(choice.task, family, custom=choice.prompt)
    return await link.engine_thread.run(ocr_region(client, image, region, prompt, sampling))
