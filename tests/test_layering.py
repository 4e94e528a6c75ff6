"""Layers point one way, modules import no circle, and twinflow is imported only as ``twinflow.<package>``.

The layers, lowest first: core (contracts, config, file layer) → schemas, model_store (everything under the
serving folder) → trainers (run_fn modules, model formats) → components (TFX components; the Evaluator uses
trainers' loaders to compare a candidate with the served model) → serving (the model server) → pipelines
(pipeline definition, runners, report, command line). Checked on every import, lazy ones too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinflow.core.packages import NAMESPACE, PACKAGES

ROOT = Path(__file__).resolve().parent.parent
# Which of twinflow's packages each package may import.
ALLOWED = {
    "core": {"core"},
    "schemas": {"core", "schemas"},
    "model_store": {"core", "model_store"},
    "trainers": {"core", "model_store", "trainers"},
    "components": {"core", "model_store", "trainers", "components"},
    "serving": {"core", "model_store", "trainers", "serving"},
    "pipelines": {"core", "schemas", "model_store", "trainers", "components", "serving", "pipelines"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join((NAMESPACE, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, as written (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_folder_has_a_layer() -> None:
    assert set(ALLOWED) == set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {}
    for path in _sources(package):
        names = {name.split(".")[1] for name in _imports(path) if name.startswith(NAMESPACE + ".")}
        bare = {name.split(".")[0] for name in _imports(path)} & set(PACKAGES)  # `import core`: a second copy
        if names - ALLOWED[package] or bare:
            wrong[str(path.relative_to(ROOT))] = sorted(names - ALLOWED[package]) + [f"bare {b}" for b in sorted(bare)]
    assert wrong == {}


def test_no_module_imports_a_circle() -> None:
    modules = {_module_name(path): path for package in PACKAGES for path in _sources(package)}
    graph = {
        name: {imported for imported in _imports(path) if imported in modules and imported != name}
        for name, path in modules.items()
    }
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == [], "\n".join(circles)


def test_the_checkout_folders_are_not_importable_under_their_bare_names() -> None:
    """From the checkout's root (where Python finds ``core/`` as a top-level package) ``import core`` is refused,
    and from anywhere else it is not found: only ``twinflow.core`` exists."""
    code = "import core"
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert here.returncode != 0 and "import twinflow.core, not core" in here.stderr, here.stderr
    elsewhere = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert "ModuleNotFoundError: No module named 'core'" in elsewhere.stderr, elsewhere.stderr


def test_core_and_model_store_load_no_framework_at_import() -> None:
    code = (
        "import sys, twinflow.core.config, twinflow.core.model_card, twinflow.core.registry, twinflow.core.fs; "
        "import twinflow.core.images, twinflow.model_store.layout, twinflow.model_store.operations; "
        "import twinflow.model_store.published, twinflow.pipelines.cli.flags; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'tfx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.slow
def test_importing_every_module_changes_no_process_setting() -> None:
    """Imports define things; process-wide settings are bootstrap()'s. The one exception is the tf-keras switch,
    which must hold before TensorFlow loads in processes that run no entry point of ours (Beam workers)."""
    modules = sorted(
        _module_name(path) for package in PACKAGES for path in _sources(package) if path.name != "__main__.py"
    )
    code = f"""
import os, sys, importlib, importlib.metadata as metadata
before = dict(os.environ)
import twinflow.core
switch = sorted(k for k in os.environ if before.get(k) != os.environ.get(k))
# The libraries twinflow builds on set variables of their own at import: theirs, not ours.
import tensorflow, torch, tfx.v1, pytorch_lightning, tensorflow_transform, tensorflow_model_analysis, onnxruntime
frameworks = dict(os.environ)
for name in {modules!r}:
    importlib.import_module(name)
from tensorflow.python.autograph.core import config as autograph
ours = sorted(k for k in set(frameworks) | set(os.environ) if frameworks.get(k) != os.environ.get(k))
print(switch, ours, hasattr(metadata.packages_distributions, "cache_info"),
      any(rule.matches("tf_keras") for rule in autograph.CONVERSION_RULES if hasattr(rule, "matches")))
"""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_USE_LEGACY_KERAS", "OMP_WAIT_POLICY")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['TF_USE_LEGACY_KERAS'] [] False False", result.stdout


def test_the_lightning_twin_loads_no_tensorflow_at_import() -> None:
    """Data-parallel processes started by a spawn launcher unpickle the module, data module and callbacks:
    they must not pay for TensorFlow, which only the Trainer's own process needs (to read Transform output)."""
    code = (
        "import sys, twinflow.trainers.base, twinflow.trainers.lightning.model, twinflow.trainers.lightning.data; "
        "import twinflow.trainers.lightning.train, twinflow.trainers.lightning.export; "
        "print(sorted(m for m in ('tensorflow', 'tfx', 'tensorflow_transform') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
