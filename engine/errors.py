"""The engine's exception tree: every error a person may see is one of these.

    OCRDeskError                 base of everything the engine raises on purpose
    ├── DocumentError            a file cannot be read as a document (names the file and why)
    │   ├── UnsupportedFormatError   the bytes are no format we know
    │   ├── EmptyFileError           a 0-byte file
    │   ├── PasswordRequiredError    an encrypted PDF and no (or a wrong) password
    │   └── PageRenderError          one page of an opened document failed to render
    ├── PageRangeError           a page range string like "1-3,x" that does not parse
    ├── ServerError              the model server failed a request for good (after retries)
    │   └── ServerUnavailableError   no server answers at all
    └── EngineStartError         a local vLLM server did not come up (reason and fix inside)

Model output never raises: the parser turns any text into blocks and markdown.
"""

from __future__ import annotations

from pathlib import Path


class OCRDeskError(Exception):
    """Base class of every error the engine raises on purpose."""


class DocumentError(OCRDeskError):
    """A file could not be opened or read as a document."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class UnsupportedFormatError(DocumentError):
    """The file is in no format OCRDesk can read."""


class EmptyFileError(DocumentError):
    """The file has no bytes."""


class PasswordRequiredError(DocumentError):
    """The document is encrypted and needs a (correct) password."""


class PageRenderError(DocumentError):
    """One page of an opened document could not be rendered."""

    def __init__(self, source: str | Path, page: int, reason: str) -> None:
        self.page = page
        super().__init__(source, f"page {page}: {reason}")


class PageRangeError(OCRDeskError, ValueError):
    """A page range such as "1-3,7,10-" could not be parsed."""


class ServerError(OCRDeskError):
    """The model server failed a request and retries did not help."""


class ServerUnavailableError(ServerError):
    """No model server could be reached."""


class EngineStartError(OCRDeskError):
    """A local inference server did not become ready; `reason` and `fix` say why and what to do."""

    def __init__(self, reason: str, fix: str = "", log_tail: str = "") -> None:
        self.reason = reason
        self.fix = fix
        self.log_tail = log_tail
        message = reason if not fix else f"{reason}\n  fix: {fix}"
        super().__init__(message)
