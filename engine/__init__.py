"""OCRDesk's headless engine: documents in, grounded markdown out, through any DeepSeek-OCR server.

The GUI and the CLI use only the names exported here. This package never imports Qt.

    from ocrdesk.engine import Pipeline, ServerPool, ModelClient, DocumentJob, ConvertOptions
    pool = ServerPool([ModelClient("http://127.0.0.1:8000/v1")])
    async for event in Pipeline(pool, ConvertOptions()).run([DocumentJob("scan.pdf")]):
        ...

Errors: see engine.errors for the exception tree.
"""

from ocrdesk import __version__

from .client import Completion, ModelClient, ServerPool
from .documents import SUPPORTED_SUFFIXES, Document, find_documents, open_document
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
from .export import LABEL_COLORS, DocumentExport, export_folder, label_color
from .local_server import LocalServer, LocalServerConfig
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
from .results import Block, Box, PageResult, PageStatus, ParsedPage
from .run_worker import ClientSpec, JobSpec, RunWorker
from .tasks import TASK_TITLES, ModelFamily, Sampling, Task, prompt_text

__all__ = [
    "EOS_TOKEN",
    "LABEL_COLORS",
    "SUPPORTED_SUFFIXES",
    "TASK_TITLES",
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
    "EmptyFileError",
    "EngineStartError",
    "Event",
    "JobControl",
    "JobFeed",
    "JobSpec",
    "LocalServer",
    "LocalServerConfig",
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
    "RunWorker",
    "Sampling",
    "ServerError",
    "ServerPool",
    "ServerUnavailableError",
    "StreamParser",
    "Task",
    "UnsupportedFormatError",
    "__version__",
    "export_folder",
    "find_documents",
    "label_color",
    "open_document",
    "parse",
    "parse_page_range",
    "prompt_text",
    "strip_tags",
]
