"""One window per user and settings folder: a second `ocrdesk FILE` hands FILE to the first.

    instance = SingleInstance(server_name(settings_folder))
    if not instance.claim(files):            # another window has them now
        print(handed_message(len(files)))
        return 0
    instance.filesReceived.connect(window_opens_them)

The first instance listens on a QLocalServer (a Unix socket, a named pipe on Windows) whose
name is made of the user and the settings folder: two windows sharing settings and an output
folder would write into each other's folders, while a test or a person with a settings folder
of its own (XDG_CONFIG_HOME) gets a window of its own. A second instance connects, sends the
files' absolute paths as one JSON line, waits for the answer and exits. A socket left behind by
an instance that crashed answers no connection: it is removed and this instance becomes the
first.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QByteArray, QObject, Signal
from PySide6.QtNetwork import QAbstractSocket, QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

#: How long a second instance waits for the first to accept and to answer (milliseconds): the
#: first may be busy (a page being laid out), so this is generous.
CONNECT_MS = 2_000
ANSWER_MS = 20_000
ANSWER = b"ok\n"


class NotAnswering(RuntimeError):
    """An instance holds the socket and accepted the connection, but did not answer."""


def handed_message(count: int) -> str:
    """What a second instance prints before it exits."""
    return f"OCRDesk is already running: handed {count} file(s) to it"


def server_name(settings_folder: str | os.PathLike[str]) -> str:
    """The local server's name for this user and `settings_folder`."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    folder = os.path.realpath(os.fspath(settings_folder))
    digest = hashlib.sha256(folder.encode()).hexdigest()[:16]
    safe_user = "".join(c if c.isalnum() else "_" for c in user)[:32]
    return f"ocrdesk-{safe_user}-{digest}"


class SingleInstance(QObject):
    """The first instance's server, or a second instance's hand-over (see the module text)."""

    filesReceived = Signal(list)  # absolute paths (an empty list: just show the window)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytes] = {}

    def claim(self, files: Sequence[str]) -> bool:
        """True when this is the first instance (it now listens); False when `files` were
        handed to the instance that runs already. NotAnswering when that instance hangs."""
        if self._hand_over(files):
            return False
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            if server.serverError() != QAbstractSocket.SocketError.AddressInUseError:
                log.warning("no single-instance server (%s): %s", self.name, server.errorString())
                return True
            # Either another instance started at this moment, or a crashed one left its socket.
            if self._hand_over(files):
                return False
            log.info("removing the stale socket %s of an instance that is gone", self.name)
            QLocalServer.removeServer(self.name)
            if not server.listen(self.name):
                log.warning("no single-instance server (%s): %s", self.name, server.errorString())
                return True
        server.newConnection.connect(self._accept)
        self.server = server
        return True

    def close(self) -> None:
        """Stop listening (and drop any hand-over still being read)."""
        for socket in list(self._buffers):
            self._finish(socket)
        if self.server is not None:
            self.server.newConnection.disconnect(self._accept)
            self.server.close()
            self.server.deleteLater()
            self.server = None

    # -- the second instance -------------------------------------------------------------------

    def _hand_over(self, files: Sequence[str]) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(CONNECT_MS):
            return False
        paths = [str(Path(f).absolute()) for f in files]
        socket.write(QByteArray(json.dumps({"files": paths}).encode() + b"\n"))
        socket.flush()
        answer = b""
        while ANSWER not in answer and socket.waitForReadyRead(ANSWER_MS):
            answer += bytes(socket.readAll().data())
        socket.disconnectFromServer()
        if ANSWER not in answer:
            # Connected but no answer: the first instance hangs. Saying so beats a silent exit.
            raise NotAnswering(f"OCRDesk is running but did not take the files ({self.name})")
        return True

    # -- the first instance --------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.server is not None
        while (socket := self.server.nextPendingConnection()) is not None:
            self._buffers[socket] = b""
            socket.readyRead.connect(self._ready)
            socket.disconnected.connect(self._ready)
            self._read(socket)

    def _ready(self) -> None:
        socket = self.sender()
        if isinstance(socket, QLocalSocket):
            self._read(socket)

    def _read(self, socket: QLocalSocket) -> None:
        if socket not in self._buffers:
            return
        data = self._buffers[socket] + bytes(socket.readAll().data())
        self._buffers[socket] = data
        if b"\n" not in data:
            if socket.state() != QLocalSocket.LocalSocketState.ConnectedState:
                self._finish(socket)  # gone before it said anything
            return
        try:
            files = [str(f) for f in json.loads(data.split(b"\n", 1)[0])["files"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed hand-over on %s", self.name)
            self._finish(socket)
            return
        socket.write(QByteArray(ANSWER))
        socket.flush()
        self._finish(socket)
        self.filesReceived.emit(files)

    def _finish(self, socket: QLocalSocket) -> None:
        """Done with `socket`: no signal of it reaches this object again (it may be destroyed
        before the socket is), what was written is sent, and the socket is deleted."""
        self._buffers.pop(socket, None)
        socket.readyRead.disconnect(self._ready)
        socket.disconnected.disconnect(self._ready)
        if socket.state() == QLocalSocket.LocalSocketState.UnconnectedState:
            socket.deleteLater()
            return
        # Deleted once closed: closing waits for the answer to be written, deleting does not.
        socket.disconnected.connect(socket.deleteLater)
        socket.disconnectFromServer()
