"""ImageExampleGen: folders of class sub-folders of images → tf.Examples in train/eval/test."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.image_example_gen import executor


class ImageExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        "eval_buckets": ExecutionParameter(type=int),
        "test_buckets": ExecutionParameter(type=int),
        # Changes when the files do, so TFX's cache never serves stale examples.
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_component.BaseComponent):
    """Reads ``input_base`` laid out as ``<class>/<image>`` or ``{train,test}/<class>/<image>``.

    Splits are decided by a hash of each file's bytes, out of 10 buckets: ``eval_buckets``
    of them go to eval, and when the source has no ``test/`` folder, ``test_buckets`` more
    go to test. Identical images therefore always land in the same split.
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, input_base: str, eval_buckets: int = 1, test_buckets: int = 1, input_fingerprint: str = ""):
        super().__init__(
            spec=ImageExampleGenSpec(
                input_base=input_base,
                eval_buckets=eval_buckets,
                test_buckets=test_buckets,
                input_fingerprint=input_fingerprint,
                examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
