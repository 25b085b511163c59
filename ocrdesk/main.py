"""The `ocrdesk` command: the engine's CLI (convert, serve, doctor, install-desktop) and the window.

It alone knows both halves: the engine's CLI never imports the GUI, so the `gui` command (and
the default of a bare `ocrdesk` or `ocrdesk FILE...`) is added here, and Qt is imported only
when the window is asked for.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ocrdesk.engine import cli

GUI_COMMAND = "gui"


def _add_gui_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gui = sub.add_parser(GUI_COMMAND, help="open the OCRDesk window (the default with no command)")
    gui.add_argument("files", nargs="*", metavar="FILE")
    gui.add_argument("--server", default=None, metavar="URL")
    gui.add_argument("--api-key", default=None)
    gui.set_defaults(func=_gui_command)


def _gui_command(args: argparse.Namespace) -> int:
    try:
        from ocrdesk.gui.app import run
    except ImportError as exc:
        print(f"ocrdesk: the GUI cannot start here: {exc}", file=sys.stderr)
        return 1
    status: int = run(list(args.files), server=args.server, api_key=args.api_key)
    return status


def with_default_command(argv: Sequence[str]) -> list[str]:
    """`argv` with the window's command put first where no command is named."""
    return cli.with_default_command(argv, GUI_COMMAND)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extra_commands=_add_gui_command, default_command=GUI_COMMAND)


if __name__ == "__main__":
    sys.exit(main())
