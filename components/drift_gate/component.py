"""DriftGate: stop the pipeline when the new data drifted from what the served models were trained on.

Runs after the DataGate and before Transform. Each framework in ``model_names`` is compared
through the train-split statistics its served version (``<serving_dir>/<name>/``) keeps as
baseline, with the drift comparators of the schema. The ``drift`` output holds drift.json and
the custom property ``drift_verdict``: "no baseline", "no drift" or "drift accepted"; drift that
is not accepted fails the component with a DataDriftError naming every drifted feature.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from twinflow.components.drift_gate import executor


class DriftGateSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_dir": ExecutionParameter(type=str),
        "model_names": ExecutionParameter(type=str),  # a JSON list of framework names
        "accept_drift": ExecutionParameter(type=int),  # 0 or 1
        # The served versions when the pipeline was built: a push or rollback since changes the
        # baseline, so it must change the cache key too (the statistics alone would not).
        "served_versions": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {"drift": ChannelParameter(type=standard_artifacts.ExampleAnomalies)}


class DriftGate(base_component.BaseComponent):
    """Fails with a :class:`twinflow.core.errors.DataDriftError` unless the drift is accepted."""

    SPEC_CLASS = DriftGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        statistics: types.BaseChannel,
        schema: types.BaseChannel,
        serving_dir: str,
        model_names: Sequence[str],
        accept_drift: bool = False,
        served_versions: str = "",
    ):
        super().__init__(
            spec=DriftGateSpec(
                statistics=statistics,
                schema=schema,
                serving_dir=str(serving_dir),
                model_names=json.dumps(list(model_names)),
                accept_drift=int(bool(accept_drift)),
                served_versions=served_versions,
                drift=types.Channel(type=standard_artifacts.ExampleAnomalies),
            )
        )
