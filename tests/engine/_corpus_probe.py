"""Open one file with engine.documents and print one JSON line saying what happened.

Run as `python tests/engine/_corpus_probe.py FILE [DPI]` (the corpus test does, one subprocess per
file, so that a crash or hang inside a C library fails one test instead of killing pytest).
Prints {"ok": true, "pages": n, "first": [w, h], "last": [w, h]} after rendering the first and the
last page, or {"error": "<class>", "document_error": bool, "message": "..."}.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

_ENGINE = Path(__file__).resolve().parents[2] / "engine"
# Load engine.documents without engine/__init__.py, which imports the whole engine (the openai
# client among others, about 1 s); the probe needs documents, images and errors only.
_package = types.ModuleType("ocrdesk.engine")
_package.__path__ = [str(_ENGINE)]
sys.modules["ocrdesk.engine"] = _package
# PyMuPDF 2 imports the optional pymupdf.layout (onnxruntime, ~1.3 s) and pymupdf4llm (~0.3 s)
# packages when they are installed, each inside `try: ... except ImportError`. Opening and
# rendering never use them, so the probe hides them: a probe then starts in ~0.3 s, not ~2.5 s.
for _optional in ("pymupdf.layout", "pymupdf4llm"):
    sys.modules.setdefault(_optional, None)  # type: ignore[arg-type]

from ocrdesk.engine.documents import open_document  # noqa: E402
from ocrdesk.engine.errors import DocumentError  # noqa: E402


def main(argv: list[str]) -> int:
    path = argv[1]
    dpi = int(argv[2]) if len(argv) > 2 else 72
    try:
        with open_document(path) as doc:
            first = doc.render(1, dpi)
            last = doc.render(doc.page_count, dpi) if doc.page_count > 1 else first
            if first.mode != "RGB" or last.mode != "RGB":
                raise AssertionError(f"render gave mode {first.mode}/{last.mode}, not RGB")
            result: dict[str, object] = {
                "ok": True,
                "pages": doc.page_count,
                "format": doc.format,
                "first": list(first.size),
                "last": list(last.size),
            }
    except Exception as exc:
        result = {
            "error": type(exc).__name__,
            "document_error": isinstance(exc, DocumentError),
            "message": str(exc),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
