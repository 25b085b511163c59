"""OCRDesk's headless engine: documents in, grounded markdown out, through any DeepSeek-OCR server.

The GUI and the CLI use only the names exported here. This package never imports Qt.

    from ocrdesk.engine import Pipeline, ServerPool, ModelClient, DocumentJob, ConvertOptions
    pool = ServerPool([ModelClient("http://127.0.0.1:8000/v1")])
    async for event in Pipeline(pool, ConvertOptions()).run([DocumentJob("scan.pdf")]):
        ...

Errors: see engine.errors for the exception tree.
"""

from ocrdesk import __version__

from . import edits, protocol
from .app_settings import APP_NAME, settings_path
from .client import Completion, ModelClient, ServerPool
from .documents import SUPPORTED_SUFFIXES, Document, find_documents, open_document
from .edits import Asked, EditRequest, EditStore, edited
from .errors import (
    DocumentError,
    EmptyFileError,
    EngineStartError,
    OCRDeskError,
    PageRangeError,
    PageRenderError,
    PasswordRequiredError,
    ServerError,
    ServerUnavailableError,
    UnsupportedFormatError,
)
from .export import (
    LABEL_COLORS,
    DocumentExport,
    ExportFailed,
    MathStyle,
    SavedExport,
    SourceId,
    atomic_write,
    export_folder,
    figure_boxes,
    label_color,
    mark_headings,
    page_markdown,
    read_export,
    read_exports,
)
from .formats import DEFAULT_FORMATS, FORMATS, ExportFormat, parse_formats
from .gpus import GpuChoiceError, parse_gpus
from .local_group import LocalServerGroup
from .local_server import (
    LocalServer,
    LocalServerConfig,
    ServerState,
    ServerStatus,
    default_vllm,
)
from .pagerange import parse_page_range
from .parser import EOS_TOKEN, StreamParser, parse, strip_tags
from .pipeline import (
    ConvertOptions,
    DocumentFailed,
    DocumentFinished,
    DocumentJob,
    DocumentOpened,
    Event,
    JobControl,
    JobFeed,
    PageCancelled,
    PageDelta,
    PageFailed,
    PageFinished,
    PageRestarted,
    PageStarted,
    Pipeline,
)
from .regions import ocr_region, overlapping, place_blocks
from .results import Block, Box, PageResult, PageStatus, ParsedPage
from .rotation import Rotation, RotationStore, render_turned, turn_image, turned_size
from .run_worker import ClientSpec, JobSpec, RunWorker
from .sanitize import Formula, clean_html, sanitize_html, split_math
from .searchable_pdf import TEXT_LAYER_MODES
from .sink import ExportSink, WriteFailure
from .tasks import (
    DEFAULT_DPI,
    DEFAULT_MODEL,
    FAMILIES,
    TASK_TITLES,
    VLLM_RANGE,
    FamilySpec,
    ModelFamily,
    Sampling,
    Task,
    VllmRange,
    family_of,
    prompt_text,
)
from .triage import LOW_CONFIDENCE

__all__ = [
    "APP_NAME",
    "DEFAULT_DPI",
    "DEFAULT_FORMATS",
    "DEFAULT_MODEL",
    "EOS_TOKEN",
    "FAMILIES",
    "FORMATS",
    "LABEL_COLORS",
    "LOW_CONFIDENCE",
    "SUPPORTED_SUFFIXES",
    "TASK_TITLES",
    "TEXT_LAYER_MODES",
    "VLLM_RANGE",
    "Asked",
    "Block",
    "Box",
    "ClientSpec",
    "Completion",
    "ConvertOptions",
    "Document",
    "DocumentError",
    "DocumentExport",
    "DocumentFailed",
    "DocumentFinished",
    "DocumentJob",
    "DocumentOpened",
    "EditRequest",
    "EditStore",
    "EmptyFileError",
    "EngineStartError",
    "Event",
    "ExportFailed",
    "ExportFormat",
    "ExportSink",
    "FamilySpec",
    "Formula",
    "GpuChoiceError",
    "JobControl",
    "JobFeed",
    "JobSpec",
    "LocalServer",
    "LocalServerConfig",
    "LocalServerGroup",
    "MathStyle",
    "ModelClient",
    "ModelFamily",
    "OCRDeskError",
    "PageCancelled",
    "PageDelta",
    "PageFailed",
    "PageFinished",
    "PageRangeError",
    "PageRenderError",
    "PageRestarted",
    "PageResult",
    "PageStarted",
    "PageStatus",
    "ParsedPage",
    "PasswordRequiredError",
    "Pipeline",
    "Rotation",
    "RotationStore",
    "RunWorker",
    "Sampling",
    "SavedExport",
    "ServerError",
    "ServerPool",
    "ServerState",
    "ServerStatus",
    "ServerUnavailableError",
    "SourceId",
    "StreamParser",
    "Task",
    "UnsupportedFormatError",
    "VllmRange",
    "WriteFailure",
    "__version__",
    "atomic_write",
    "clean_html",
    "default_vllm",
    "edited",
    "edits",
    "export_folder",
    "family_of",
    "figure_boxes",
    "find_documents",
    "label_color",
    "mark_headings",
    "ocr_region",
    "open_document",
    "overlapping",
    "page_markdown",
    "parse",
    "parse_formats",
    "parse_gpus",
    "parse_page_range",
    "place_blocks",
    "prompt_text",
    "protocol",
    "read_export",
    "read_exports",
    "render_turned",
    "sanitize_html",
    "settings_path",
    "split_math",
    "strip_tags",
    "turn_image",
    "turned_size",
]
