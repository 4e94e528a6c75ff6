"""Softmax regression: the transformed image, flattened, into one dense layer of logits."""

from __future__ import annotations

import tensorflow as tf

from twinflow.core.contract import IMAGE_XF_KEY

ARCHITECTURE = "softmax_regression"


def build_model(image_size: int, channels: int, num_classes: int) -> tf.keras.Model:
    return tf.keras.Sequential(
        [
            tf.keras.Input(shape=(image_size, image_size, channels), name=IMAGE_XF_KEY),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(num_classes, name="logits"),
        ],
        name=ARCHITECTURE,
    )
