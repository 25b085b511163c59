"""GUI test setup: offscreen Qt, QtWebEngine without the sandbox (tests only), an isolated
QSettings, a qasync event loop, and a Qt message handler that fails a test on any unexpected
Qt warning (as qutebrowser's test suite does)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Root in CI cannot run Chromium's sandbox; only tests and the screenshot script turn it off.
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

import asyncio
import contextlib
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6 import QtWebEngineWidgets  # noqa: F401  (must load before QApplication)
from PySide6.QtCore import QSettings, QtMsgType, qInstallMessageHandler

#: Messages that offscreen Qt and headless Chromium print on a healthy run, each anchored
#: (matched against the whole stripped message) and with where it comes from.
ALLOWED = [
    # Qt's offscreen platform plugin: widgets ask it to pass on size hints (every window).
    r"^This plugin does not support propagateSizeHints\(\)$",
    # QtWebEngine probes the graphics backends at its first page; offscreen has neither Vulkan
    # nor OpenGL, and it falls back to software rendering (once a session, the first web view).
    r"^This plugin does not support createPlatformVulkanInstance$",
    r"^QVulkanInstance: Failed to initialize Vulkan$",
    r"^QRhiGles2: Failed to create (temporary )?context$",
    r"^Failed to create RHI for backend: \w+$",
    r"^GBM is not supported with the current configuration"
    r"( and Vulkan is not available)?\. Fallback to software rendering\.$",
    r"^GPUInfo not initialized on GpuInfoUpdate$",
    # QtWebEngine when a test's window (and its page) is torn down after the profile.
    r"^Release of profile requested but WebEnginePage still not deleted(\. Expect troubles !)?$",
    # Qt without a login session (CI as root): no XDG_RUNTIME_DIR, or one it did not make.
    r"^QStandardPaths: XDG_RUNTIME_DIR not set, defaulting to '[^']+'$",
    r"^QStandardPaths: wrong permissions on runtime directory [^,]+, 0\d+ instead of 0700$",
]
_ALLOWED = [re.compile(pattern) for pattern in ALLOWED]
_messages: list[str] = []


def _handler(kind: QtMsgType, context: Any, message: str) -> None:
    if kind in (QtMsgType.QtDebugMsg, QtMsgType.QtInfoMsg):
        return
    if any(pattern.match(message.strip()) for pattern in _ALLOWED):
        return
    _messages.append(f"{kind.name}: {message}")


qInstallMessageHandler(_handler)


@pytest.fixture(autouse=True)
def fail_on_qt_warnings() -> Iterator[None]:
    _messages.clear()
    yield
    found, _messages[:] = list(_messages), []
    if found:
        pytest.fail("unexpected Qt messages:\n" + "\n".join(found))


_LOOP: qasync.QEventLoop | None = None


@pytest.fixture
def qloop(qapp: Any) -> Iterator[qasync.QEventLoop]:
    """The session's qasync loop, marked running for this test.

    The loop is never stopped or closed: Qt's own event processing (qtbot.waitUntil) drives it,
    the way it runs inside the app's `exec()`. Closing or re-entering `exec()` per test crashed
    QtWebEngine under offscreen, and a loop left "running" would confuse engine tests, so the
    running mark is set and cleared around each GUI test."""
    global _LOOP
    if _LOOP is None:
        _LOOP = qasync.QEventLoop(qapp, already_running=False)
    loop = _LOOP
    asyncio.set_event_loop(loop)
    asyncio.events._set_running_loop(loop)
    # What run_forever() would install: async generators are closed on the loop, not by GC.
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook, finalizer=loop._asyncgen_finalizer_hook
    )
    try:
        yield loop
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        sys.set_asyncgen_hooks(*hooks)
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)


#: How long a test waits for what it waits for, unless it says: generous, because two CI runs on
#: one 2-core machine make a document open in seconds, not milliseconds; a wait ends the moment
#: its condition holds, so only a failing test waits this long.
WAIT_SECONDS = 60


def arun(qtbot: Any, coro: Coroutine[Any, Any, Any], timeout: float = WAIT_SECONDS + 30) -> Any:
    """Run `coro` on the qasync loop while Qt processes events; return its result."""
    task = asyncio.ensure_future(coro)
    qtbot.waitUntil(task.done, timeout=int(timeout * 1000))
    return task.result()


async def wait_until(
    predicate: Callable[[], Any], timeout: float = WAIT_SECONDS, what: str = ""
) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def js(view: Any, script: str) -> Any:
    """Evaluate `script` in a ResultView's page and return its value."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    view.run_js(script, done)
    return await asyncio.wait_for(future, 10)


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from ocrdesk.gui.settings import Settings

    q = QSettings(str(tmp_path / "ocrdesk.ini"), QSettings.Format.IniFormat)
    s = Settings(q)
    s.set("output/folder", str(tmp_path / "out"))
    s.set("engine/mode", "remote")
    return s


# Qt WebEngine aborts the interpreter while it is torn down after the last test (PySide6 6.12,
# Chromium's threads outlive Python's finalisation): every test passed, yet the process dies with
# SIGABRT. Once pytest has printed its summary, leave with pytest's own exit status and skip the
# finalisation that crashes. Test outcomes are not affected: this runs after all of them.
_exit_status: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])


def open_window(qtbot: Any, settings: Any, url: str) -> tuple[Any, Any]:
    """The app's (controller, window) against the server at `url`, shown, with the engine
    ready and the result view's page loaded."""
    from ocrdesk.gui.app import build

    controller, window = build([], server=url, settings=settings, history=False)
    qtbot.addWidget(window)
    window.show()

    async def ready() -> None:
        await wait_until(lambda: controller.state == "ready", what="engine ready")
        await wait_until(lambda: window.result_view.ready, what="result view loaded")

    arun(qtbot, ready())
    return controller, window


@pytest.fixture
def windows(qloop: Any, qtbot: Any, settings: Any) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """windows(outputs, token_delay=0.0) -> (controller, window) from `open_window`, against a
    loopback server of its own that answers the requests with `outputs` in turn (one string:
    every request). Every controller is closed and every server stopped afterwards."""
    from tests.fakes.openai_server import FakeOpenAIServer

    with contextlib.ExitStack() as servers:
        controllers: list[Any] = []

        def launch(outputs: str | Sequence[str], token_delay: float = 0.0) -> tuple[Any, Any]:
            answers = [outputs] if isinstance(outputs, str) else list(outputs)
            server = servers.enter_context(FakeOpenAIServer(answers, token_delay=token_delay))
            controller, window = open_window(qtbot, settings, server.url)
            controllers.append(controller)
            return controller, window

        yield launch
        for controller in controllers:
            arun(qtbot, controller.close())
