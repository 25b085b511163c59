"""Shared test setup: corpus locations, the loopback OpenAI test server, a log handler that
fails a test on an unexpected WARNING-or-worse record from an `ocrdesk` logger (as
tests/gui/conftest.py does for Qt's warnings), and the unit / end-to-end split.

A test that expects such records says so: `@pytest.mark.allow_log(r"^pattern$", ...)` (matched
against each record's message), or it takes `caplog` and checks the records itself.

`e2e` is set here by one rule (`_is_e2e`), so that no test file needs its own mark: tests that
start processes, servers or windows. `make test-unit` runs the rest (`-m "not e2e"`).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
MODEL_OUTPUTS = CORPUS / "model-outputs"
REAL_PAGE_PDF = CORPUS / "pages" / "medical-report-p1.pdf"
REAL_PAGE_RAW = CORPUS / "pages" / "medical-report-p1.raw.txt"

#: The loggers whose warnings fail a test: every module of the app logs under this name.
APP_LOGGER = "ocrdesk"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared corpus sits beside the checkout)")
    return path


@pytest.fixture
def fake_server() -> Iterator[object]:
    """A started loopback OpenAI test server with its default output."""
    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server


class _WarningRecords(logging.Handler):
    """Keeps the app's WARNING-or-worse records (from any thread) for the running test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_warnings = _WarningRecords()
logging.getLogger(APP_LOGGER).addHandler(_warnings)


def unexpected_records(
    records: list[logging.LogRecord], allowed: list[str]
) -> list[logging.LogRecord]:
    """The records whose message matches none of the `allowed` patterns (re.search)."""
    return [r for r in records if not any(re.search(p, r.getMessage()) for p in allowed)]


@pytest.fixture(autouse=True)
def own_config_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test has a config folder of its own: the window's settings file there
    (engine/app_settings.py) is one the test made, never the machine user's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(autouse=True)
def fail_on_logged_warnings(request: pytest.FixtureRequest) -> Iterator[None]:
    _warnings.records.clear()
    yield
    found, _warnings.records[:] = list(_warnings.records), []
    if "caplog" in request.fixturenames:
        return
    allowed = [p for mark in request.node.iter_markers("allow_log") for p in mark.args]
    unexpected = unexpected_records(found, allowed)
    if unexpected:
        lines = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in unexpected]
        intro = "unexpected log records (mark the test allow_log if they are expected):"
        pytest.fail("\n".join([intro, *lines]))


# The end-to-end tests start processes (the app, the conversion worker, the stand-in vLLM),
# servers (the loopback OpenAI server) or windows. A test is e2e when it uses one of these
# fixtures, when its own code names one of these starters, or when its module is listed (its
# helpers start them); everything else is a unit test.
E2E_FIXTURES = frozenset({"fake_server", "qloop", "windows", "built", "installed", "corpus_probes"})
E2E_STARTERS = re.compile(
    r"\b(FakeOpenAIServer|subprocess|Popen|RunWorker|LocalServer|open_window|build|"
    r"sigterm_window|convert_against_test_server)\b"
)
E2E_MODULES = frozenset(
    {
        "tests/engine/test_cli.py",
        "tests/engine/test_cli_local.py",
        "tests/engine/test_local_server.py",
        "tests/gui/test_app_signals.py",
        "tests/packaging/test_bundle.py",
        "tests/packaging/test_wheel.py",
    }
)


def _is_e2e(item: pytest.Item) -> bool:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if Path(str(item.fspath)).resolve().relative_to(REPO).as_posix() in E2E_MODULES:
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    return bool(E2E_STARTERS.search(source))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
