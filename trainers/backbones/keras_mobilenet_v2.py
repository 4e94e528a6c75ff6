"""The Keras twin: tf_keras.applications' MobileNetV2 (no top) between a fixed input layer and one head.

Layers, in order: ``image_xf`` input (H, W, C) in the 0..255 range → ``input_scaling``
(x / 127.5 − 1, the published weights' normalisation) → ``grey_to_rgb`` (only when C is 1: the
grey channel three times) → the applications backbone, flat, under its own layer names →
``avg_pool`` → ``head_dropout`` → ``logits`` (dense, no activation). The normalisation is part
of the model, so every export carries it; the torch twin starts with the same two steps.
"""

from __future__ import annotations

import tensorflow as tf

from twinflow.core.contract import IMAGE_XF_KEY
from twinflow.trainers.backbones import mobilenet_v2_spec as spec


def build_keras_mobilenet_v2(
    input_shape: tuple[int, int, int],
    num_classes: int,
    alpha: float = 1.0,
    dropout: float = 0.2,
    input_dtype: str = "float32",
    bn_momentum: float = spec.KERAS_BN_MOMENTUM,
) -> tf.keras.Model:
    """The Keras twin with fresh (Keras-default) weights; ``weights.apply_weights`` fills them."""
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise ValueError(f"mobilenet_v2 takes 1 (grey) or 3 (RGB) channels, not {channels}")
    image = tf.keras.Input(shape=input_shape, name=IMAGE_XF_KEY, dtype=input_dtype)
    x = tf.keras.layers.Rescaling(spec.INPUT_SCALE, offset=spec.INPUT_OFFSET, name=spec.INPUT_SCALING_LAYER)(image)
    if channels == 1:
        x = tf.keras.layers.Concatenate(name=spec.GREY_TO_RGB_LAYER)([x, x, x])
    backbone = tf.keras.applications.MobileNetV2(
        input_shape=(height, width, 3), input_tensor=x, alpha=alpha, include_top=False, weights=None
    )
    x = tf.keras.layers.GlobalAveragePooling2D(name=spec.POOL_LAYER)(backbone.output)
    x = tf.keras.layers.Dropout(dropout, name=spec.DROPOUT_LAYER)(x)
    logits = tf.keras.layers.Dense(num_classes, name=spec.HEAD_LAYER)(x)
    for layer in backbone.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = bn_momentum  # Keras's weight of the running value (torch: 1 - this)
    return tf.keras.Model(image, logits, name=f"mobilenet_v2_{alpha:g}")


def layer_units(model: tf.keras.Model) -> dict[str, int]:
    """Each backbone layer's freezing unit (mobilenet_v2_spec numbering); input and head layers are absent."""
    outside = {IMAGE_XF_KEY, spec.INPUT_SCALING_LAYER, spec.GREY_TO_RGB_LAYER}
    head = {spec.POOL_LAYER, spec.DROPOUT_LAYER, spec.HEAD_LAYER}
    units: dict[str, int] = {}
    seen_blocks = False
    for layer in model.layers:
        if layer.name in outside or layer.name in head:
            continue
        unit = spec.unit_of_layer(layer.name, seen_blocks)
        seen_blocks = seen_blocks or spec.STEM_UNIT < unit < spec.TOP_UNIT
        units[layer.name] = unit
    return units


def set_trainable_blocks(model: tf.keras.Model, top_blocks: int, train_batch_norm: bool = False) -> None:
    """Freeze the backbone but its top ``top_blocks`` units; the head always trains.

    A frozen layer gets ``trainable = False``: its weights get no gradient, and a frozen
    BatchNormalization layer runs in inference mode (moving statistics, no updates) even under
    ``training=True`` — tf_keras's rule since TF 2.0, the per-layer form of calling the backbone
    with ``training=False``, which would also fix batch norm in the unfrozen blocks and when
    training from scratch. Batch norm inside unfrozen units stays frozen too unless
    ``train_batch_norm`` (the fine-tuning advice for small batches; set it to train from scratch).
    Compile the model again afterwards: Keras reads ``trainable`` when it compiles.
    """
    unfrozen = spec.trainable_units(top_blocks)
    for name, unit in layer_units(model).items():
        layer = model.get_layer(name)
        is_batch_norm = isinstance(layer, tf.keras.layers.BatchNormalization)
        layer.trainable = unit in unfrozen and (train_batch_norm or not is_batch_norm)
