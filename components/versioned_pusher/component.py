"""VersionedPusher: push a blessed model to ``<serving_dir>/<model_name>/<version>/``, atomically.

Like TFX's Pusher (whose blessing checks it reuses) but the new version appears in one
rename, so a crash mid-push never leaves a partial version a server could load, and the
pushed model.json records the evaluation metrics the model was blessed with.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.versioned_pusher import executor


class VersionedPusherSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "model_evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class VersionedPusher(base_component.BaseComponent):
    SPEC_CLASS = VersionedPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        model_evaluation: types.BaseChannel,
        serving_dir: str,
        model_name: str,
    ):
        super().__init__(
            spec=VersionedPusherSpec(
                model=model,
                model_blessing=model_blessing,
                model_evaluation=model_evaluation,
                serving_dir=serving_dir,
                model_name=model_name,
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            )
        )
