"""A model with a NaN metric is never blessed, even when TFMA's thresholds let it through."""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import json_format
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from twinflow.components.finite_evaluator.executor import NON_FINITE_PROPERTY, Executor
from twinflow.components.tfma_results import finite_only, non_finite_headline
from twinflow.core.config import EvaluationConfig
from twinflow.core.contract import CLASS_VOCAB_NAME
from twinflow.core.registry import get_framework
from twinflow.pipelines.evaluation import build_eval_config
from twinflow.pipelines.run.record import read_run
from twinflow.trainers.base import parse_class_vocabulary
from twinflow.trainers.keras.export import export_serving_model


def test_only_headline_metrics_decide_and_undefined_ones_are_left_out_of_cards() -> None:
    nan = float("nan")
    assert non_finite_headline({"accuracy": 0.5, "loss": nan}) == ["loss"]
    assert non_finite_headline({"accuracy": float("inf"), "loss": 0.1}) == ["accuracy"]
    # A class the model never predicts has precision 0/0: normal, not a reason to refuse.
    assert non_finite_headline({"accuracy": 0.9, "loss": 0.3, "precision_class_2": nan}) == []
    assert finite_only({"accuracy": 0.9, "precision_class_2": nan}) == {"accuracy": 0.9}


def _nan_model(transform_graph: str, path: Path) -> None:
    """The Keras serving export of a model that answers NaN for every class (a diverged model)."""
    output = tft.TFTransformOutput(transform_graph)
    classes = parse_class_vocabulary(output.vocabulary_by_name(CLASS_VOCAB_NAME))
    inputs = tf.keras.Input(shape=(28, 28, 1), name="image_xf")
    logits = tf.keras.layers.Dense(len(classes))(tf.keras.layers.Flatten()(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Lambda(lambda x: x * float("nan"))(logits))
    export_serving_model(model, output, classes, str(path))


def test_a_nan_model_that_clears_the_floor_is_not_blessed(keras_run, transform_outputs: dict, tmp_path: Path) -> None:
    from tfx import v1 as tfx

    config, _ = keras_run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    raw = read_run(metadata, config.pipeline_name).nodes["ImageExampleGen"].output("examples")
    examples = standard_artifacts.Examples()
    examples.uri, examples.split_names = raw.uri, '["train", "eval", "test"]'
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    _nan_model(transform_outputs["transform_graph"], Path(path_utils.serving_model_path(model.uri)))
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    # A floor of 0.2: argmax of NaN is class 0, a third of the test images, so TFMA alone would bless it.
    eval_config = build_eval_config(EvaluationConfig(accuracy_floor=0.2), get_framework("keras"))
    Executor().Do(
        {"examples": [examples], "model": [model]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {
            "eval_config": json_format.MessageToJson(eval_config),
            "example_splits": json.dumps(["test"]),
        },
    )
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property(NON_FINITE_PROPERTY) == "loss"
    assert blessing.get_string_custom_property("reason") == "non-finite test metrics: loss"  # named, not just refused
    assert Path(blessing.uri, "NOT_BLESSED").exists() and not Path(blessing.uri, "BLESSED").exists()
