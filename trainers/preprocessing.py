"""The one ``preprocessing_fn``: every trainer and every server sees images through it.

decode → channels → resize → scale to [0, 1] → normalize per channel with dataset-wide
``tft`` mean and variance. The label passes through. The class list is kept in the
transform graph as a vocabulary, so serving never needs another copy of it.

For a pretrained backbone (``TrainingConfig.backbone``) the resized image is kept as pixel values
0..255 (integers: about a quarter of float32 on disk and, held as uint8, in memory) and the model's
own first layer applies the fixed normalisation its published weights expect.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core.contract import CLASS_VOCAB_NAME, IMAGE_KEY, IMAGE_XF_KEY, LABEL_KEY, LABEL_NAME_KEY, LABEL_XF_KEY
from twinflow.trainers.base import training_config

_EPSILON = 1e-6


def decode_and_resize(image_bytes: tf.Tensor, image_size: int, channels: int) -> tf.Tensor:
    """[batch] encoded JPEG/PNG → float32 [batch, size, size, channels] in [0, 1]."""

    def decode_one(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        return tf.image.resize(image, [image_size, image_size], antialias=True)

    images = tf.map_fn(
        decode_one,
        tf.reshape(image_bytes, [-1]),
        fn_output_signature=tf.TensorSpec([image_size, image_size, channels], tf.float32),
    )
    return tf.ensure_shape(images, [None, image_size, image_size, channels])


def preprocessing_fn(inputs: dict[str, tf.Tensor], custom_config: dict[str, Any]) -> dict[str, tf.Tensor]:
    config = training_config(custom_config)
    images = decode_and_resize(inputs[IMAGE_KEY], config.image_size, config.channels)
    label = tf.reshape(inputs[LABEL_KEY], [-1])
    label_name = tf.reshape(inputs[LABEL_NAME_KEY], [-1])
    tft.vocabulary(
        tf.strings.join([tf.strings.as_string(label), label_name], separator=":"),
        vocab_filename=CLASS_VOCAB_NAME,
    )
    if config.backbone:
        return {IMAGE_XF_KEY: tf.cast(tf.round(images * 255.0), tf.int64), LABEL_XF_KEY: label}
    pixels = tf.reshape(images, [-1, config.channels])
    mean = tft.mean(pixels, reduce_instance_dims=False)
    std = tf.sqrt(tft.var(pixels, reduce_instance_dims=False)) + _EPSILON
    return {IMAGE_XF_KEY: (images - mean) / std, LABEL_XF_KEY: label}
