"""The GUI touches the engine through one layer: the names `engine/__init__.py` exports (and the
engine modules it exports whole, such as `protocol`), never an engine module of its own choice."""

from __future__ import annotations

import ast
from pathlib import Path

import ocrdesk.engine as engine
from tests.conftest import REPO

#: Engine modules the engine's package exports as modules (`from ocrdesk.engine import protocol`).
EXPORTED_MODULES = {
    name for name in engine.__all__ if type(getattr(engine, name)).__name__ == "module"
}

#: Known breaks of the rule, to be fixed where they are (the engine exporting the names).
KNOWN: set[tuple[str, str]] = set()


def _engine_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each `ocrdesk.engine.<module>` import that is not an exported one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            top, _, rest = name.partition("ocrdesk.engine.")
            if not top and rest and rest.split(".")[0] not in EXPORTED_MODULES:
                found.append((node.lineno, name))
    return found


def test_gui_imports_only_what_the_engine_exports() -> None:
    assert {"protocol", "edits"} <= EXPORTED_MODULES
    bad = [
        f"{path.relative_to(REPO).as_posix()}:{line}: {module}"
        for path in sorted((REPO / "gui").rglob("*.py"))
        for line, module in _engine_imports(path)
        if (path.relative_to(REPO).as_posix(), module) not in KNOWN
    ]
    assert bad == [], "the GUI imports engine modules the engine does not export"


def test_the_rule_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ocrdesk.engine.rotation import Rotation\nimport ocrdesk.engine.pipeline\n"
        "from ocrdesk.engine.protocol import Report\nfrom ocrdesk.engine import Rotation\n",
        encoding="utf-8",
    )
    assert [m for _, m in _engine_imports(bad)] == [
        "ocrdesk.engine.rotation",
        "ocrdesk.engine.pipeline",
    ]
