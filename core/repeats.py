"""Repeats: one recipe trained with several seeds, and which of them may be pushed.

A single trained pair says little about two frameworks: the same recipe with another seed
moves accuracy by a few tenths of a point. With ``repeats`` > 1 every framework is trained
once per seed (``seed``, ``seed + 1``, …), each repeat is judged by the same Evaluator, and
only the best by *eval-split* accuracy may be pushed: the test split stays untouched by the
choice, so the intervals and tests computed on it stay unbiased.

The pipeline names nodes here, the pusher chooses here, the report reads both back here:
one definition for all three.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

_REPEAT_NODE = re.compile(r"^(?P<kind>[A-Za-z]+)_(?P<framework>.+?)(?:_r(?P<repeat>[0-9]+))?$")
T = TypeVar("T")


def node_id(kind: str, framework: str, repeat: int = 1) -> str:
    """``Trainer_keras`` for the first repeat (the id a single run has always had), ``Trainer_keras_r2`` after."""
    if repeat < 1:
        raise ValueError(f"repeats count from 1, got {repeat}")
    return f"{kind}_{framework}" if repeat == 1 else f"{kind}_{framework}_r{repeat}"


def parse_node_id(node: str) -> tuple[str, str, int] | None:
    """(kind, framework, repeat) of a per-framework node id, or None for a shared node (``Transform``)."""
    match = _REPEAT_NODE.match(node)
    if match is None:
        return None
    return match["kind"], match["framework"], int(match["repeat"] or 1)


def repeat_seed(seed: int, repeat: int) -> int:
    return seed + repeat - 1


@dataclass(frozen=True)
class Candidate(Generic[T]):
    """One repeat as the choice sees it: its eval-split accuracy and whether the Evaluator blessed it."""

    item: T
    seed: int
    eval_accuracy: float | None
    blessed: bool


def choose_best(candidates: Sequence[Candidate[T]]) -> Candidate[T] | None:
    """The blessed repeat with the highest eval-split accuracy (the lower seed on a tie), or None if none is blessed."""
    blessed = [c for c in candidates if c.blessed and c.eval_accuracy is not None]
    if not blessed:
        return None
    return max(blessed, key=lambda c: (c.eval_accuracy, -c.seed))


def describe_choice(chosen: Candidate[T] | None, candidates: Sequence[Candidate[T]]) -> str:
    """One line for logs and decision records: every repeat's seed, eval accuracy and blessing, and the choice."""

    def one(c: Candidate[T]) -> str:
        accuracy = "–" if c.eval_accuracy is None else f"{100 * c.eval_accuracy:.2f}%"
        return f"seed {c.seed} eval {accuracy}{'' if c.blessed else ' (not blessed)'}"

    listed = ", ".join(one(c) for c in sorted(candidates, key=lambda c: c.seed))
    if chosen is None:
        return f"no repeat of {len(candidates)} blessed ({listed})"
    return f"seed {chosen.seed} is the best of {len(candidates)} repeats by eval-split accuracy ({listed})"
