"""One window per user and settings folder (issue 11, item 19): a second instance hands its
files to the first through a real QLocalServer between processes and exits 0 saying so; the
socket of an instance that was killed is taken over; another settings folder is another name."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from ocrdesk.gui.single_instance import SingleInstance, handed_message, server_name
from tests.conftest import REPO
from tests.engine.helpers import make_pdf
from tests.processes import isolated_env

#: A child instance: claims NAME with FILES, prints "first" or "handed"; a first one then
#: prints each hand-over it receives as a JSON line.
CHILD = """
import json, sys
from PySide6.QtCore import QCoreApplication, QTimer
from ocrdesk.gui.single_instance import SingleInstance
app = QCoreApplication([])
instance = SingleInstance(sys.argv[1])
first = instance.claim(sys.argv[2:])
print("first" if first else "handed", flush=True)
if first:
    instance.filesReceived.connect(lambda files: print(json.dumps(files), flush=True))
    QTimer.singleShot(120_000, app.quit)  # never outlives a test run that lost it
    app.exec()
"""
DEADLINE = 60.0


class Child:
    """A child process whose stdout lines are read as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env or {**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def line(self, wanted: str | None = None) -> str:
        """The next line (the next one starting with `wanted`), waiting up to DEADLINE."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"no line {wanted or ''!r} from the child") from None
            if wanted is None or line.startswith(wanted):
                return line

    def exit_status(self, qtbot: Any) -> int:
        """The exit status, with this process's Qt events handled meanwhile (it may be the
        first instance the child talks to)."""
        qtbot.waitUntil(lambda: self.process.poll() is not None, timeout=int(DEADLINE * 1000))
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.stop()


def _child(children: list[Child], tmp_path: Path, name: str, *files: str) -> Child:
    child = Child([sys.executable, "-c", CHILD, name, *files], cwd=tmp_path)
    children.append(child)
    return child


def test_a_second_instance_hands_its_files_to_the_first(
    qapp: Any, tmp_path: Path, children: list[Child]
) -> None:
    name = server_name(tmp_path / "settings")
    first = _child(children, tmp_path, name)
    assert first.line() == "first"
    second = SingleInstance(name)
    assert second.claim(["scan.pdf", "/abs/page.png"]) is False
    assert first.line("[") == f'["{Path.cwd() / "scan.pdf"}", "/abs/page.png"]'


def test_the_first_instance_receives_them(
    qapp: Any, qtbot: Any, tmp_path: Path, children: list[Child]
) -> None:
    instance = SingleInstance(server_name(tmp_path / "settings"))
    assert instance.claim([]) is True
    try:
        with qtbot.waitSignal(instance.filesReceived, timeout=int(DEADLINE * 1000)) as got:
            second = _child(children, tmp_path, instance.name, "a.pdf")
        assert got.args == [[str(tmp_path / "a.pdf")]]
        assert second.exit_status(qtbot) == 0
        assert second.line() == "handed"
    finally:
        instance.close()


@pytest.mark.skipif(sys.platform == "win32", reason="a named pipe goes with its process")
def test_a_killed_instances_socket_is_taken_over(
    qapp: Any, qtbot: Any, tmp_path: Path, children: list[Child]
) -> None:
    name = server_name(tmp_path / "settings")
    crashed = _child(children, tmp_path, name)
    assert crashed.line() == "first"
    crashed.process.send_signal(signal.SIGKILL)
    crashed.process.wait(DEADLINE)
    instance = SingleInstance(name)
    assert instance.claim(["x.pdf"]) is True  # the files are this instance's own
    try:
        assert instance.server is not None
        assert Path(instance.server.fullServerName()).exists()
        # ... and it is the first now: a third instance hands its files to it
        with qtbot.waitSignal(instance.filesReceived, timeout=int(DEADLINE * 1000)):
            third = _child(children, tmp_path, name, "y.pdf")
        assert third.exit_status(qtbot) == 0
        assert third.line() == "handed"
    finally:
        instance.close()


def test_the_name_is_per_settings_folder() -> None:
    assert server_name("/home/a/.config/OCRDesk") == server_name("/home/a/.config/OCRDesk/")
    assert server_name("/home/a/.config/OCRDesk") != server_name("/tmp/other/OCRDesk")


def test_ocrdesk_file_with_a_window_open_hands_the_file_over_and_exits_0(
    qapp: Any, qtbot: Any, tmp_path: Path, children: list[Child]
) -> None:
    """The real command: `ocrdesk gui FILE` beside a running instance of the same settings."""
    home = tmp_path / "home"
    pdf = make_pdf(tmp_path / "scan.pdf", 1)
    instance = SingleInstance(server_name(home / ".config" / "OCRDesk"))
    assert instance.claim([]) is True
    try:
        env = isolated_env(home, PYTHONPATH=str(REPO))
        command = [sys.executable, "-m", "ocrdesk", "gui", pdf.name]
        with qtbot.waitSignal(instance.filesReceived, timeout=int(DEADLINE * 1000)) as got:
            second = Child(command, cwd=tmp_path, env=env)
            children.append(second)
        assert got.args == [[str(pdf)]]
        assert second.exit_status(qtbot) == 0
        assert second.line("OCRDesk") == handed_message(1)
    finally:
        instance.close()
