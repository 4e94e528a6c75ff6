"""Helpers for scripts/image.sh test: one compiled task's container command, fed an ExecutorInput
built as the KFP launcher builds it; then a check of what the containers wrote.

  step.py invocation SPEC TASK ROOT   the command + args, NUL-separated, {{$}} filled in
  step.py check SPEC ROOT             examples and statistics exist, per split, as expected

Artifacts go under ROOT/run-1/<task>/<output key>; upstream artifacts are read from the
producers' executor_output.json there (as KFP hands them downstream).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twinflow.pipelines.kubeflow.local_step import RUN_ID, executor_input, executor_output_path
from twinflow.pipelines.kubeflow.specfile import read_spec


def _upstream(spec: dict[str, Any], task_name: str, root: Path) -> dict[str, dict[str, Any]]:
    """The executor outputs of the task's producers, as the containers wrote them under ROOT."""
    producers = {
        source["taskOutputArtifact"]["producerTask"]
        for source in spec["root"]["dag"]["tasks"][task_name].get("inputs", {}).get("artifacts", {}).values()
    }
    return {task: json.loads(executor_output_path(root, task).read_text()) for task in producers}


def invocation(spec_path: str, task_name: str, root: str) -> None:
    spec, _ = read_spec(Path(spec_path))
    task = spec["root"]["dag"]["tasks"][task_name]
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    filled = json.dumps(executor_input(spec, task_name, Path(root), _upstream(spec, task_name, Path(root))))
    parts = [*container["command"], *(filled if arg == "{{$}}" else arg for arg in container["args"])]
    sys.stdout.write("\0".join(parts) + "\0")


def check(spec_path: str, root: str) -> None:
    import os

    import tensorflow_data_validation as tfdv

    base = Path(root) / RUN_ID
    examples = json.loads((base / "ImageExampleGen/executor_output.json").read_text())
    example_artifact = examples["artifacts"]["examples"]["artifacts"][0]
    splits = json.loads(example_artifact["metadata"]["split_names"])
    statistics = json.loads((base / "StatisticsGen/executor_output.json").read_text())
    stats_uri = statistics["artifacts"]["statistics"]["artifacts"][0]["uri"]
    counts = {}
    for split in splits:
        records = list(Path(example_artifact["uri"], f"Split-{split}").glob("*.gz"))
        stats = tfdv.load_stats_binary(os.path.join(stats_uri, f"Split-{split}", "FeatureStats.pb"))
        dataset = stats.datasets[0]
        counts[split] = dataset.num_examples
        features = sorted(f.path.step[0] for f in dataset.features)
        print(f"  Split-{split}: {len(records)} TFRecord file(s), {dataset.num_examples} examples, features {features}")
    owners = {p.stat().st_uid for p in base.rglob("*")}
    print(f"  files under {base} owned by uid(s) {sorted(owners)}")
    assert splits == ["train", "eval", "test"], splits
    assert counts["test"] == 45 and counts["train"] + counts["eval"] == 180 and counts["eval"] > 0, counts
    print("image-test: OK")


if __name__ == "__main__":
    {"invocation": invocation, "check": check}[sys.argv[1]](*sys.argv[2:])
