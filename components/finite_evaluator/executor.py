"""TFX's Evaluator, except that a model with a NaN or infinite metric is never blessed.

TFMA's thresholds compare with ``<`` and ``>``, which a NaN passes: a model whose loss is NaN
(it answers NaN probabilities, and its argmax accuracy can still clear a floor) would be
blessed. After TFMA has judged, a non-finite overall accuracy or loss turns the blessing into
NOT_BLESSED. The evaluation artifact is marked with its model's id, as TFX marks the blessing,
so a pusher choosing among repeats can pair each model with its own evaluation.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import artifact_utils, standard_component_specs
from tfx.types.artifact import Artifact
from tfx.utils import io_utils

from components.tfma_results import load_overall_metrics, non_finite_headline

NON_FINITE_PROPERTY = "non_finite_metrics"


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
            evaluation.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        bad = non_finite_headline(load_overall_metrics(evaluation.uri))
        if not bad:
            return
        blessing.set_string_custom_property(NON_FINITE_PROPERTY, ", ".join(bad))
        if blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.BLESSED_VALUE:
            blessed_file = os.path.join(blessing.uri, constants.BLESSED_FILE_NAME)
            if io_utils.fileio.exists(blessed_file):
                io_utils.fileio.remove(blessed_file)
            io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE)
        logging.warning("Evaluator: non-finite metrics %s; the model is not blessed", bad)
        print(f"[evaluate] non-finite metrics {bad}: the model is not blessed", flush=True)
