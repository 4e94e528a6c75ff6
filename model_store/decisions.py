"""Decision records: one JSON file per push decision and rollback, beside a model's versions.

Every Pusher execution (pushed, not blessed, not better, already pushed) and every rollback
writes one, so ``twinflow status`` and a reviewer can see why each framework serves what it
serves. They live in ``<model_root>/_decisions/`` (TF Serving ignores non-numeric folders),
are named by their UTC time so a listing is their history, and are written and read only
here, through twinflow.core.fs (gs:// and s3:// work), as strict JSON.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.model_store.layout import DECISIONS_DIR


class Decision(TypedDict):
    """What one record holds. Writers may add keys; a key left out is written as null."""

    time: str  # ISO 8601 UTC, e.g. 2026-11-29T18:36:54.051356Z
    framework: str
    run_id: str | None
    blessed: bool | None  # None for a rollback (nothing was judged)
    pushed: bool  # a new version was published
    version: int | None  # the version published (or the one this model already is); None when none
    served_before: int | None
    served_after: int | None
    reason: str  # "pushed: …" / "not pushed: …" with the deciding check, its figures and threshold
    evaluation: dict[str, float]  # finite test metrics of the judged model
    # The Evaluator's paired comparison with the served version (or a variant's float parent) on the same
    # test examples: core.statistics.non_inferiority's result (names, test_examples, accuracy of each with
    # its Wilson interval, agreement, difference with its interval, mcnemar_p_value, max_drop, verdict,
    # words); None when nothing was compared (a first version, another class list, a rollback).
    comparison: dict[str, Any] | None
    spans: list[int] | None
    accepted_drift: Any  # filled by the drift gate when a run passed it with accept_drift


DECISION_KEYS: tuple[str, ...] = tuple(Decision.__annotations__)
_TIME_FORMAT = "%Y%m%dT%H%M%S%f"


def decisions_dir(model_root: str) -> str:
    return fs.join(str(model_root), DECISIONS_DIR)


def write_decision(model_root: str, record: Mapping[str, Any]) -> str:
    """Write one record (its ``time`` now unless given); returns its path. Locally it appears in one rename."""
    when = datetime.fromisoformat(record["time"]) if record.get("time") else datetime.now(UTC)
    when = when.astimezone(UTC)
    full = {key: None for key in DECISION_KEYS} | dict(record)
    full["time"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = json.dumps(full, indent=1, allow_nan=False) + "\n"
    folder = decisions_dir(model_root)
    name = f"{when.strftime(_TIME_FORMAT)}-{uuid.uuid4().hex[:8]}.json"
    path = fs.join(folder, name)
    fs.gfile().makedirs(folder)
    if fs.is_remote(folder):
        fs.write_text(path, text)  # an object appears whole
    else:
        partial = fs.join(folder, f".{name}.partial")
        fs.write_text(partial, text)
        os.replace(partial, path)
    return path


def read_decisions(model_root: str) -> list[dict[str, Any]]:
    """Every record under ``model_root``, oldest first; none when there is no folder."""
    folder = decisions_dir(model_root)
    if not fs.isdir(folder):
        return []
    names = sorted(n for n in fs.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    records = []
    for name in names:
        path = fs.join(folder, name)
        try:
            record = json.loads(fs.read_text(path))
        except ValueError as err:
            raise ConfigError(f"{path}: not a decision record ({err}); move it out of {folder}") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}: not a decision record (a JSON object); move it out of {folder}")
        records.append(record)
    return records


def last_decision(model_root: str) -> dict[str, Any] | None:
    records = read_decisions(model_root)
    return records[-1] if records else None
