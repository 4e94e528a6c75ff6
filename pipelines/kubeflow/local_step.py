"""One compiled task's ExecutorInput, built as the KFP launcher builds it: to run a step outside a cluster.

Parameters come from the task's constants or the pipeline's parameters (``run_params`` over
the compiled defaults); input artifacts from their producers' executor outputs; output URIs
under ``root/<run id>/<task>/<key>``. Used by the container tests and ``make image-test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RUN_ID = "run-1"


def executor_input(
    spec: dict[str, Any],
    task_name: str,
    root: Path,
    upstream: dict[str, dict[str, Any]],
    run_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``upstream`` maps each producer task to its executor_output.json content."""
    task = spec["root"]["dag"]["tasks"][task_name]
    component = spec["components"][task["componentRef"]["name"]]
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    parameters = {}
    for name, source in task.get("inputs", {}).get("parameters", {}).items():
        if "componentInputParameter" in source:
            key = source["componentInputParameter"]
            parameters[name] = (run_params or {}).get(key, defaults[key])
        else:
            parameters[name] = source["runtimeValue"]["constant"]
    artifacts = {}
    for name, source in task.get("inputs", {}).get("artifacts", {}).items():
        producer = source["taskOutputArtifact"]
        produced = upstream[producer["producerTask"]]["artifacts"][producer["outputArtifactKey"]]["artifacts"][0]
        artifact_type = component["inputDefinitions"]["artifacts"][name]["artifactType"]
        artifacts[name] = {"artifacts": [{**produced, "type": artifact_type}]}
    task_root = root / RUN_ID / task_name
    outputs = {
        key: {
            "artifacts": [
                {
                    "name": f"{RUN_ID}/{task_name}/{key}",
                    "type": definition["artifactType"],
                    "uri": str(task_root / key),
                    "metadata": {},
                }
            ]
        }
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    return {
        "inputs": {"parameterValues": parameters, "artifacts": artifacts},
        "outputs": {"artifacts": outputs, "outputFile": str(task_root / "executor_output.json")},
    }


def executor_output_path(root: Path, task_name: str) -> Path:
    return root / RUN_ID / task_name / "executor_output.json"
