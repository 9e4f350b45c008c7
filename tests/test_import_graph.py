"""The direction of the project's imports, and their names.

Connectors bring data into Kafka and know nothing of the worker that reads it, so a connector
deployment needs no faust (they share ``moodshift.models.progress``, a tqdm helper that imports no
torch). The rooms install under one ``moodshift`` namespace (pyproject's ``package-dir``), so every
import names them that way: a bare ``import pipeline`` would work from the repository root only, and
would load a second copy of the module there.
"""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("pipeline", "models", "connectors")


def imported_rooms(path: Path) -> set[str]:
    """The project's rooms a module imports (``moodshift.<room>``), at module level or in functions;
    a bare room name (``pipeline``) is reported as itself."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "moodshift" and len(parts) > 1:
                names.add(f"moodshift.{parts[1]}")
            elif parts[0] in ROOMS:
                names.add(parts[0])
    return names


def test_imported_rooms_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\ndef f():\n    from moodshift.pipeline.settings import Settings\n    import models.cli\n")
    assert imported_rooms(module) == {"moodshift.pipeline", "models"}


def test_no_connector_imports_the_worker() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "connectors").rglob("*.py"))
                 if "moodshift.pipeline" in imported_rooms(path)]
    assert offenders == []


def test_every_import_of_a_room_goes_through_the_moodshift_namespace() -> None:
    paths = [path for folder in (*ROOMS, "benchmarks", "tests") for path in sorted((ROOT / folder).rglob("*.py"))]
    offenders = [str(path.relative_to(ROOT)) for path in paths if imported_rooms(path) & set(ROOMS)]
    assert offenders == []


def test_the_wheel_lists_every_package_of_the_rooms_under_moodshift() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {"moodshift." + ".".join(init.parent.relative_to(ROOT).parts)
               for room in ROOMS for init in (ROOT / room).rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk
    assert setuptools["package-dir"] == {f"moodshift.{room}": room for room in ROOMS}


def test_the_worker_and_the_connectors_import_nothing_of_the_data_extra() -> None:
    """A deployment installs the core dependencies only: the `data` extra (training data, baselines,
    evaluation) must stay out of the worker's and the connectors' imports."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["data"]
    modules = {"scikit-learn": "sklearn", "scikit-video": "skvideo", "vaderSentiment": "vaderSentiment"}
    names = [modules.get(name, name) for name in (spec.split(">")[0].split("=")[0] for spec in extra)]
    code = "import moodshift.pipeline.worker.cli, moodshift.pipeline.worker.app, moodshift.connectors.cli"
    assert loaded_by(code, names) == []


def loaded_by(code: str, modules: list[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    import subprocess
    import sys

    probe = f"import json, sys; {code}; print(json.dumps(sorted(name for name in {modules!r} if name in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_building_the_console_scripts_parser_loads_no_torch() -> None:
    """Every `moodshift` command builds the whole parser (each room registers its subcommands), so a
    room importing torch at module level made `moodshift broker start` or `moodshift ingest` wait
    for it (about 10 s on 2 cores); only commands that run a model load it."""
    code = "from moodshift.pipeline.cli import build_parser; build_parser()"
    assert loaded_by(code, ["torch", "torchvision", "faust"]) == []
