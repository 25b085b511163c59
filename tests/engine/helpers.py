"""Small builders for engine tests: documents made on the spot, and the environment for the
stand-in vllm (tests/fakes/vllm)."""

from __future__ import annotations

import os
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw


def make_pdf(path: Path, pages: int, *, text: str = "Page") -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 72), f"{text} {i + 1}", fontsize=24)
        page.draw_rect(pymupdf.Rect(72, 300, 400, 500), color=(0, 0, 0))
    doc.save(path)
    doc.close()
    return path


def make_png(path: Path, size: tuple[int, int] = (600, 400)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 20), "Hello OCR", fill="black")
    img.save(path)
    return path


def isolate_fake_vllm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FAKE_VLLM_* settings or OCRDESK_VLLM from outside; the server logs and the stand-in's
    state files go under `tmp_path`."""
    for name in [n for n in os.environ if n.startswith("FAKE_VLLM_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("OCRDESK_VLLM", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("FAKE_VLLM_STATE_DIR", str(tmp_path))
