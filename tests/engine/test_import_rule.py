"""The one rule above all: `engine` never imports Qt, directly or indirectly."""

import subprocess
import sys

ENGINE_MODULES = [
    "ocrdesk.engine",
    "ocrdesk.engine.cli",
    "ocrdesk.engine.pipeline",
    "ocrdesk.engine.client",
    "ocrdesk.engine.export",
    "ocrdesk.engine.documents",
    "ocrdesk.engine.parser",
]


def test_engine_imports_no_qt() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {ENGINE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qasync') or m.startswith('ocrdesk.gui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine pulled in Qt modules: {out.stdout.strip()}"
