"""ImageExampleGen: folders of class sub-folders of images → tf.Examples in train/eval/test."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from twinflow.components.image_example_gen import executor
from twinflow.components.image_example_gen.images import DEFAULT_MAX_PIXELS


class ImageExampleGenSpec(types.ComponentSpec):
    PARAMETERS = {
        "input_base": ExecutionParameter(type=str),
        # Data arriving over time: span folders under input_base, in TFX's pattern syntax,
        # resolved when the executor runs (the latest ``spans`` of them), on every runner.
        "span_pattern": ExecutionParameter(type=str, optional=True),
        "spans": ExecutionParameter(type=int, optional=True),
        "eval_buckets": ExecutionParameter(type=int),
        "test_buckets": ExecutionParameter(type=int),
        # The data's content fingerprint (file_hashes.data_fingerprint): changes when the images' bytes,
        # names or classes do, and only then, so TFX's cache never serves stale examples nor misses on a touch.
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
        # Unusable files left out instead of stopping the run: a count from 1, a fraction below.
        "max_bad_images": ExecutionParameter(type=float, optional=True),
        "max_image_pixels": ExecutionParameter(type=int, optional=True),
    }
    INPUTS: dict = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class ImageExampleGen(base_component.BaseComponent):
    """Reads ``input_base`` laid out as ``<class>/<image>`` or ``{train,test}/<class>/<image>``.

    Splits are decided by a hash of each file's bytes, out of 10 buckets: ``eval_buckets``
    of them go to eval, and when the source has no ``test/`` folder, ``test_buckets`` more
    go to test. Identical images therefore always land in the same split.

    Every format Pillow decodes is accepted (re-encoded as PNG where TensorFlow cannot read
    it). The run stops, naming every file, when more than ``max_bad_images`` files cannot be
    used (corrupt, empty, above ``max_image_pixels``, unreadable names); it also stops on a
    class without training images, fewer than 2 classes, an empty eval or test split, or
    identical images under two classes. What was found is written to ``ingest_report.json``.

    With ``span_pattern``, ``input_base`` is a root of span folders (``span-{SPAN}``,
    ``{YYYY}-{MM}-{DD}``…, TFX's syntax) and the latest ``spans`` of them are read together;
    the artifact records ``span``, ``version`` and the window, as TFX's ExampleGen does.
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_base: str,
        eval_buckets: int = 1,
        test_buckets: int = 1,
        input_fingerprint: str = "",
        span_pattern: str = "",
        spans: int = 1,
        max_bad_images: float = 0.0,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        super().__init__(
            spec=ImageExampleGenSpec(
                input_base=input_base,
                eval_buckets=eval_buckets,
                test_buckets=test_buckets,
                input_fingerprint=input_fingerprint,
                span_pattern=span_pattern,
                spans=spans,
                max_bad_images=float(max_bad_images),
                max_image_pixels=max_image_pixels,
                examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
