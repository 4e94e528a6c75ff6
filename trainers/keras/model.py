"""The Keras twin: the CNNs of core.architectures as Keras layers (or a pretrained backbone from
trainers/backbones/), and the training-time augmentation.

Every layer, initialiser and augmentation has its exact counterpart in trainers/lightning/model.py.
"""

from __future__ import annotations

import tensorflow as tf

from twinflow.core.architectures import BACKBONES, architecture
from twinflow.core.contract import IMAGE_XF_KEY
from twinflow.trainers.base import BRIGHTNESS_DELTA, bn_momentum


def build_model(
    arch_name: str,
    image_size: int,
    channels: int,
    num_classes: int,
    width_multiplier: float = 1.0,
    from_scratch: bool = False,
) -> tf.keras.Model:
    """The twin as Keras layers (float32 ``image_xf`` in, logits out: softmax is applied at serving)."""
    if arch_name in BACKBONES:
        from twinflow.trainers.backbones.keras_mobilenet_v2 import build_keras_mobilenet_v2

        shape = (image_size, image_size, channels)
        return build_keras_mobilenet_v2(
            shape,
            num_classes,
            width_multiplier,
            BACKBONES[arch_name].head_dropout,
            bn_momentum=bn_momentum(from_scratch),
        )
    spec = architecture(arch_name)
    layers: list[tf.keras.layers.Layer] = [tf.keras.Input(shape=(image_size, image_size, channels), name=IMAGE_XF_KEY)]
    for filters in spec.conv_filters:
        layers += [
            tf.keras.layers.Conv2D(filters, spec.kernel_size, padding="same", activation="relu"),
            tf.keras.layers.MaxPooling2D(2),
        ]
    layers.append(tf.keras.layers.Flatten())
    for units in spec.dense_units:
        layers += [*_dropout(spec.dropout), tf.keras.layers.Dense(units, activation="relu")]
    layers += _dropout(spec.dropout)
    layers.append(tf.keras.layers.Dense(num_classes, name="logits"))
    return tf.keras.Sequential(layers, name=arch_name)


def _dropout(rate: float) -> list[tf.keras.layers.Layer]:
    return [tf.keras.layers.Dropout(rate)] if rate else []


def augment(
    images: tf.Tensor,
    seed: int,
    augmentations: tuple[str, ...] = ("flip", "brightness"),
    brightness: float = BRIGHTNESS_DELTA,
) -> tf.Tensor:
    """The named augmentations, per image (train split only): horizontal flip (p=0.5), a brightness shift drawn
    from [-brightness, brightness] (trainers.base.brightness_delta: in the images' own units)."""
    if "flip" in augmentations:
        flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if "brightness" in augmentations:
        shift = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -brightness, brightness, seed=seed + 1)
        images = images + shift
    return images


def set_trainable_blocks(model: tf.keras.Model, trainable_units: int, train_batch_norm: bool = False) -> None:
    """A backbone's top ``trainable_units`` units train, the rest is frozen in inference mode (the head always
    trains): trainers/backbones/keras_mobilenet_v2.py."""
    from twinflow.trainers.backbones.keras_mobilenet_v2 import set_trainable_blocks as set_blocks

    set_blocks(model, trainable_units, train_batch_norm)
