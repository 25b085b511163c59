"""Shared fixtures: corpus locations and the loopback OpenAI test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
MODEL_OUTPUTS = CORPUS / "model-outputs"
REAL_PAGE_PDF = CORPUS / "pages" / "medical-report-p1.pdf"
REAL_PAGE_RAW = CORPUS / "pages" / "medical-report-p1.raw.txt"


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
