"""VersionedPusher: push a blessed model to ``<serving_dir>/<model_name>/<version>/``, atomically.

Like TFX's Pusher (whose blessing checks it reuses) but the new version appears in one
rename, so a crash mid-push never leaves a partial version a server could load, and the
pushed model.json records the evaluation metrics the model was blessed with. Whether a model
is better than the served one is the Evaluator's judgement, on the blessing
(twinflow.components.finite_evaluator.promotion); a blessed model is pushed while the version it was
judged against is still served. The oldest versions beyond ``keep_versions`` are removed, and
every execution leaves a decision record (twinflow.model_store.decisions) with that judgement's figures.
``examples`` and ``statistics``, when given, record the training data in the card and keep
the train split's statistics in the version as its drift baseline. ``parent_model_name``
marks an optimized variant: it is pushed only while its float parent is in that model's
serving folder, whose version it records. ``run_fingerprint``, the run's inputs, goes into the
card as it is (the local runner's "nothing changed" check reads it).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from twinflow.components.versioned_pusher import executor


class VersionedPusherSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "keep_versions": ExecutionParameter(type=int),
        "run_id": ExecutionParameter(type=str, optional=True),
        "canary": ExecutionParameter(type=int, optional=True),
        "parent_model_name": ExecutionParameter(type=str, optional=True),
        # The run's inputs (data by content, schema, config, code), recorded in the pushed card.
        "run_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "model_evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
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
        examples: types.BaseChannel | None = None,
        statistics: types.BaseChannel | None = None,
        keep_versions: int = executor.DEFAULT_KEEP_VERSIONS,
        run_id: str | None = None,
        canary: bool = False,
        parent_model_name: str | None = None,
        run_fingerprint: str | None = None,
    ):
        super().__init__(
            spec=VersionedPusherSpec(
                model=model,
                model_blessing=model_blessing,
                model_evaluation=model_evaluation,
                examples=examples,
                statistics=statistics,
                serving_dir=serving_dir,
                model_name=model_name,
                keep_versions=keep_versions,
                run_id=run_id,
                canary=int(canary),
                parent_model_name=parent_model_name,
                run_fingerprint=run_fingerprint or None,
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            )
        )
