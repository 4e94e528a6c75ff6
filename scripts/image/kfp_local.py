"""Run a compiled twinflow spec through KFP's own local executor: kfp.local + DockerRunner.

    DOCKER_HOST=unix:///…/podman.sock python scripts/image/kfp_local.py SPEC WORK [--pure]

WORK is kfp.local's pipeline root, the one folder DockerRunner mounts into each container (at the
same path); the data (WORK/data) and the drafted schema (WORK/schema.pbtxt) live there too, and
the run parameters point at them. Prints each task's outcome; exits 1 unless every task of the
spec succeeded.

kfp 2.13's local orchestrator loses the type of an artifact between tasks: an upstream output
comes back as a plain ``dsl.Artifact`` (the TFX ``instanceSchema`` dropped) and is handed to the
consumer as ``schemaTitle: system.Artifact``, which TFX's container entrypoint cannot map to a
class ("Could not import system.Artifact"), so every task that consumes an artifact fails. Unless
``--pure``, a shim keeps each artifact's type schema from producer to consumer, as the KFP
backend does (it stores the type in ML Metadata); nothing else of kfp.local is changed.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from kfp import components, local


def keep_artifact_types() -> None:
    """Carry each output artifact's ArtifactTypeSchema over to the tasks that consume it."""
    from kfp.local import executor_input_utils, executor_output_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    to_dsl = executor_output_utils.runtime_artifact_to_dsl_artifact
    to_list = executor_input_utils.dsl_artifact_to_artifact_list

    def runtime_artifact_to_dsl_artifact(runtime_artifact: Any) -> Any:
        artifact = to_dsl(runtime_artifact)
        kept = pipeline_spec_pb2.ArtifactTypeSchema()
        kept.CopyFrom(runtime_artifact.type)
        artifact._twinflow_type_schema = kept
        return artifact

    def dsl_artifact_to_artifact_list(artifact: Any) -> Any:
        artifact_list = to_list(artifact)
        kept = getattr(artifact, "_twinflow_type_schema", None)
        if kept is not None:
            for runtime_artifact in artifact_list.artifacts:
                runtime_artifact.type.CopyFrom(kept)
        return artifact_list

    executor_output_utils.runtime_artifact_to_dsl_artifact = runtime_artifact_to_dsl_artifact
    executor_input_utils.dsl_artifact_to_artifact_list = dsl_artifact_to_artifact_list


def record_outcomes(outcomes: dict[str, str]) -> None:
    """Note each container task's status and duration (observation only)."""
    from kfp.local import task_dispatcher

    run_task = task_dispatcher.run_single_task_implementation

    def run_single_task_implementation(**kwargs: Any) -> Any:
        start = time.monotonic()
        outputs, status = run_task(**kwargs)
        outcomes[kwargs["component_name"]] = f"{status.name} in {time.monotonic() - start:.0f} s"
        return outputs, status

    task_dispatcher.run_single_task_implementation = run_single_task_implementation


def main(spec_path: str, work_dir: str, *flags: str) -> int:
    work = Path(work_dir).resolve()
    spec = next(iter(yaml.safe_load_all(Path(spec_path).read_text())))
    tasks = sorted(spec["root"]["dag"]["tasks"])
    pure = "--pure" in flags
    if not pure:
        keep_artifact_types()
    outcomes: dict[str, str] = {}
    record_outcomes(outcomes)
    local.init(runner=local.DockerRunner(), pipeline_root=str(work), raise_on_error=False)
    pipeline = components.load_component_from_file(spec_path)
    arguments = {
        "input_base": str(work / "data"),
        "schema_file": str(work / "schema.pbtxt"),
        "serving_dir": str(work / "serving"),  # the spec's serving PVC is a Kubernetes setting: ignored here
    }
    mode = "unpatched kfp.local" if pure else "kfp.local, artifact types kept between tasks"
    print(f"kfp-local: {pipeline.name} ({len(tasks)} tasks), {mode}, with {json.dumps(arguments)}", flush=True)
    error = None
    try:
        pipeline(**arguments)
    except Exception as exc:  # NotImplementedError for unsupported features, docker errors …
        error = exc
        traceback.print_exc()
    for task in tasks:
        component = spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]
        print(f"  {task}: {outcomes.get(component, 'not run')}")
    if error is not None:
        print(f"kfp-local: stopped by {type(error).__name__}: {error}")
    succeeded = sum(outcome.startswith("SUCCESS") for outcome in outcomes.values())
    ok = error is None and succeeded == len(tasks)
    print(f"kfp-local: {'OK' if ok else 'INCOMPLETE'} ({succeeded}/{len(tasks)} tasks succeeded)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
