"""Helpers for the Kubeflow tests: compile a spec the way ``twinflow compile`` does, and read its graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import nested
from twinflow.core.config import load_config
from twinflow.pipelines.kubeflow.compiler import compile_spec, deployed
from twinflow.pipelines.kubeflow.specfile import write_spec

IMAGE = "registry.example.com/twinflow:test"


def compile_to(path: Path, framework: str = "keras", **values: Any) -> Path:
    """Compile the Keras pipeline (tiny architecture) for an object-store data location into ``path``.

    ``values`` are config keys, dotted for sections (``kubeflow.serving_pvc``).
    """
    given: dict[str, Any] = {
        "framework": framework,
        "data_dir": "gs://bucket/data/fashion_mnist",
        "pipeline_root": "gs://bucket/twinflow",
        "training.architecture": "tiny_cnn",
        "training.epochs": 1,
        "kubeflow.image": IMAGE,
        "kubeflow.data_fingerprint": "v1",
        **values,
    }
    spec, platform = compile_spec(deployed(load_config(overrides=nested(given))))
    return write_spec(path, spec, platform)


def edges(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(upstream, downstream): declared task dependencies and artifact hand-overs together."""
    found = set()
    for name, task in spec["root"]["dag"]["tasks"].items():
        found |= {(upstream, name) for upstream in task.get("dependentTasks", [])}
        for source in task.get("inputs", {}).get("artifacts", {}).values():
            found.add((source["taskOutputArtifact"]["producerTask"], name))
    return found


def executor(spec: dict[str, Any], task_name: str) -> dict[str, Any]:
    """The deployment executor (container / resolver …) a task runs."""
    task = spec["root"]["dag"]["tasks"][task_name]
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]
