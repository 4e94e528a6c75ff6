"""Keras trainer: TFX ``run_fn`` training the twin CNN on Transform output only."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from core import fs
from core.architectures import architecture
from core.config import TrainingConfig
from core.contract import (
    CLASS_VOCAB_NAME,
    IMAGE_KEY,
    IMAGE_XF_KEY,
    LABEL_XF_KEY,
    PROBABILITIES_KEY,
    SERVING_EXAMPLES_SIGNATURE,
    SERVING_IMAGE_BYTES_SIGNATURE,
)
from core.model_card import ModelCard, TrainingSummary, write_model_card
from trainers.common import (
    BRIGHTNESS_DELTA,
    Stopwatch,
    check_finite_loss,
    input_contract,
    parse_class_vocabulary,
    split_metrics,
    training_config,
)

SHUFFLE_BUFFER = 10_000


def build_model(arch_name: str, image_size: int, channels: int, num_classes: int) -> tf.keras.Model:
    """The twin CNN as Keras layers; outputs logits (softmax is applied at serving)."""
    spec = architecture(arch_name)
    layers: list[tf.keras.layers.Layer] = [tf.keras.Input(shape=(image_size, image_size, channels), name=IMAGE_XF_KEY)]
    for filters in spec.conv_filters:
        layers += [
            tf.keras.layers.Conv2D(filters, spec.kernel_size, padding="same", activation="relu"),
            tf.keras.layers.MaxPooling2D(2),
        ]
    layers.append(tf.keras.layers.Flatten())
    layers += [tf.keras.layers.Dense(units, activation="relu") for units in spec.dense_units]
    layers.append(tf.keras.layers.Dense(num_classes, name="logits"))
    return tf.keras.Sequential(layers, name=arch_name)


def augment(images: tf.Tensor, seed: int, augmentations: tuple[str, ...] = ("flip", "brightness")) -> tf.Tensor:
    """The named augmentations, per image (train split only): horizontal flip (p=0.5), brightness shift."""
    if "flip" in augmentations:
        flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if "brightness" in augmentations:
        shift = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, seed=seed + 1)
        images = images + shift
    return images


def input_fn(
    file_pattern: list[str],
    data_accessor: Any,
    tf_transform_output: tft.TFTransformOutput,
    config: TrainingConfig,
    training: bool,
) -> tf.data.Dataset:
    """(image_xf [B,H,W,C], label [B]) batches; cached in memory, shuffled/augmented for training."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=1024, shuffle=False, num_epochs=1, label_key=LABEL_XF_KEY),
        tf_transform_output.transformed_metadata.schema,
    )
    dataset = dataset.map(lambda features, label: (features[IMAGE_XF_KEY], tf.reshape(label, [-1])))
    dataset = dataset.unbatch().cache()
    if training:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=config.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size)
    if training and config.augment:
        dataset = dataset.map(lambda images, labels: (augment(images, config.seed, config.augment), labels))
    return dataset.prefetch(tf.data.AUTOTUNE)


class _EpochCheck(tf.keras.callbacks.Callback):
    """Feeds the shared Stopwatch, and stops training on a non-finite loss (as the Lightning twin does)."""

    def __init__(self, stopwatch: Stopwatch, config: TrainingConfig):
        super().__init__()
        self._stopwatch = stopwatch
        self._config = config

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stopwatch.add_images(self._config.batch_size)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._stopwatch.end_epoch(logs)
        check_finite_loss("keras", epoch + 1, float((logs or {}).get("loss", 0.0)), self._config)


def _optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(config.learning_rate, momentum=0.9)
    return tf.keras.optimizers.Adam(config.learning_rate)


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({gpus[0].name})" if gpus else "CPU"


def export_serving_model(
    model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, class_names: list[str], path: str
) -> None:
    """SavedModel with the transform graph inside, for tf.Example and raw image bytes."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    names = tf.constant(class_names)
    image_spec = {IMAGE_KEY: tf_transform_output.raw_feature_spec()[IMAGE_KEY]}

    def predict(raw_features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw_features)
        probabilities = tf.nn.softmax(model(transformed[IMAGE_XF_KEY], training=False))
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


def run_fn(fn_args: FnArgs) -> None:
    config = training_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = parse_class_vocabulary(tf_transform_output.vocabulary_by_name(CLASS_VOCAB_NAME))
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config, training=True)
    evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config, training=False)

    model = build_model(config.architecture, config.image_size, config.channels, len(class_names))
    model.compile(
        optimizer=_optimizer(config),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.summary(print_fn=logging.info)
    device = device_name()
    print(f"[keras] training {config.architecture} ({model.count_params():,} parameters) on {device}", flush=True)
    stopwatch = Stopwatch()
    history = model.fit(
        train,
        validation_data=evaluation,
        epochs=config.epochs,
        verbose=2,
        callbacks=[
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            ),
            tf.keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs")),
            _EpochCheck(stopwatch, config),
        ],
    )
    train_clean = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config, training=False)
    train_loss, train_accuracy = model.evaluate(train_clean, verbose=0)
    eval_loss, eval_accuracy = model.evaluate(evaluation, verbose=0)

    export_serving_model(model, tf_transform_output, class_names, fn_args.serving_model_dir)
    card = ModelCard(
        framework="keras",
        format="saved_model",
        artifact=".",
        signatures=[SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGE_BYTES_SIGNATURE],
        class_names=class_names,
        input_contract=input_contract(config),
        architecture=config.architecture,
        parameters=int(model.count_params()),
        training=TrainingSummary(
            config=config,
            device=device,
            epochs_run=len(history.history["loss"]),
            **stopwatch.summary(),
            train=split_metrics(train_loss, train_accuracy),
            eval=split_metrics(eval_loss, eval_accuracy),
        ),
        size_bytes=fs.directory_size(fn_args.serving_model_dir),
    )
    write_model_card(fn_args.serving_model_dir, card)
