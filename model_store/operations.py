"""Rollback and status of the serving folder ``<serving_dir>/<framework>/<version>/``.

A rollback re-publishes an earlier complete version under a new, highest number, through
the very staging + rename + marker code pushes use: a stock TF Serving, which serves the
highest numeric version, follows it, and no version is ever deleted or renamed in place.
It holds the serving folder's lock (a local run holds it too), so it never races a push.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinflow.core import fs
from twinflow.core.config import VARIANTS
from twinflow.core.errors import ModelCardError, RollbackError
from twinflow.core.model_card import ModelCard, read_model_card
from twinflow.core.registry import variant_name
from twinflow.model_store.decisions import read_decisions, write_decision
from twinflow.model_store.layout import (
    CANARY,
    STABLE,
    Version,
    complete_versions,
    read_labels,
    served_version,
    write_labels,
)
from twinflow.model_store.lock import hold_serving_folder
from twinflow.model_store.publish import publish

_BUSY = (
    "a twinflow run or rollback is using {target}: {holder}. Roll back once it has finished "
    "(a rollback racing a push could be served below it)"
)


def _card_or_none(version: Version) -> ModelCard | None:
    try:
        return read_model_card(version.path)
    except ModelCardError:
        return None


def _listed(versions: Sequence[Version]) -> str:
    return ", ".join(str(v.number) for v in versions) or "none"


def _target(
    versions: list[Version], served: Version, served_card: ModelCard, to: int | None, model_root: str
) -> Version:
    """The version to re-publish: ``to``, or the newest one before the served one that holds another model."""
    served_number = served.number
    if to is None:
        for version in reversed([v for v in versions if v.number < served_number]):
            card = _card_or_none(version)
            if card is not None and card.source_model != served_card.source_model:
                return version
        raise RollbackError(
            f"nothing to roll back to under {model_root}: no complete version before {served_number} holds "
            f"another model (complete versions: {_listed(versions)})"
        )
    by_number = {v.number: v for v in versions}
    if to not in by_number:
        raise RollbackError(
            f"version {to} is not a complete version under {model_root}; complete versions: {_listed(versions)}"
        )
    if to == served_number:
        raise RollbackError(f"version {to} is already served under {model_root}; pass --to with an earlier one")
    return by_number[to]


def rollback(serving_dir: str, framework: str, to: int | None = None) -> Version:
    """Serve an earlier complete version again by re-publishing it as the newest; returns the new version."""
    model_root = fs.join(str(serving_dir), framework)
    with hold_serving_folder(serving_dir, busy=_BUSY):
        versions = complete_versions(model_root)
        if not versions:
            raise RollbackError(
                f"{framework} has no complete versions under {model_root}: nothing to roll back; "
                "push a model first (twinflow run)"
            )
        served = served_version(model_root) or versions[-1]
        served_card = read_model_card(served.path)
        target = _target(versions, served, served_card, to, model_root)
        card = read_model_card(target.path)
        decision = f"rollback to {target.number} (was serving {served.number})"
        version = publish(target.path, model_root, {"rolled_back_from": target.number, "decision": decision})
        if read_labels(model_root):  # labels in use: the rolled-back model is the stable one, any canary ends
            write_labels(model_root, {STABLE: version.number})
        write_decision(
            model_root,
            {
                "framework": framework,
                "blessed": None,
                "pushed": True,
                "version": version.number,
                "served_before": served.number,
                "served_after": version.number,
                "reason": "rollback",
                "rolled_back_from": target.number,
                "evaluation": card.evaluation or {},
                "spans": card.data.spans if card.data else None,
            },
        )
    return version


def promote(serving_dir: str, framework: str) -> dict[str, int]:
    """Move ``stable`` to the ``canary`` version (which then is just stable); returns the new labels."""
    model_root = fs.join(str(serving_dir), framework)
    with hold_serving_folder(serving_dir, busy=_BUSY):
        labels = read_labels(model_root)
        canary = labels.get(CANARY)
        if canary is None:
            raise RollbackError(
                f"{framework} has no canary under {model_root} (labels: {labels or 'none'}); "
                "push one with 'twinflow run --canary' or 'twinflow retrain --canary'"
            )
        complete = [v.number for v in complete_versions(model_root)]
        if canary not in complete:
            raise RollbackError(
                f"{framework}'s canary version {canary} is not a complete version under {model_root} "
                f"(complete versions: {', '.join(map(str, complete)) or 'none'})"
            )
        promoted = {STABLE: canary}
        write_labels(model_root, promoted)
        card = _card_or_none(Version(canary, fs.join(model_root, str(canary))))
        write_decision(
            model_root,
            {
                "framework": framework,
                "blessed": None,
                "pushed": False,
                "version": canary,
                "served_before": labels.get(STABLE),
                "served_after": canary,
                "reason": "promote",
                "evaluation": (card.evaluation or {}) if card else {},
                "spans": card.data.spans if card and card.data else None,
            },
        )
    return promoted


def status(serving_dir: str, frameworks: Sequence[str]) -> list[dict[str, Any]]:
    """Per framework (and each optimized variant of it in the folder, ``<framework>-<variant>``): what is served,
    why, on what data and how good, how many versions are kept, the last decision."""
    rows = []
    variants = [variant_name(f, v) for f in frameworks for v in VARIANTS]
    present = [name for name in variants if fs.isdir(fs.join(str(serving_dir), name))]
    for framework in [*frameworks, *present]:
        model_root = fs.join(str(serving_dir), framework)
        versions = complete_versions(model_root)
        served = served_version(model_root)
        records = read_decisions(model_root)
        last = records[-1] if records else None
        row: dict[str, Any] = {
            "framework": framework,
            "served_version": served.number if served else None,
            "served_path": served.path if served else None,
            "labels": read_labels(model_root),
            "versions_kept": len(versions),
            "pushed_at": None,
            "decision": None,
            "rolled_back_from": None,
            "spans": None,
            "data_fingerprint": None,
            "evaluation": {},
            "card_error": None,
            "last_decision": {k: last.get(k) for k in ("time", "pushed", "reason", "version")} if last else None,
        }
        if served:
            try:
                card = read_model_card(served.path)
            except ModelCardError as err:
                row["card_error"] = str(err)
            else:
                row.update(
                    pushed_at=card.pushed_at,
                    decision=card.decision,
                    rolled_back_from=card.rolled_back_from,
                    spans=card.data.spans if card.data else None,
                    data_fingerprint=(card.data.fingerprint or None) if card.data else None,
                    evaluation=dict(card.evaluation or {}),
                )
        rows.append(row)
    return rows


def _metrics(evaluation: dict[str, float]) -> str:
    shown = [f"{name} {evaluation[name]:.4g}" for name in ("accuracy", "loss") if name in evaluation]
    return ", ".join(shown) or "none recorded"


def format_status(rows: Sequence[dict[str, Any]]) -> str:
    """Lines for the terminal: one block per framework."""
    lines = []
    for row in rows:
        name = row["framework"]
        if row["served_version"] is None:
            lines.append(f"{name}: nothing served")
        else:
            lines.append(
                f"{name}: serving version {row['served_version']} (pushed {row['pushed_at'] or '?'}; "
                f"{row['versions_kept']} complete version(s) kept)"
            )
            if row["labels"]:
                lines.append("  labels:   " + ", ".join(f"{k} → {v}" for k, v in sorted(row["labels"].items())))
            if row["card_error"]:
                lines.append(f"  card:     {row['card_error']}")
            if row["decision"]:
                lines.append(f"  why:      {row['decision']}")
            if row["rolled_back_from"] is not None:
                lines.append(f"  rollback: re-publishes version {row['rolled_back_from']}")
            if row["spans"] or row["data_fingerprint"]:
                spans = ", ".join(str(s) for s in row["spans"] or []) or "-"
                lines.append(f"  data:     spans {spans}; fingerprint {(row['data_fingerprint'] or '-')[:16]}")
            lines.append(f"  test:     {_metrics(row['evaluation'])}")
        last = row["last_decision"]
        if last:
            outcome = "pushed" if last.get("pushed") else "not pushed"
            reason = str(last.get("reason") or "")
            said = reason if reason.startswith(("pushed", "not pushed")) else f"{outcome}: {reason}"
            lines.append(f"  last:     {last.get('time')} {said}")
    return "\n".join(lines)
