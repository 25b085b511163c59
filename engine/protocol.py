"""What crosses the boundary between a host (the GUI) and its conversion worker process.

One frozen dataclass per message, in both directions, and the one place where they are encoded
and decoded. Both sides dispatch on the message's class (`match`); a value that is not one of
these classes is a `ProtocolError`, never silently dropped.

Host to worker (`Command`):

    Run(servers, options, jobs)   Add(token, jobs)    Pause(key)    Resume(key)    Cancel(key)
    Stop()                        Target(url, api_key, reason, server)

Worker to host (`Report`; `key` is the JobSpec's key):

    Opened(key, page_count)       DocumentFailed(key, reason)
    Started(key, number, w, h)    Delta(key, number, text)
    Restarted(key, number)        Cancelled(key, number)
    PageDone(key, result)         DocumentDone(key, cancelled)
    Added(token, ok)              Notice(text)
    Reconnect(server)             Ended(error or None)

A `Delta` carries text only: the host keeps its own `StreamParser` per running page (the blocks
and their indices come from it, the way the final parse gives them). A `PageDone` is sent only
after the page's export files are written.

A run has one server or several (`Run.servers`, a `ClientSpec` each: the local engine runs one
vLLM per GPU); the worker spreads the pages over them. A `Reconnect(server)` asks the host to
bring that one crashed local server back (`server` is its index in `Run.servers`); the requests
to it wait until the host answers with a `Target` of the same index, the other servers' go on.

Messages travel in batches: `encode` a sequence; `decode_reports` (the host) or
`decode_commands` (the worker) gives it back as a list.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from .pipeline import ConvertOptions
from .results import PageResult

__all__ = [
    "COMMANDS",
    "REPORTS",
    "Add",
    "Added",
    "Cancel",
    "Cancelled",
    "ClientSpec",
    "Command",
    "Delta",
    "DocumentDone",
    "DocumentFailed",
    "DocumentReport",
    "Ended",
    "JobSpec",
    "Message",
    "Notice",
    "Opened",
    "PageDone",
    "Pause",
    "ProtocolError",
    "Reconnect",
    "Report",
    "Restarted",
    "Resume",
    "Run",
    "Started",
    "Stop",
    "Target",
    "decode_commands",
    "decode_reports",
    "encode",
]


class ProtocolError(TypeError):
    """A value that is not one of this module's messages was sent or received."""


# -- what a run is made of -----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSpec:
    """One server the worker talks to. `supervised`: a local server the host restarts."""

    url: str
    api_key: str | None = None
    model: str | None = None
    timeout: float = 300.0
    supervised: bool = False


@dataclass(frozen=True)
class JobSpec:
    """One document of a run and where its export goes."""

    key: int
    source: str | bytes
    name: str | None
    export_folder: Path
    export_source: str
    model: str
    task: str
    skip: dict[int, PageResult] = field(default_factory=dict)
    paused: bool = False
    pages: str | None = None  # a page range ("3,7-9"); None: all pages not in `skip`
    password: str | None = field(default=None, repr=False)  # an encrypted PDF's


# -- host to worker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Convert `jobs` with the pages spread over `servers` (at least one)."""

    servers: tuple[ClientSpec, ...]
    options: ConvertOptions
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class Add:
    """Documents joining the run; answered by `Added(token, ok)`."""

    token: int
    jobs: tuple[JobSpec, ...]


@dataclass(frozen=True)
class Pause:
    key: int


@dataclass(frozen=True)
class Resume:
    key: int


@dataclass(frozen=True)
class Cancel:
    key: int


@dataclass(frozen=True)
class Stop:
    """End the run: pages in flight are dropped, the files so far written; then `Ended`."""


@dataclass(frozen=True)
class Target:
    """The answer to a `Reconnect(server)`: that server is at `url` again, or (url None) it is
    not coming back and its requests fail with `reason`."""

    url: str | None
    api_key: str | None = None
    reason: str | None = None
    server: int = 0  # its index in `Run.servers`


# -- worker to host ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    key: int
    page_count: int


@dataclass(frozen=True)
class DocumentFailed:
    key: int
    reason: str


@dataclass(frozen=True)
class Started:
    key: int
    number: int
    width: int
    height: int


@dataclass(frozen=True)
class Delta:
    """More of a page's raw output (a page's deltas within one batch are merged into one)."""

    key: int
    number: int
    text: str


@dataclass(frozen=True)
class Restarted:
    """A retry threw the page's streamed text away; the text starts again from nothing."""

    key: int
    number: int


@dataclass(frozen=True)
class Cancelled:
    """The page was in flight when its document was cancelled; it is not done."""

    key: int
    number: int


@dataclass(frozen=True)
class PageDone:
    """The page finished (its status says how, FAILED included); its files are written."""

    key: int
    result: PageResult


@dataclass(frozen=True)
class DocumentDone:
    key: int
    cancelled: bool


@dataclass(frozen=True)
class Added:
    token: int
    ok: bool


@dataclass(frozen=True)
class Notice:
    """A line for the person (a file that could not be written)."""

    text: str


@dataclass(frozen=True)
class Reconnect:
    """The local server `Run.servers[server]` is gone: the host restarts that one and answers
    with a `Target` of the same index."""

    server: int = 0


@dataclass(frozen=True)
class Ended:
    """The run's last report, however it ended; `error` is what ended it, None if nothing did."""

    error: str | None


Command = Run | Add | Pause | Resume | Cancel | Stop | Target
#: The reports about one document of the run (each has its `key`).
DocumentReport = (
    Opened | DocumentFailed | Started | Delta | Restarted | Cancelled | PageDone | DocumentDone
)
Report = DocumentReport | Added | Notice | Reconnect | Ended
Message = Command | Report

COMMANDS: tuple[type, ...] = (Run, Add, Pause, Resume, Cancel, Stop, Target)
REPORTS: tuple[type, ...] = (
    Opened,
    DocumentFailed,
    Started,
    Delta,
    Restarted,
    Cancelled,
    PageDone,
    DocumentDone,
    Added,
    Notice,
    Reconnect,
    Ended,
)
_KNOWN = frozenset(COMMANDS + REPORTS)


def _check(messages: Sequence[object]) -> None:
    for message in messages:
        if type(message) not in _KNOWN:
            raise ProtocolError(f"not a worker message: {message!r}")


def encode(messages: Sequence[Message]) -> bytes:
    """A batch of messages as bytes for the socket. Raises ProtocolError for a non-message."""
    _check(messages)
    return pickle.dumps(list(messages), protocol=pickle.HIGHEST_PROTOCOL)


def _decode(data: bytes) -> list[object]:
    try:
        messages = pickle.loads(data)
    except Exception as exc:
        raise ProtocolError(f"cannot decode a worker message: {exc!r}") from exc
    if not isinstance(messages, list):
        raise ProtocolError(f"not a batch of worker messages: {type(messages).__name__}")
    return messages


def decode_reports(data: bytes) -> list[Report]:
    """The batch of reports `encode` made. Raises ProtocolError for anything else."""
    messages = _decode(data)
    for message in messages:
        if not isinstance(message, REPORTS):
            raise ProtocolError(f"not a report of the worker: {message!r}")
    return cast("list[Report]", messages)


def decode_commands(data: bytes) -> list[Command]:
    """The batch of commands `encode` made. Raises ProtocolError for anything else."""
    messages = _decode(data)
    for message in messages:
        if not isinstance(message, COMMANDS):
            raise ProtocolError(f"not a command for the worker: {message!r}")
    return cast("list[Command]", messages)
