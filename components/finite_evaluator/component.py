"""FiniteEvaluator: TFX's Evaluator (TFMA metrics, slices and the accuracy floor) that also decides promotion.

It blesses a model only when its headline metrics are finite, its test accuracy clears the
floor, and it is not worse than the model it would replace on the very same test examples
(``promotion``): the served version of ``model_name`` under ``serving_dir``, read from the
serving folder, or ``reference_model`` (an optimized variant's float parent).
``served_version`` is what the pipeline read there when it was built: it makes the served
version part of this step's cache key, so a rollback or a new push re-evaluates a cached model.

Example::

    FiniteEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=build_eval_config(config.evaluation, plugin),
        example_splits=["test"],
        serving_dir="/srv/models", model_name="keras", served_version="1733456789",
        max_accuracy_drop=0.01,
    )
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from twinflow.components.finite_evaluator import executor


class FiniteEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """The Evaluator's spec, plus what the promotion rule needs."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        "serving_dir": ExecutionParameter(type=str, optional=True),
        "model_name": ExecutionParameter(type=str, optional=True),
        "served_version": ExecutionParameter(type=str, optional=True),
        "max_accuracy_drop": ExecutionParameter(type=float, optional=True),
    }
    INPUTS = {
        **standard_component_specs.EvaluatorSpec.INPUTS,
        "reference_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }


class FiniteEvaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator outputs (``evaluation``, ``blessing``) from the arguments twinflow uses.

    No ``baseline_model``: TFMA judges the floor alone; the comparison is ``promotion``'s.
    """

    SPEC_CLASS = FiniteEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        example_splits: list[str],
        module_path: str | None = None,
        *,
        serving_dir: str | None = None,
        model_name: str | None = None,
        served_version: str | None = None,
        max_accuracy_drop: float | None = None,
        reference_model: types.BaseChannel | None = None,
    ):
        super().__init__(
            spec=FiniteEvaluatorSpec(
                examples=examples,
                model=model,
                eval_config=eval_config,
                example_splits=json_utils.dumps(example_splits),
                fairness_indicator_thresholds=json_utils.dumps(None),
                module_path=module_path,
                serving_dir=serving_dir,
                model_name=model_name,
                served_version=served_version,
                max_accuracy_drop=max_accuracy_drop,
                reference_model=reference_model,
                evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
                blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            )
        )
