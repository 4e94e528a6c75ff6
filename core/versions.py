"""The serving layout ``<serving_dir>/<model>/<version>/`` and which versions are complete.

A version is complete once its marker file exists: the pusher writes it last, after every
other file (on object stores, where a folder cannot appear in one rename, a version is
visible while it is being written). Every reader (push dedup, server, rollback) goes
through :func:`complete_versions` and so never sees a half-written model. A stock TF
Serving watching an object store knows no marker: point it at a local copy, or push locally.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core import fs

COMPLETE_MARKER = "_COMPLETE.json"
# Inside a pushed version: the train-split statistics of the data it was trained on (the drift baseline).
BASELINE_STATISTICS = "data_statistics/FeatureStats.pb"
# Beside the versions: one JSON record per push decision and rollback (TF Serving ignores non-numeric folders).
DECISIONS_DIR = "_decisions"


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
    """What a server watching the folder serves: the highest complete version (a rollback re-publishes as newest)."""
    versions = complete_versions(model_root)
    return versions[-1] if versions else None


def write_marker(version_dir: str, files: list[str]) -> None:
    """Written last: the list of files the version holds, so a reader can also check them."""
    fs.write_text(fs.join(version_dir, COMPLETE_MARKER), json.dumps({"files": files}, indent=1) + "\n")
