"""The headless commands of `ocrdesk`: `convert` (the pipeline, for batches), `export` (a
converted document's files rebuilt from its journal, in the formats chosen), `serve` (a local
vLLM in the foreground), `doctor` (is everything ready?), `install-desktop` (the application-menu
entry). `ocrdesk.main` adds the window's `gui` command (the default: `ocrdesk scan.pdf` is
`ocrdesk gui scan.pdf`); this module never imports the GUI.

Exit status of `convert`: 0 when every page is done (truncated pages are kept, flagged and
reported, and do not fail the run), 1 when any page or document failed, or any export format
could not be written (its reason is printed; the other formats are written), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import __version__, desktop_install
from .client import ModelClient, ServerPool, restarting
from .doctor import doctor_exit_code, format_checks, run_checks
from .documents import find_documents
from .errors import EngineStartError, OCRDeskError
from .export import DocumentExport, ExportFailed, MathStyle, printable
from .formats import DEFAULT_FORMATS, describe_formats, parse_formats
from .gpus import gpus_argument
from .local_group import LocalServerGroup
from .local_server import LocalServer, LocalServerConfig
from .pagerange import format_page_range
from .pipeline import (
    ConvertOptions,
    DocumentFailed,
    DocumentFinished,
    DocumentJob,
    DocumentOpened,
    PageFailed,
    PageFinished,
    Pipeline,
)
from .results import FlagKind, PageStatus
from .rotation import RotationStore
from .searchable_pdf import TEXT_LAYER_MODES
from .sink import HANDLED_EVENTS, ExportSink, describe_write_error
from .tasks import DEFAULT_DPI, DEFAULT_MODEL, ModelFamily, Sampling, Task

#: Where the CLI reads a remote server's API key from when --api-key is not given.
API_KEY_ENV = "OCRDESK_API_KEY"

#: Write errors printed per document; the rest are counted in its last line (a read-only folder
#: fails every page the same way).
MAX_WRITE_ERRORS_SHOWN = 3


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


def _request_field(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_local_options(p: argparse.ArgumentParser) -> None:
    """The settings of a local vLLM server (convert --local, serve)."""
    g = p.add_argument_group("local vLLM server")
    g.add_argument(
        "--vllm",
        default=None,
        metavar="PATH",
        help="the vllm executable (or a command); default $OCRDESK_VLLM, else vllm on PATH",
    )
    g.add_argument(
        "--gpus",
        type=gpus_argument,
        default=None,
        metavar="all|N|0,1",
        help="GPUs for vLLM (default: the window's setting, else all); convert runs one on each",
    )
    g.add_argument("--gpu-memory-utilization", type=float, default=None, metavar="F")
    g.add_argument("--max-model-len", type=_positive, default=8192, metavar="N")
    g.add_argument("--max-num-seqs", type=_positive, default=None, metavar="N")
    g.add_argument("--max-num-batched-tokens", type=_positive, default=None, metavar="N")
    g.add_argument("--tensor-parallel-size", type=_positive, default=1, metavar="N")
    g.add_argument("--data-parallel-size", type=_positive, default=1, metavar="N")
    g.add_argument(
        "--attention-backend", default=None, help="e.g. TRITON_ATTN where FlashAttention fails"
    )
    g.add_argument(
        "--api-server-count",
        type=_positive,
        default=None,
        metavar="N",
        help="vLLM API server processes (default: a quarter of the CPU cores, 1 to 4)",
    )
    g.add_argument(
        "--trust-remote-code",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: only for models that need it (DeepSeek-OCR-2)",
    )
    g.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for vllm serve, repeatable (e.g. --vllm-arg=--enforce-eager)",
    )
    g.add_argument(
        "--start-timeout", type=float, default=1200.0, help="seconds to wait for the server"
    )


def _formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_format_options(p: argparse.ArgumentParser) -> None:
    """What the export writes (convert, export)."""
    g = p.add_argument_group("export")
    g.add_argument(
        "--formats",
        type=_formats,
        default=DEFAULT_FORMATS,
        metavar="LIST",
        help="files to write, comma-separated: "
        f"{describe_formats()}. A list that starts with + or - changes the defaults "
        "(+docx,hocr adds, -layout leaves out); a plain list is exactly those; all is every "
        f"format (default {','.join(DEFAULT_FORMATS)}). The figure crops and the journal "
        "(pages/) are always written",
    )
    g.add_argument(
        "--text-layer",
        choices=TEXT_LAYER_MODES,
        default=TEXT_LAYER_MODES[0],
        help="searchable PDF: a page that has text already is skipped (the default) or has its "
        "invisible text replaced",
    )
    g.add_argument(
        "--math",
        choices=[m.value for m in MathStyle],
        default=MathStyle.DOLLARS.value,
        help="formulas in the .md: $x$ and $$x$$ (dollars, the default: what GitHub, Obsidian and "
        "VS Code render) or \\(x\\) and \\[x\\] as the model writes them (latex); the raw "
        "files keep the model's text",
    )


def _local_config(args: argparse.Namespace) -> LocalServerConfig:
    return LocalServerConfig(
        model=args.model or DEFAULT_MODEL,
        vllm=args.vllm,
        gpus=args.gpus,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size,
        trust_remote_code=args.trust_remote_code,
        attention_backend=args.attention_backend,
        api_server_count=args.api_server_count,
        extra_args=list(args.vllm_arg),
        start_timeout=args.start_timeout,
    )


Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def build_parser(
    extra_commands: Callable[[Subparsers[argparse.ArgumentParser]], None] | None = None,
) -> argparse.ArgumentParser:
    """The parser of the engine's commands, plus those `extra_commands` adds (the window's)."""
    parser = argparse.ArgumentParser(
        prog="ocrdesk", description="OCR documents with DeepSeek-OCR into grounded markdown."
    )
    parser.add_argument("--version", action="version", version=f"ocrdesk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    conv = sub.add_parser(
        "convert",
        help="convert PDFs and images to markdown, JSON, raw output, a layout PDF, a searchable "
        "PDF (and DOCX, HTML, EPUB, hOCR, ALTO on request)",
        description="Convert documents (files or folders) through a DeepSeek-OCR server.",
    )
    conv.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    conv.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    conv.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="URL",
        help="OpenAI-compatible server (vLLM, SGLang), e.g. http://gpu1:8000/v1; "
        "give it more than once to share pages between servers",
    )
    conv.add_argument(
        "--local",
        action="store_true",
        help="start a local vLLM server for this run (the default when no --server is given)",
    )
    conv.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"API key of the server(s); better in ${API_KEY_ENV}, which other users cannot see "
        "in the process list",
    )
    conv.add_argument(
        "--model",
        default=None,
        help="model: hub id or folder to serve with --local (default deepseek-ai/DeepSeek-OCR); "
        "with --server, the served name (default: what the server lists first)",
    )
    conv.add_argument(
        "--family",
        choices=[f.value for f in ModelFamily],
        default=None,
        help="prompt family (default: guessed from the model name)",
    )
    conv.add_argument(
        "--task", choices=[t.value for t in Task], default=Task.MARKDOWN.value, help="what to ask"
    )
    conv.add_argument("--prompt", default=None, help="custom prompt, or the text to locate")
    conv.add_argument("--pages", default=None, metavar="RANGE", help='e.g. "1-3,7,10-"')
    conv.add_argument(
        "--dpi",
        type=_positive,
        default=DEFAULT_DPI,
        help=f"PDF render DPI (default {DEFAULT_DPI})",
    )
    conv.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        help="pages in flight at once (default: as many as the server runs at once, read from "
        "its /metrics while the run goes; 64 for a server without them)",
    )
    conv.add_argument(
        "--first-window",
        type=_positive,
        default=1,
        metavar="N",
        help="pages in flight until the first page is done, so one comes back in about a single "
        "page's time (default 1; set it to --concurrency to send all pages at once)",
    )
    conv.add_argument(
        "--confidence",
        action="store_true",
        help="ask the server for token probabilities: each block gets a confidence (0..1) in the "
        "JSON and a page with an unsure block the low_confidence flag",
    )
    conv.add_argument(
        "--retry",
        choices=("auto", "none"),
        default="auto",
        help="try a page flagged loop or garbage again with a harder n-gram setting and keep the "
        "better attempt (auto, the default), or never",
    )
    _add_format_options(conv)
    conv.add_argument("--resume", action="store_true", help="skip pages already done in OUTPUT")
    conv.add_argument("--password", default=None, help="password of encrypted PDFs")
    conv.add_argument("--max-tokens", type=_positive, default=8192, help="per page (default 8192)")
    conv.add_argument("--ngram-size", type=_positive, default=30)
    conv.add_argument("--window-size", type=_positive, default=90)
    conv.add_argument(
        "--whitelist-token-ids",
        default="128821,128822",
        help="comma-separated token ids the n-gram processor lets repeat (<td>, </td>)",
    )
    conv.add_argument(
        "--request-field",
        action="append",
        type=_request_field,
        default=[],
        metavar="KEY=VALUE",
        help="extra request field, VALUE as JSON if it parses (e.g. ignore_eos=true)",
    )
    conv.add_argument(
        "--image-format", choices=["png", "jpeg"], default="png", help="how pages are sent"
    )
    conv.add_argument("--timeout", type=float, default=300.0, help="seconds per read (default 300)")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    conv.add_argument(
        "--stats", type=Path, default=None, metavar="FILE", help="write timing figures as JSON"
    )
    _add_local_options(conv)
    conv.set_defaults(func=_convert_command)

    rebuild = sub.add_parser(
        "export",
        help="write a converted document's files again from its journal",
        description="Rebuild the files of documents converted before (OUT/<stem> folders) from "
        "their journals (pages/) and the corrections made in the window (pages/NNNN.edits.json), "
        "in the formats chosen; the searchable PDF, and the layout images of corrected pages, "
        "need the source document where it was converted from.",
    )
    rebuild.add_argument("folders", nargs="+", type=Path, metavar="FOLDER", help="OUT/<stem>")
    rebuild.add_argument("--password", default=None, help="password of an encrypted source PDF")
    _add_format_options(rebuild)
    rebuild.set_defaults(func=_export_command)

    serve = sub.add_parser(
        "serve",
        help="run a local vLLM server for DeepSeek-OCR in the foreground",
        description="Start vLLM with DeepSeek-OCR's flags, print its URL and key, stop on Ctrl+C.",
    )
    serve.add_argument("--model", default=None, help="hub id or local folder")
    _add_local_options(serve)
    serve.set_defaults(func=_serve_command)

    doctor = sub.add_parser(
        "doctor",
        help="check that everything needed to OCR here is ready",
        description="Check Python, that the window can open, vLLM, the GPU, the model and disk "
        "(local mode), or that a server answers and serves the model (with --server).",
    )
    doctor.add_argument("--model", default=None)
    doctor.add_argument("--server", default=None, metavar="URL")
    doctor.add_argument(
        "--check-server",
        default=None,
        metavar="URL",
        help="the --server checks, then send the reference page and check the answer's shape "
        "(grounding tags, boxes, the page's words): a server that answers gibberish fails",
    )
    doctor.add_argument("--api-key", default=os.environ.get(API_KEY_ENV))
    doctor.add_argument("--vllm", default=None, metavar="PATH")
    doctor.set_defaults(func=_doctor_command)

    desktop = sub.add_parser(
        "install-desktop",
        help="add OCRDesk to this user's application menu (for pip, pipx and uv installs)",
        description="Write the desktop entry (opens PDFs and images), the icon and the AppStream "
        "metainfo into the XDG data folder, or remove them with --uninstall.",
    )
    desktop.add_argument("--uninstall", action="store_true", help="remove them instead")
    desktop.add_argument(
        "--data-home",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write (default $XDG_DATA_HOME, else ~/.local/share)",
    )
    desktop.set_defaults(func=_install_desktop_command)
    if extra_commands is not None:
        extra_commands(sub)
    return parser


COMMANDS = ("convert", "export", "serve", "doctor", "install-desktop")


def with_default_command(argv: Sequence[str], default: str | None) -> list[str]:
    """`argv` with `default` put first when no command is named: no arguments, options of the
    default command, or files (the desktop entry's `ocrdesk %F`). A first word that is neither a
    command nor a path is left to argparse, which names the commands."""
    args = list(argv)
    if default is None:
        return args
    if not args:
        return [default]
    first = args[0]
    if first in (*COMMANDS, default) or first in ("-h", "--help", "--version"):
        return args
    if first.startswith("-") or "/" in first or "." in first or Path(first).exists():
        return [default, *args]
    return args


def _options(args: argparse.Namespace) -> ConvertOptions:
    if Task(args.task).needs_prompt and not args.prompt:
        raise UsageError(f"--task {args.task} needs --prompt")
    try:
        whitelist = [int(v) for v in args.whitelist_token_ids.split(",") if v.strip()]
    except ValueError as exc:
        raise UsageError(f"--whitelist-token-ids: {exc}") from exc
    sampling = Sampling(
        max_tokens=args.max_tokens,
        ngram_size=args.ngram_size,
        window_size=args.window_size,
        whitelist_token_ids=whitelist,
        logprobs=args.confidence,
        extra_body=dict(args.request_field),
    )
    return ConvertOptions(
        task=Task(args.task),
        family=ModelFamily(args.family) if args.family else None,
        prompt=args.prompt,
        sampling=sampling,
        dpi=args.dpi,
        concurrency=args.concurrency,
        first_window=args.first_window,
        retry=args.retry == "auto",
        image_format=args.image_format,
        deltas=False,  # the progress is of pages, not of their text
    )


class _Progress:
    """One progress bar per document (pages, pages/s, ETA); plain lines when not on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bars: dict[int, tqdm[Any]] = {}
        self.tty = sys.stderr.isatty()

    def opened(self, job: DocumentJob, name: str, total: int, already: int) -> None:
        if self.quiet or not self.tty:
            return
        self.bars[id(job)] = tqdm(
            total=total,
            initial=already,
            desc=printable(name)[:40],
            unit="page",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def page(self, job: DocumentJob) -> None:
        bar = self.bars.get(id(job))
        if bar is not None:
            bar.update(1)

    def finished(self, job: DocumentJob, line: str) -> None:
        bar = self.bars.pop(id(job), None)
        if bar is not None:
            bar.close()
        if not self.quiet:
            self.write(line)

    def write(self, line: str) -> None:
        tqdm.write(printable(line), file=sys.stderr)


async def convert(args: argparse.Namespace) -> int:
    """Run `ocrdesk convert`; returns the exit status."""
    options = _options(args)
    if args.local and args.server:
        raise UsageError("--local and --server exclude each other")
    paths, missing = find_documents(args.inputs)
    failed = False
    for error in missing:
        print(f"ocrdesk: {printable(str(error))}", file=sys.stderr)
        failed = True
    if not paths:
        print("ocrdesk: no documents to convert", file=sys.stderr)
        return 1

    local: LocalServerGroup | None = None
    server_start_seconds: float | None = None
    if args.server:
        clients = [
            ModelClient(url, api_key=args.api_key, model=args.model, timeout=args.timeout)
            for url in args.server
        ]
    else:
        local = LocalServerGroup(_local_config(args), on_status=_print_status(args.quiet))
        start_began = time.monotonic()
        try:
            await local.start()
            server_start_seconds = time.monotonic() - start_began
        except OCRDeskError as exc:
            print(f"ocrdesk: the local vLLM server did not start: {exc}", file=sys.stderr)
            if isinstance(exc, EngineStartError) and exc.log_tail:
                print(f"  last lines of {local.log_path}:\n{exc.log_tail}", file=sys.stderr)
            await local.stop()
            return 1
        clients = [supervised_client(server, timeout=args.timeout) for server in local.servers]
    pool = ServerPool(clients)
    try:
        try:
            model = await clients[0].resolve_model()
            for client in clients[1:]:
                await client.resolve_model()
        except OCRDeskError as exc:
            print(f"ocrdesk: {exc}", file=sys.stderr)
            return 1

        try:
            args.output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"ocrdesk: {describe_write_error(exc, args.output)}", file=sys.stderr)
            return 1
        taken: set[str] = set()
        sink = ExportSink(
            model=model,
            task=options.task.value,
            math=MathStyle(args.math),
            formats=args.formats,
            text_layer=args.text_layer,
        )
        jobs: list[DocumentJob] = []
        for path in paths:
            job = DocumentJob(path, pages=args.pages, password=args.password)
            for note in await asyncio.to_thread(
                sink.open, job, args.output, taken, resume=args.resume
            ):
                print(f"ocrdesk: {printable(note)}", file=sys.stderr)
            await asyncio.to_thread(_turn_pages, job, sink.exports[id(job)])
            jobs.append(job)

        progress = _Progress(args.quiet)
        truncated: list[str] = []
        flagged: dict[FlagKind, dict[str, set[int]]] = {}  # kind -> document -> pages to check
        stats = _Stats()
        unwritten: dict[int, int] = {}  # id(job) -> pages whose journal entry was not written
        pipeline = Pipeline(pool, options)
        async for event in pipeline.run(jobs):
            stats.see(event)
            failure = (
                await asyncio.to_thread(sink.handle, event)
                if isinstance(event, HANDLED_EVENTS)
                else None
            )
            if failure is not None:
                failed = True
                if failure.page is not None:
                    unwritten[id(event.job)] = unwritten.get(id(event.job), 0) + 1
                    if unwritten[id(event.job)] > MAX_WRITE_ERRORS_SHOWN:
                        failure = None  # counted in the document's line
                if failure is not None:
                    progress.write(f"ocrdesk: {failure}")
            if isinstance(event, DocumentOpened):
                progress.opened(
                    event.job, path_name(event.job), len(event.pages), len(event.job.skip)
                )
            elif isinstance(event, (PageFinished, PageFailed)):
                progress.page(event.job)
                if event.result.status is PageStatus.FAILED:
                    failed = True
                    progress.write(
                        f"ocrdesk: {event.job.label}: page {event.result.number} failed: "
                        f"{event.result.error}"
                    )
                elif event.result.status is PageStatus.TRUNCATED:
                    truncated.append(f"{event.job.label}: page {event.result.number}")
                for flag in event.result.flags:
                    if flag.kind is not FlagKind.TRUNCATED:  # said on its own line below
                        documents = flagged.setdefault(flag.kind, {})
                        documents.setdefault(event.job.label, set()).add(event.result.number)
            elif isinstance(event, DocumentFailed):
                failed = True
                progress.write(f"ocrdesk: {event.error}")
            elif isinstance(event, DocumentFinished):
                lost = unwritten.get(id(event.job), 0)
                statuses = event.statuses.values()
                done = sum(s is not PageStatus.FAILED for s in statuses) - lost
                line = f"{event.job.label}: {done}/{len(statuses)} pages"
                line += f" -> {sink.exports[id(event.job)].folder}"
                if lost:
                    line += f" ({lost} could not be written)"
                progress.finished(event.job, line)
        for item in truncated:
            print(
                f"ocrdesk: warning: {item} hit max_tokens (kept, flagged truncated)",
                file=sys.stderr,
            )
        for kind, documents in sorted(flagged.items(), key=lambda item: item[0].value):
            shown = "; ".join(
                f"{printable(label)}: {'pages' if len(pages) > 1 else 'page'} "
                f"{format_page_range(pages)}"
                for label, pages in documents.items()
            )
            print(f"ocrdesk: check ({kind.value}): {shown}", file=sys.stderr)
        summary = stats.summary()
        summary["in_flight_limits"] = pipeline.limits
        summary["flagged_pages"] = {
            k.value: sum(len(pages) for pages in v.values()) for k, v in flagged.items()
        }
        if server_start_seconds is not None:
            summary["server_start_seconds"] = round(server_start_seconds, 1)
        if not args.quiet and summary["pages"]:
            print(stats.line(summary), file=sys.stderr)
        if args.stats is not None:
            args.stats.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        return 1 if failed else 0
    finally:
        await pool.close()
        if local is not None:
            await local.stop()


def _turn_pages(job: DocumentJob, export: DocumentExport) -> None:
    """The turns a person gave `job`'s pages in the window, kept in its export folder
    (engine/rotation.py): its pages are rendered turned, and a resumed page turned since it was
    read is read again (unless a person edited it; the sink marks it read once written)."""
    store = RotationStore(export.folder, export.source)
    job.rotations = store.load()
    job.skip = store.kept(job.skip, export.edits.edited_pages())


def supervised_client(server: LocalServer, *, timeout: float = 300.0) -> ModelClient:
    """A client of a local server that restarts the server when it dies mid-job.

    Pages whose requests fail because the server went away are re-sent by the client's retries
    once the restart is done (to the new port and key); finished pages are never redone."""
    client = ModelClient(server.url, api_key=server.api_key, model=server.model, timeout=timeout)

    async def restart() -> tuple[str, str | None]:
        await server.ensure_running()
        return server.url, server.api_key

    return restarting(client, restart)


def _print_status(quiet: bool) -> Callable[[str], None]:
    def show(status: str) -> None:
        if not quiet:
            print(f"local vLLM: {status}", file=sys.stderr, flush=True)

    return show


async def serve(args: argparse.Namespace) -> int:
    """Run the local server until interrupted."""
    server = LocalServer(_local_config(args), on_status=_print_status(False))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await server.start()
        except EngineStartError as exc:
            print(f"ocrdesk: the local vLLM server did not start: {exc}", file=sys.stderr)
            if exc.log_tail:
                print(f"  last lines of {server.log_path}:\n{exc.log_tail}", file=sys.stderr)
            return 1
        print(f"serving {server.model}\n  url:     {server.url}\n  api key: {server.api_key}")
        print(f"  log:     {server.log_path}\nCtrl+C stops it.", flush=True)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except TimeoutError:
                if not server.is_running():
                    print("ocrdesk: the server exited; see its log", file=sys.stderr)
                    print(server.log_tail(20), file=sys.stderr)
                    return 1
        return 0
    finally:
        await server.stop()


def export_documents(args: argparse.Namespace) -> int:
    """Run `ocrdesk export`: each folder's files rebuilt from its journal; returns the exit
    status (1 when any folder or format could not be written)."""
    status = 0
    for folder in args.folders:
        try:
            export = DocumentExport.from_journal(
                folder,
                math=MathStyle(args.math),
                formats=args.formats,
                text_layer=args.text_layer,
                password=args.password,
            )
        except OSError as exc:
            print(f"ocrdesk: {printable(str(folder))}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
            continue
        try:
            export.finish()
        except ExportFailed as exc:
            for reason in exc.reasons:
                print(f"ocrdesk: {printable(str(folder))}: {printable(reason)}", file=sys.stderr)
            status = 1
            continue
        except OSError as exc:
            print(f"ocrdesk: {printable(describe_write_error(exc, folder))}", file=sys.stderr)
            status = 1
            continue
        print(f"{printable(str(folder))}: {', '.join(export.formats)}")
    return status


def _export_command(args: argparse.Namespace) -> int:
    return export_documents(args)


def _serve_command(args: argparse.Namespace) -> int:
    return asyncio.run(serve(args))


def _doctor_command(args: argparse.Namespace) -> int:
    checks = asyncio.run(
        run_checks(
            model=args.model,
            server=args.check_server or args.server,
            api_key=args.api_key,
            vllm=args.vllm,
            check_answer=args.check_server is not None,
        )
    )
    print(format_checks(checks))
    return doctor_exit_code(checks)


def _install_desktop_command(args: argparse.Namespace) -> int:
    if not desktop_install.supported():
        print(
            f"ocrdesk: install-desktop is for freedesktop menus (Linux, BSD), not {sys.platform}",
            file=sys.stderr,
        )
        return 1
    if args.uninstall:
        removed = desktop_install.uninstall(args.data_home)
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print("nothing to remove")
        return 0
    try:
        written = desktop_install.install(args.data_home)
    except OSError as exc:
        print(f"ocrdesk: could not install the desktop entry: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


class _Stats:
    """Throughput figures of one run: pages/s, time to the first finished page, tokens/s.

    Rates count finished pages only (a failed page took no model time worth counting), and
    tokens only when the server reported usage for some page (None otherwise, never 0)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.pages = 0
        self.failed = 0
        self.tokens: int | None = None
        self.page_seconds: list[float] = []

    def see(self, event: object) -> None:
        if isinstance(event, (PageFinished, PageFailed)):
            now = time.monotonic() - self.started
            self.pages += 1
            if isinstance(event, PageFailed) or event.result.status is PageStatus.FAILED:
                self.failed += 1
                return
            if self.first is None:
                self.first = now
            if event.result.output_tokens is not None:
                self.tokens = (self.tokens or 0) + event.result.output_tokens
            self.page_seconds.append(event.result.seconds)

    def summary(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        finished = self.pages - self.failed
        return {
            "pages": self.pages,
            "failed": self.failed,
            "seconds": round(wall, 3),
            "pages_per_second": round(finished / wall, 4) if wall and finished else None,
            "first_page_seconds": round(self.first, 3) if self.first is not None else None,
            "output_tokens": self.tokens,
            "output_tokens_per_second": (
                round(self.tokens / wall, 1) if wall and self.tokens is not None else None
            ),
            "mean_page_seconds": (
                round(sum(self.page_seconds) / len(self.page_seconds), 3)
                if self.page_seconds
                else None
            ),
        }

    @staticmethod
    def line(s: dict[str, Any]) -> str:
        pages = f"{s['pages']} page{'' if s['pages'] == 1 else 's'}"
        if s["failed"]:
            pages += f" ({s['failed']} failed)"
        head = f"{pages} in {s['seconds']:.1f} s: "
        if s["pages_per_second"] is None:
            return head + "no page finished"
        figures = [f"{s['pages_per_second']:.2f} pages/s"]
        if s["first_page_seconds"] is not None:
            figures.append(f"first page after {s['first_page_seconds']:.1f} s")
        if s["output_tokens_per_second"] is not None:
            figures.append(f"{s['output_tokens_per_second']:.0f} output tokens/s")
        limits = s.get("in_flight_limits") or []
        if len(limits) > 1:
            figures.append(f"up to {max(limits)} pages in flight (found from the server's load)")
        return head + ", ".join(figures)


def path_name(job: DocumentJob) -> str:
    return Path(job.label).name


def _convert_command(args: argparse.Namespace) -> int:
    return asyncio.run(convert(args))


def main(
    argv: Sequence[str] | None = None,
    extra_commands: Callable[[Subparsers[argparse.ArgumentParser]], None] | None = None,
    default_command: str | None = None,
) -> int:
    """Run one command; `ocrdesk.main` passes the window's command as `extra_commands`."""
    parser = build_parser(extra_commands)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(with_default_command(argv, default_command))
    if not hasattr(args, "func"):
        parser.error("name a command")
    try:
        status: int = args.func(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except KeyboardInterrupt:
        print("ocrdesk: interrupted; finished pages are saved (use --resume)", file=sys.stderr)
        return 130
    except OCRDeskError as exc:
        print(f"ocrdesk: {exc}", file=sys.stderr)
        return 1
    return status
