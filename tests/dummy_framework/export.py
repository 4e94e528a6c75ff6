"""The Keras twin's serving export (a SavedModel with the Transform graph inside), for the softmax model."""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core.contract import SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGE_BYTES_SIGNATURE
from twinflow.trainers.base import Exported
from twinflow.trainers.keras.export import export_serving_model


def export(
    model: tf.keras.Model, transform_output: tft.TFTransformOutput, class_names: list[str], path: str
) -> Exported:
    export_serving_model(model, transform_output, class_names, path)
    return Exported(
        format="saved_model", artifact=".", signatures=[SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGE_BYTES_SIGNATURE]
    )
