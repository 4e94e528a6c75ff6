"""The Keras serving export: a SavedModel with the Transform graph inside, answering serialized tf.Examples
and raw image bytes (both signatures of core.contract).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core.contract import (
    IMAGE_KEY,
    IMAGE_XF_KEY,
    PROBABILITIES_KEY,
    SERVING_EXAMPLES_SIGNATURE,
    SERVING_IMAGE_BYTES_SIGNATURE,
)


def export_serving_model(
    model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, class_names: list[str], path: str
) -> None:
    """SavedModel with the transform graph inside, for tf.Example and raw image bytes."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    names = tf.constant(class_names)
    image_spec = {IMAGE_KEY: tf_transform_output.raw_feature_spec()[IMAGE_KEY]}

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        # A backbone's Transform output is pixel values (integers): the model scales them itself, as float32.
        probabilities = tf.nn.softmax(model(tf.cast(transformed[IMAGE_XF_KEY], tf.float32), training=False))
        best = tf.argmax(probabilities, axis=-1)
        return {
            PROBABILITIES_KEY: probabilities,
            "class_index": best,
            "class_name": tf.gather(names, best),
            "class_names": tf.tile(names[tf.newaxis, :], [tf.shape(probabilities)[0], 1]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(serialized, image_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_image_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict({IMAGE_KEY: image_bytes})

    model.save(
        path,
        save_format="tf",
        include_optimizer=False,  # serving needs no optimizer slots (they tripled the folder's size)
        signatures={
            SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
            SERVING_IMAGE_BYTES_SIGNATURE: serve_image_bytes.get_concrete_function(),
        },
    )
