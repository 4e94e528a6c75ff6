"""TFX's Evaluator, then the promotion checks: finite metrics, the floor, and not worse than the served model.

TFX's executor runs TFMA (metrics, slices, the floor as a value threshold) and writes its
blessing; ``promotion`` then judges every check and rewrites the blessing with the verdict and
its reason in words. The evaluation artifact is marked with its model's id, as TFX marks the
blessing, so a pusher choosing among repeats can pair each model with its own evaluation.
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow_model_analysis as tfma
from absl import logging
from tfx.components.evaluator import constants as tfx_constants
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.artifact import Artifact
from tfx.utils import path_utils

from twinflow.components.finite_evaluator import promotion
from twinflow.components.finite_evaluator.promotion import NON_FINITE_PROPERTY
from twinflow.components.paired_predictions import TestSet, read_test_split
from twinflow.components.tfma_results import load_overall_metrics, non_finite_headline

__all__ = ["NON_FINITE_PROPERTY", "Executor"]
DEFAULT_MAX_ACCURACY_DROP = 0.01


class Executor(tfx_evaluator.Executor):
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = artifact_utils.get_single_instance(output_dict[standard_component_specs.EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY])
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        if model.id:  # which model this evaluation is of, as TFX marks the blessing (the pusher pairs them)
            evaluation.set_int_custom_property(tfx_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        model_dir = path_utils.serving_model_path(model.uri)
        name = exec_properties.get("model_name") or "the model"
        metrics = load_overall_metrics(evaluation.uri)
        bad = non_finite_headline(metrics)
        if bad:
            blessing.set_string_custom_property(NON_FINITE_PROPERTY, ", ".join(bad))
        given = exec_properties.get("max_accuracy_drop")
        judgement = promotion.judge(
            (name, model_dir),
            metrics,
            promotion.threshold_failures(tfma.load_validation_result(evaluation.uri)),
            _reference(input_dict, exec_properties, name, model_dir),
            lambda: _test_examples(input_dict, exec_properties),
            DEFAULT_MAX_ACCURACY_DROP if given is None else float(given),
        )
        _check_accuracy(name, metrics, judgement)
        promotion.record(blessing, judgement)
        verdict = "blessed" if judgement.blessed else "not blessed"
        logging.info("Evaluator %s: %s: %s", name, verdict, judgement.reason)
        print(f"[evaluate] {name}: {verdict}: {judgement.reason}", flush=True)


def _reference(
    input_dict: dict[str, list[Artifact]], exec_properties: dict[str, Any], name: str, model_dir: str
) -> promotion.Reference:
    parents = input_dict.get("reference_model") or []
    if parents:
        return promotion.parent_reference(path_utils.serving_model_path(parents[0].uri))
    serving_dir = exec_properties.get("serving_dir")
    if not serving_dir:
        return promotion.Reference("", None, "", "no serving folder given: compared with nothing")
    return promotion.served_reference(serving_dir, name, model_dir)


def _test_examples(input_dict: dict[str, list[Artifact]], exec_properties: dict[str, Any]) -> TestSet:
    """The evaluated split of the Evaluator's own examples: the very examples TFMA scored."""
    examples = artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY])
    splits = json.loads(exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY) or "null") or ["eval"]
    if len(splits) != 1:
        raise ValueError(f"example_splits: {splits}; the comparison with the served model reads one split")
    return read_test_split(examples.uri, splits[0])


def _check_accuracy(name: str, metrics: dict[str, float], judgement: promotion.Judgement) -> None:
    """The comparison's candidate accuracy is TFMA's: the same examples and predictions, counted twice."""
    tfma_accuracy = metrics.get("accuracy")
    if judgement.comparison is None or tfma_accuracy is None:
        return
    mine = judgement.comparison["accuracy"]["candidate"]["value"]
    if abs(mine - tfma_accuracy) > 1e-6:
        logging.warning("Evaluator %s: TFMA's accuracy %s differs from the comparison's %s", name, tfma_accuracy, mine)
        print(f"[evaluate] {name}: warning: TFMA's test accuracy {tfma_accuracy:.4f} differs from {mine:.4f}")
