"""The serving layout ``<serving_dir>/<model>/<version>/`` and which versions are complete.

A version is complete once its marker file exists: the pusher writes it last, after every
other file (on object stores, where a folder cannot appear in one rename, a version is
visible while it is being written). Every reader (push dedup, server, rollback) goes
through :func:`complete_versions` and so never sees a half-written model. A stock TF
Serving watching an object store knows no marker: point it at a local copy, or push locally.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from twinflow.core import fs

COMPLETE_MARKER = "_COMPLETE.json"
# Inside a pushed version: the train-split statistics of the data it was trained on (the drift baseline).
BASELINE_STATISTICS = "data_statistics/FeatureStats.pb"
# Beside the versions: one JSON record per push decision and rollback (TF Serving ignores non-numeric folders).
DECISIONS_DIR = "_decisions"
# Beside the versions: TF Serving-style version labels {"stable": N, "canary": M}; absent, the newest is served.
LABELS_FILE = "_labels.json"
STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True)
class Version:
    number: int
    path: str


def version_numbers(model_root: str) -> list[int]:
    """Every numbered folder, complete or not (a new version must not reuse any of them)."""
    if not fs.isdir(str(model_root)):
        return []
    return sorted(int(name) for name in fs.listdir(str(model_root)) if name.isdigit())


def is_complete(version_dir: str) -> bool:
    return fs.exists(fs.join(str(version_dir), COMPLETE_MARKER))


def complete_versions(model_root: str) -> list[Version]:
    """Complete versions, oldest first; folders without the marker are ignored."""
    versions = [Version(n, fs.join(str(model_root), str(n))) for n in version_numbers(model_root)]
    return [v for v in versions if is_complete(v.path)]


def served_version(model_root: str) -> Version | None:
    """What a server watching the folder serves by default: the ``stable`` label's version when labels are
    set, else the highest complete version (a rollback re-publishes as newest)."""
    versions = complete_versions(model_root)
    stable = read_labels(model_root).get(STABLE)
    by_number = {v.number: v for v in versions}
    if stable in by_number:
        return by_number[stable]
    return versions[-1] if versions else None


def read_labels(model_root: str) -> dict[str, int]:
    """The version labels, or {} when none are set; a malformed file is an error naming it."""
    path = fs.join(str(model_root), LABELS_FILE)
    if not fs.exists(path):
        return {}
    try:
        labels = json.loads(fs.read_text(path))
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in labels.items()
    ):
        raise ValueError(f'{path}: expected an object of label → version number, e.g. {{"stable": 3}}')
    return labels


def write_labels(model_root: str, labels: dict[str, int]) -> None:
    """Replace the labels in one rename locally (a server polling the folder never reads half a file)."""
    path = fs.join(str(model_root), LABELS_FILE)
    text = json.dumps(dict(sorted(labels.items())), indent=1) + "\n"
    if fs.is_remote(path):
        fs.write_text(path, text)
        return
    staging = f"{path}.{os.getpid()}.tmp"
    fs.write_text(staging, text)
    os.replace(staging, path)


def write_marker(version_dir: str, files: list[str]) -> None:
    """Written last: the list of files the version holds, so a reader can also check them."""
    fs.write_text(fs.join(version_dir, COMPLETE_MARKER), json.dumps({"files": files}, indent=1) + "\n")
