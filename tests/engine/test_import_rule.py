"""The one rule above all: `engine` never imports Qt, directly or indirectly. And the rule of
the one PyMuPDF owner: only engine/mupdf.py imports PyMuPDF (every call holds its lock)."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

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


#: The one module that may import PyMuPDF: it holds the lock every PyMuPDF call needs.
MUPDF_OWNER = "engine/mupdf.py"
PYMUPDF_NAMES = ("pymupdf", "fitz")


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (  # importlib.import_module("pymupdf") / __import__("fitz")
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (getattr(node.func, "id", None) or getattr(node.func, "attr", None))
            in ("import_module", "__import__")
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_only_engine_mupdf_imports_pymupdf() -> None:
    # ocrdesk/ links to engine/ and gui/: only its own top-level modules are read there.
    sources = [*(REPO / "engine").rglob("*.py"), *(REPO / "gui").rglob("*.py")]
    sources += (REPO / "ocrdesk").glob("*.py")
    assert (REPO / MUPDF_OWNER) in sources
    importers = sorted(
        p.relative_to(REPO).as_posix() for p in sources if _imported_roots(p) & set(PYMUPDF_NAMES)
    )
    assert importers == [MUPDF_OWNER], f"PyMuPDF imported outside {MUPDF_OWNER}: {importers}"


def test_the_pymupdf_rule_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    for code in ("import pymupdf as m\n", "from fitz import Rect\n", "__import__('pymupdf')\n"):
        bad.write_text(code, encoding="utf-8")
        assert _imported_roots(bad) & set(PYMUPDF_NAMES), code
    bad.write_text("from . import mupdf\nimport pymupdf_fonts_other\n", encoding="utf-8")
    assert not _imported_roots(bad) & set(PYMUPDF_NAMES)
