"""Which run pushed which version: read from the serving folder, without TensorFlow.

Two records say it. A push decision record (``twinflow.model_store.decisions``) names its run and version; and
every pushed version's ``model.json`` names the run that pushed it (``data.run_id``). The card
is the one a run killed between its push and its decision record still leaves, so both are read.
Rollbacks re-publish an earlier card under a new number: they are no run's push.
``history`` credits versions with it, and ``retrain --redo-span`` asks whether a span pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twinflow.core import fs
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import read_model_card
from twinflow.model_store.decisions import read_decisions
from twinflow.model_store.layout import complete_versions


@dataclass(frozen=True)
class Published:
    """A version some run pushed, and that run."""

    framework: str
    number: int
    run_id: str
    from_card: bool  # known from the version's model card (still in the serving folder), not from a decision record
    spans: tuple[int, ...] = ()
    pushed_at: str = ""  # ISO 8601 UTC with microseconds, as decision records write it
    accuracy: float | None = None


def published_versions(
    serving_dir: str, frameworks: Iterable[str], decisions: dict[str, list[dict[str, Any]]] | None = None
) -> dict[tuple[str, int], Published]:
    """(framework, version) → the push that made it, from decision records and the cards of complete versions.

    ``decisions``: each framework's records when the caller has read them already.
    """
    found: dict[tuple[str, int], Published] = {}
    for name in frameworks:
        model_root = fs.join(serving_dir, name)
        records = decisions[name] if decisions is not None and name in decisions else read_decisions(model_root)
        for record in records:
            rollback = str(record.get("reason") or "").startswith("rollback")
            if record.get("pushed") and record.get("run_id") and record.get("version") is not None and not rollback:
                number = int(record["version"])
                found[(name, number)] = Published(
                    name,
                    number,
                    str(record["run_id"]),
                    False,
                    tuple(record.get("spans") or ()),
                    str(record.get("time") or ""),
                    (record.get("evaluation") or {}).get("accuracy"),
                )
        for version in complete_versions(model_root):
            if (name, version.number) in found:
                continue
            try:
                card = read_model_card(version.path)
            except ModelCardError:
                continue
            if card.rolled_back_from is not None or card.data is None or not card.data.run_id:
                continue
            found[(name, version.number)] = Published(
                name,
                version.number,
                card.data.run_id,
                True,
                tuple(card.data.spans),
                _card_time(card.pushed_at),
                (card.evaluation or {}).get("accuracy"),
            )
    return found


def pushes_on_span(serving_dir: str, frameworks: Iterable[str], span: int) -> list[Published]:
    """The pushes of runs whose newest span was ``span``, oldest first."""
    pushes = [p for p in published_versions(serving_dir, frameworks).values() if p.spans and p.spans[-1] == span]
    return sorted(pushes, key=lambda p: (p.pushed_at, p.framework))


def _card_time(pushed_at: str | None) -> str:
    """A card's ``2026-12-08T00:39:54Z`` in the decision records' form (microseconds), so rows sort together."""
    if pushed_at and pushed_at.endswith("Z") and "." not in pushed_at:
        return pushed_at[:-1] + ".000000Z"
    return pushed_at or ""
