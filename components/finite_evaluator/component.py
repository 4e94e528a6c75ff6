"""FiniteEvaluator: TFX's Evaluator (same spec, inputs and outputs) that never blesses a non-finite metric."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.finite_evaluator import executor


class FiniteEvaluator(tfx.components.Evaluator):
    """Takes exactly the Evaluator's arguments; see ``executor`` for the one thing it adds."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
