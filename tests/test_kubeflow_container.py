"""The compiled spec's own container commands run here, fed executor inputs built as the KFP launcher builds them.

ImportSchemaGen and ImageExampleGen run first (tiny generated images), then StatisticsGen reads
their output artifacts exactly as KFP hands them downstream, and must produce real statistics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tensorflow_data_validation as tfdv

from tests.kubeflow_specs import compile_to, executor
from twinflow.pipelines.kubeflow.local_step import RUN_ID, executor_input, executor_output_path
from twinflow.pipelines.kubeflow.specfile import read_spec
from twinflow.schemas import default_schema_path

pytestmark = pytest.mark.e2e  # two containerized TFX steps: about a minute


def run_container(
    spec: dict[str, Any], task_name: str, root: Path, upstream: dict[str, dict[str, Any]], run_params: dict[str, Any]
) -> dict[str, Any]:
    """Run the task's container command as the image would (venv python, TF_USE_LEGACY_KERAS=1); its ExecutorOutput."""
    container = executor(spec, task_name)["container"]
    invocation = json.dumps(executor_input(spec, task_name, root, upstream, run_params))
    command = [sys.executable if part == "python" else part for part in container["command"]]
    args = [invocation if arg == "{{$}}" else arg for arg in container["args"]]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, f"{task_name} failed:\n{done.stderr[-4000:]}"
    return json.loads(executor_output_path(root, task_name).read_text())


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return read_spec(compile_to(tmp_path_factory.mktemp("kfp") / "pipeline.yaml"))[0]


def test_statistics_gen_container_produces_statistics_from_example_gen_container(
    spec: dict[str, Any], tiny_folders: Path, tmp_path: Path
) -> None:
    run_params = {"input_base": str(tiny_folders), "schema_file": str(default_schema_path())}
    upstream: dict[str, dict[str, Any]] = {}
    for task in ("ImportSchemaGen", "ImageExampleGen", "StatisticsGen"):
        upstream[task] = run_container(spec, task, tmp_path, upstream, run_params)

    examples = upstream["ImageExampleGen"]["artifacts"]["examples"]["artifacts"][0]
    assert json.loads(examples["metadata"]["split_names"]) == ["train", "eval", "test"]
    assert examples["uri"].startswith(str(tmp_path / RUN_ID / "ImageExampleGen"))

    statistics = upstream["StatisticsGen"]["artifacts"]["statistics"]["artifacts"][0]
    counts = {}
    for split in ("train", "eval", "test"):
        stats = tfdv.load_stats_binary(os.path.join(statistics["uri"], f"Split-{split}", "FeatureStats.pb"))
        dataset = stats.datasets[0]
        counts[split] = dataset.num_examples
        features = {f.path.step[0] for f in dataset.features}
        assert {"image", "label", "label_name"} <= features
    assert counts["test"] == 3 * 15  # the test/ folder, as is
    assert counts["train"] + counts["eval"] == 3 * 60 and counts["eval"] > 0  # train/ split by content hash
