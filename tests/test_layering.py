"""Layers point one way: pipelines → components → trainers → core. Checked on every import, lazy ones too.

Components may use trainers' model loaders (``trainers.classifier``: any model folder by its
model.json), which the Evaluator needs to compare a candidate with the served model; trainers
never import components.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Which of twinflow's packages each package may import.
ALLOWED = {
    "core": {"core"},
    "components": {"core", "components", "trainers"},
    "trainers": {"core", "trainers"},
    "schemas": {"schemas"},
    "serving": {"core", "trainers", "serving"},
    "pipelines": {"core", "components", "trainers", "pipelines", "schemas", "serving"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {file: imports for file, imports in wrong.items() if imports} == {}


def test_core_loads_no_framework_at_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, core.config, core.model_card, core.registry, core.versions, core.fs, core.images; "
        "import pipelines.flags; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'tfx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
