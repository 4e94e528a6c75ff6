"""ModelOptimizer: one optimized variant (prune, int8) of a framework's trained float model.

It takes what the pusher takes (the trained models of every repeat with their blessings
and evaluations), makes the variant from the repeat the pusher would choose, and outputs
it beside a copy of that float parent: an Evaluator then judges the variant under the very
same metrics, slices and floor, and compares it with that parent on the same test examples.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from twinflow.components.model_optimizer import executor


class ModelOptimizerSpec(types.ComponentSpec):
    PARAMETERS = {
        "framework": ExecutionParameter(type=str),
        "variant": ExecutionParameter(type=str),
        "optimize_fn": ExecutionParameter(type=str),
        "settings": ExecutionParameter(type=str),  # OptimizationConfig as JSON
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "model_evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "transformed_examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
    }
    OUTPUTS = {
        "variant_model": ChannelParameter(type=standard_artifacts.Model),
        "parent_model": ChannelParameter(type=standard_artifacts.Model),
    }


class ModelOptimizer(base_component.BaseComponent):
    SPEC_CLASS = ModelOptimizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        model_evaluation: types.BaseChannel,
        transformed_examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        framework: str,
        variant: str,
        optimize_fn: str,
        settings: str,
    ):
        super().__init__(
            spec=ModelOptimizerSpec(
                model=model,
                model_blessing=model_blessing,
                model_evaluation=model_evaluation,
                transformed_examples=transformed_examples,
                transform_graph=transform_graph,
                framework=framework,
                variant=variant,
                optimize_fn=optimize_fn,
                settings=settings,
                variant_model=types.Channel(type=standard_artifacts.Model),
                parent_model=types.Channel(type=standard_artifacts.Model),
            )
        )
