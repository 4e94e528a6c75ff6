"""DataGate: stop the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator records anomalies but never fails a run; this component
turns them into a failure that names every anomaly, before Transform can start.
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from twinflow.components.data_gate import executor


class DataGateSpec(types.ComponentSpec):
    PARAMETERS: dict = {}
    INPUTS = {"anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS: dict = {}


class DataGate(base_component.BaseComponent):
    """Fails with a :class:`executor.DataAnomaliesError` listing each anomaly per split."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, anomalies: types.BaseChannel):
        super().__init__(spec=DataGateSpec(anomalies=anomalies))
