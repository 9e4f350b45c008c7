"""The direction of the project's imports: connectors bring data into Kafka and know nothing of the
worker that reads it, so a connector deployment needs no faust (they share ``models.progress``, a
tqdm helper that imports no torch)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imported_packages_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from pipeline.settings import Settings\n    import models.cli\n")
    assert imported_packages(module) == {"os", "pipeline", "models"}


def test_no_connector_imports_the_worker() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "connectors").rglob("*.py"))
                 if "pipeline" in imported_packages(path)]
    assert offenders == []
