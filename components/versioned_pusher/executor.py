"""Copy into a hidden staging folder, write model.json, then rename into place."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from components.tfma_results import load_overall_metrics
from trainers.common import read_model_card, write_model_card

STAGING_PREFIX = ".staging-"


def next_version(model_root: Path) -> int:
    """A Unix-time version number, strictly above every version already there."""
    existing = [int(p.name) for p in model_root.iterdir() if p.name.isdigit()] if model_root.exists() else []
    return max([int(time.time()), *(v + 1 for v in existing)])


def find_pushed(model_root: Path, source: Path) -> Path | None:
    """The version already pushed from ``source``, if any: a re-blessed model is not pushed twice."""
    if not model_root.exists():
        return None
    for version in sorted((p for p in model_root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        try:
            if read_model_card(version).get("source_model") == str(source):
                return version
        except (FileNotFoundError, ValueError):
            continue
    return None


def push_atomically(source: Path, model_root: Path, extra_card: dict[str, Any]) -> Path:
    """Copy ``source`` to ``model_root/<version>`` so that the version appears complete or not at all."""
    model_root.mkdir(parents=True, exist_ok=True)
    for stale in model_root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an earlier push that crashed
    version = next_version(model_root)
    staging = model_root / f"{STAGING_PREFIX}{version}-{os.getpid()}"
    try:
        shutil.copytree(source, staging)
        card = read_model_card(staging)
        card.update(extra_card, version=version, source_model=str(source))
        write_model_card(staging, card)
        final = model_root / str(version)
        os.rename(staging, final)  # atomic on one filesystem; fails if final exists
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


class Executor(tfx_pusher.Executor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            print(f"[push] {exec_properties['model_name']}: not blessed, nothing pushed", flush=True)
            return
        evaluation = artifact_utils.get_single_instance(input_dict["model_evaluation"])
        model_root = Path(exec_properties["serving_dir"]) / exec_properties["model_name"]
        source = Path(self.GetModelPath(input_dict))
        final = find_pushed(model_root, source)
        if final is not None:
            print(f"[push] {exec_properties['model_name']}: this model is already version {final.name}", flush=True)
        else:
            card = {
                "evaluation": load_overall_metrics(evaluation.uri),
                "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            final = push_atomically(source, model_root, card)
        Path(pushed.uri).mkdir(parents=True, exist_ok=True)
        (Path(pushed.uri) / "push.json").write_text(json.dumps({"destination": str(final)}))
        self._MarkPushed(pushed, pushed_destination=str(final), pushed_version=final.name)
        print(f"[push] {exec_properties['model_name']}: version {final.name} at {final}", flush=True)
