"""OCRDesk as an OCRmyPDF engine: DeepSeek-OCR's text and layout inside OCRmyPDF's own pipeline.

    pip install 'ocrdesk[ocrmypdf]'
    ocrmypdf --ocr-engine ocrdesk --ocrdesk-server http://gpu:8000/v1 in.pdf out.pdf

The distribution registers this module in OCRmyPDF's `ocrmypdf` entry-point group, so OCRmyPDF
loads it without `--plugin`. It implements OCRmyPDF 17's plugin API (src/ocrmypdf/pluginspec.py),
as the OCRmyPDF-EasyOCR plugin does: `add_options` adds `ocrdesk` to OCRmyPDF's fixed
`--ocr-engine` choices (argparse has no public way to extend them) and the `--ocrdesk-*` options,
`register_options` gives them a typed model (`options.ocrdesk`), `check_options` refuses what
cannot work, and `get_ocr_engine` returns `OcrDeskEngine` only for `--ocr-engine ocrdesk`:
`auto` stays Tesseract, because an engine that needs a server URL must be asked for.

Each page image OCRmyPDF hands over goes through the engine's `Pipeline` (one page, one request
at a time: OCRmyPDF runs its own workers in parallel), and comes back as hOCR from
`engine.hocr`, with the boxes scaled from the image that was sent to the image OCRmyPDF gave
(the pipeline sends large images smaller). OCRmyPDF renders the text layer from the hOCR and does
the rest (PDF/A, optimisation, never writing over its input). A page that fails raises
`OcrDeskFailed` with OCRDesk's reason, so OCRmyPDF stops with that message and exit code 7.

The orientation and deskew answers are neutral (DeepSeek-OCR reads a rotated page as it is);
the language set is empty, which OCRmyPDF takes as "any `-l`": the model takes no language hint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from argparse import ArgumentParser
from collections.abc import Set
from pathlib import Path

from ocrmypdf import OcrEngine, OcrOptions, OrientationConfidence, hookimpl
from ocrmypdf.exceptions import BadArgsError, SubprocessOutputError
from PIL import Image
from pydantic import BaseModel

from ocrdesk import __version__

from .cli import API_KEY_ENV
from .client import ModelClient, ServerPool
from .errors import OCRDeskError
from .hocr import hocr_page
from .pipeline import (
    ConvertOptions,
    DocumentFailed,
    DocumentJob,
    PageFailed,
    PageFinished,
    Pipeline,
)
from .results import Box, PageResult
from .tasks import Task
from .text_layer import PageLayout, layout_page

__all__ = [
    "ENGINE_NAME",
    "TASKS",
    "OcrDeskEngine",
    "OcrDeskFailed",
    "OcrDeskOptions",
    "add_options",
    "check_options",
    "get_ocr_engine",
    "register_options",
]

#: The value of OCRmyPDF's `--ocr-engine` that selects OCRDesk, and its options' namespace.
ENGINE_NAME = "ocrdesk"
#: The tasks `--ocrdesk-task` offers: the grounded ones, whose blocks have boxes to place text.
TASKS = (Task.MARKDOWN, Task.OCR)


class OcrDeskOptions(BaseModel):
    """The `--ocrdesk-*` options (`options.ocrdesk` in OCRmyPDF's options)."""

    server: str | None = None
    api_key: str | None = None  # None: $OCRDESK_API_KEY, read where the page is OCRed
    model: str | None = None  # None: the first model the server lists
    task: Task = Task.MARKDOWN


class OcrDeskFailed(SubprocessOutputError):
    """A page could not be OCRed; the message is OCRDesk's reason."""


def _options(options: OcrOptions) -> OcrDeskOptions:
    found = getattr(options, ENGINE_NAME)
    if not isinstance(found, OcrDeskOptions):  # pragma: no cover - OCRmyPDF builds it
        raise TypeError(f"options.{ENGINE_NAME} is {type(found).__name__}")
    return found


@hookimpl
def add_options(parser: ArgumentParser) -> None:
    for action in parser._actions:
        if action.dest == "ocr_engine" and action.choices is not None:
            if ENGINE_NAME not in action.choices:
                action.choices = [*action.choices, ENGINE_NAME]
            break
    group = parser.add_argument_group(
        "OCRDesk", "DeepSeek-OCR through an OpenAI-compatible server (--ocr-engine ocrdesk)"
    )
    group.add_argument(
        "--ocrdesk-server",
        metavar="URL",
        help="the server's address, e.g. http://127.0.0.1:8000/v1 (vLLM or SGLang)",
    )
    group.add_argument(
        "--ocrdesk-api-key",
        metavar="KEY",
        help=f"the server's API key; better in ${API_KEY_ENV}, which other users cannot see",
    )
    group.add_argument(
        "--ocrdesk-model", metavar="MODEL", help="the model to ask for (default: the server's)"
    )
    group.add_argument(
        "--ocrdesk-task",
        choices=[t.value for t in TASKS],
        help=f"what the model is asked for (default: {Task.MARKDOWN.value})",
    )


@hookimpl
def register_options() -> dict[str, type[BaseModel]]:
    return {ENGINE_NAME: OcrDeskOptions}


@hookimpl
def check_options(options: OcrOptions) -> None:
    if options.ocr_engine != ENGINE_NAME:
        return
    if not _options(options).server:
        raise BadArgsError("--ocr-engine ocrdesk needs --ocrdesk-server URL")
    if options.pdf_renderer == "sandwich":
        raise BadArgsError(
            "--ocr-engine ocrdesk writes hOCR, not a text-only PDF: "
            "use --pdf-renderer auto (or fpdf2) instead of sandwich"
        )


@hookimpl(tryfirst=True)
def get_ocr_engine(options: OcrOptions | None) -> OcrEngine | None:
    if options is None or getattr(options, "ocr_engine", "auto") != ENGINE_NAME:
        return None
    return OcrDeskEngine()


class OcrDeskEngine(OcrEngine):
    """OCRmyPDF's view of OCRDesk: one page image in, its hOCR and plain text out."""

    @staticmethod
    def version() -> str:
        return __version__

    @staticmethod
    def creator_tag(options: OcrOptions) -> str:
        model = _options(options).model or "DeepSeek-OCR"
        return f"OCRDesk {__version__} ({model})"

    def __str__(self) -> str:
        return f"OCRDesk {__version__}"

    @staticmethod
    def languages(options: OcrOptions) -> Set[str]:
        return set()

    @staticmethod
    def get_orientation(input_file: Path, options: OcrOptions) -> OrientationConfidence:
        return OrientationConfidence(angle=0, confidence=0.0)

    @staticmethod
    def get_deskew(input_file: Path, options: OcrOptions) -> float:
        return 0.0

    @staticmethod
    def generate_hocr(
        input_file: Path, output_hocr: Path, output_text: Path, options: OcrOptions
    ) -> None:
        layout = ocr_image(Path(input_file), _options(options))
        output_hocr.write_text(hocr_page(layout, source=Path(input_file).name), encoding="utf-8")
        text = "\n\n".join(block.text for block in layout.blocks if block.lines)
        output_text.write_text(text + "\n" if text else "", encoding="utf-8")

    @staticmethod
    def generate_pdf(
        input_file: Path, output_pdf: Path, output_text: Path, options: OcrOptions
    ) -> None:
        # check_options refuses the sandwich renderer, the one caller of this.
        raise NotImplementedError("OCRDesk writes hOCR; use --pdf-renderer auto")


def ocr_image(image: Path, settings: OcrDeskOptions) -> PageLayout:
    """The image OCRed through the engine's pipeline, laid out in pixels of `image` itself."""
    result = asyncio.run(_convert(image, settings))
    with Image.open(image) as opened:
        width, height = opened.size
    sx, sy = width / max(1, result.width), height / max(1, result.height)

    def scaled(box: Box) -> Box:
        x1, y1, x2, y2 = box
        return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)

    blocks = [
        dataclasses.replace(block, boxes=tuple(scaled(b) for b in block.boxes))
        for block in result.blocks
    ]
    return layout_page(dataclasses.replace(result, width=width, height=height, blocks=blocks))


async def _convert(image: Path, settings: OcrDeskOptions) -> PageResult:
    assert settings.server is not None  # check_options saw to it
    api_key = settings.api_key or os.environ.get(API_KEY_ENV)
    pool = ServerPool([ModelClient(settings.server, api_key=api_key, model=settings.model)])
    # One page in flight: OCRmyPDF already runs a worker per page (--jobs).
    pipeline = Pipeline(pool, ConvertOptions(task=settings.task, concurrency=1, deltas=False))
    result: PageResult | None = None
    failure = ""
    try:
        async for event in pipeline.run([DocumentJob(image)]):
            if isinstance(event, PageFinished):
                result = event.result
            elif isinstance(event, PageFailed):
                failure = event.result.error or "the page failed"
            elif isinstance(event, DocumentFailed):
                failure = str(event.error)
    except OCRDeskError as exc:
        failure = str(exc)
    finally:
        await pool.close()
    if result is None:
        raise OcrDeskFailed(f"OCRDesk: {image.name}: {failure or 'no result'}")
    return result
