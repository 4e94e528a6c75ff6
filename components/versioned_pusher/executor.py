"""Copy a blessed model into a new version folder, add push-time facts to its card, mark it complete last.

Locally the version is assembled in a hidden staging folder and appears in one rename, so
a stock TF Serving watching the folder never loads a partial model. On object stores
(gs://, s3://), where a folder cannot appear in one rename, the version is written in
place and the completion marker is written last; every twinflow reader ignores versions
without it (core.versions).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Any

from tfx.components.pusher import executor as tfx_pusher
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from components.tfma_results import finite_only, load_overall_metrics, non_finite_headline
from core import fs
from core.errors import ModelCardError
from core.model_card import ModelCard, read_model_card, write_model_card
from core.versions import Version, complete_versions, version_numbers, write_marker

STAGING_PREFIX = ".staging-"
_RENAME_ATTEMPTS = 20


def next_version(model_root: str) -> int:
    """A Unix-time version number, strictly above every version folder already there (complete or not)."""
    return max([int(time.time()), *(v + 1 for v in version_numbers(model_root))])


def find_pushed(model_root: str, source: str) -> Version | None:
    """The complete version already pushed from ``source``, if any: a re-blessed model is not pushed twice."""
    for version in complete_versions(model_root):
        try:
            if read_model_card(version.path).source_model == str(source):
                return version
        except ModelCardError:
            continue
    return None


def _stamped_card(model_dir: str, source: str, version: int, evaluation: dict[str, float]) -> ModelCard:
    card = read_model_card(model_dir)
    stamp = {
        "version": version,
        "source_model": str(source),
        "evaluation": evaluation,
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return ModelCard.model_validate({**card.model_dump(), **stamp})


def _assemble(source: str, target: str, version: int, evaluation: dict[str, float]) -> None:
    """Copy, stamp the card, then write the completion marker: the marker is always the last file."""
    fs.copy_tree(source, target)
    write_model_card(target, _stamped_card(target, source, version, evaluation))
    write_marker(target, fs.list_files(target))


def push(source: str, model_root: str, evaluation: dict[str, float]) -> Version:
    """Push ``source`` as a new, complete version under ``model_root``; returns it."""
    non_finite = non_finite_headline(evaluation)
    if non_finite:
        raise ValueError(f"refusing to push {source}: non-finite evaluation metrics {non_finite}")
    evaluation = finite_only(evaluation)
    fs.gfile().makedirs(model_root)
    if fs.is_remote(model_root):
        version = next_version(model_root)
        target = fs.join(model_root, str(version))
        _assemble(source, target, version, evaluation)
        return Version(version, target)
    return _push_by_rename(source, model_root, evaluation)


def _abandoned(staging: str) -> bool:
    """A staging folder whose pushing process has died (a crash mid-push); live pushes keep theirs."""
    try:
        pid = int(os.path.basename(staging).removeprefix(STAGING_PREFIX).split("-")[1])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _push_by_rename(source: str, model_root: str, evaluation: dict[str, float]) -> Version:
    for staging in fs.gfile().glob(os.path.join(model_root, f"{STAGING_PREFIX}*")):
        if _abandoned(staging):
            shutil.rmtree(staging, ignore_errors=True)
    version = next_version(model_root)
    staging = os.path.join(model_root, f"{STAGING_PREFIX}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _assemble(source, staging, version, evaluation)
        for _ in range(_RENAME_ATTEMPTS):
            final = os.path.join(model_root, str(version))
            try:
                os.rename(staging, final)  # atomic on one filesystem; fails when final exists
                return Version(version, final)
            except OSError:
                if not os.path.exists(final):
                    raise
            # Another push took this number (two in one second): take the next free one.
            version = next_version(model_root)
            write_model_card(staging, _stamped_card(staging, source, version, evaluation))
            write_marker(staging, fs.list_files(staging))
        raise RuntimeError(f"could not find a free version number under {model_root}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Executor(tfx_pusher.Executor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        name = exec_properties["model_name"]
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            print(f"[push] {name}: not blessed, nothing pushed", flush=True)
            return
        evaluation = artifact_utils.get_single_instance(input_dict["model_evaluation"])
        model_root = fs.join(exec_properties["serving_dir"], name)
        source = self.GetModelPath(input_dict)
        version = find_pushed(model_root, source)
        if version is not None:
            print(f"[push] {name}: this model is already version {version.number}", flush=True)
        else:
            version = push(source, model_root, load_overall_metrics(evaluation.uri))
        fs.gfile().makedirs(pushed.uri)
        fs.write_text(fs.join(pushed.uri, "push.json"), json.dumps({"destination": version.path}))
        self._MarkPushed(pushed, pushed_destination=version.path, pushed_version=str(version.number))
        print(f"[push] {name}: version {version.number} at {version.path}", flush=True)
