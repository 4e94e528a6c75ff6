"""Keras trainer: TFX ``run_fn`` training the twin CNN on Transform output only."""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from twinflow.core.architectures import architecture
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import (
    CLASS_VOCAB_NAME,
    IMAGE_KEY,
    IMAGE_XF_KEY,
    PROBABILITIES_KEY,
    SERVING_EXAMPLES_SIGNATURE,
    SERVING_IMAGE_BYTES_SIGNATURE,
)
from twinflow.core.model_card import ModelCard, TrainingSummary, artifact_size, write_model_card
from twinflow.trainers.common import (
    BRIGHTNESS_DELTA,
    Stopwatch,
    check_finite_loss,
    input_contract,
    parse_class_vocabulary,
    scheduled_learning_rate,
    split_metrics,
    training_config,
)
from twinflow.trainers.tf_keras_autograph import skip_autograph_for_tf_keras
from twinflow.trainers.transformed_data import MB, TransformedSource, memory_budget_bytes


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
    for units in spec.dense_units:
        layers += [*_dropout(spec.dropout), tf.keras.layers.Dense(units, activation="relu")]
    layers += _dropout(spec.dropout)
    layers.append(tf.keras.layers.Dense(num_classes, name="logits"))
    return tf.keras.Sequential(layers, name=arch_name)


def _dropout(rate: float) -> list[tf.keras.layers.Layer]:
    return [tf.keras.layers.Dropout(rate)] if rate else []


def augment(images: tf.Tensor, seed: int, augmentations: tuple[str, ...] = ("flip", "brightness")) -> tf.Tensor:
    """The named augmentations, per image (train split only): horizontal flip (p=0.5), brightness shift."""
    if "flip" in augmentations:
        flip = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if "brightness" in augmentations:
        shift = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA, seed=seed + 1)
        images = images + shift
    return images


class TransformedSplit:
    """One split of Transform output: arrays in memory when they fit ``budget_bytes``, else streamed per epoch."""

    def __init__(
        self,
        file_pattern: list[str],
        data_accessor: Any,
        tf_transform_output: tft.TFTransformOutput,
        config: TrainingConfig,
        budget_bytes: float,
    ):
        self._source = TransformedSource(file_pattern, data_accessor, tf_transform_output, config)
        self._config = config
        arrays = self._source.read(budget_bytes)
        self.held_bytes = 0 if arrays is None else sum(a.nbytes for a in arrays)
        # Held once as tensors (each dataset gathers from these; the numpy arrays are let go).
        self.tensors = None if arrays is None else tuple(tf.constant(a) for a in arrays)

    @property
    def streamed(self) -> bool:
        return self.tensors is None

    def steps_per_epoch(self, replicas: int = 1) -> int | None:
        """Batches per epoch of held training data (``dataset(repeat=True)``); None when streamed: fit counts."""
        if self.tensors is None:
            return None
        return -(-int(self.tensors[1].shape[0]) // (self._config.batch_size * replicas))

    def dataset(
        self, training: bool, images_seen: tf.Variable | None = None, replicas: int = 1, repeat: bool = False
    ) -> tf.data.Dataset:
        """(image_xf [B,H,W,C], label [B]) batches, one epoch; shuffled and augmented for training.

        ``images_seen`` counts the images the dataset yields, inside the graph: Keras then
        needs no per-step Python callback to know an epoch's size. ``repeat`` (held training
        data only) repeats the epochs for ``fit`` with ``steps_per_epoch``.
        """
        config = self._config
        batch_size = config.batch_size * replicas  # data-parallel: each replica steps on batch_size, as in DDP
        if self.tensors is None:
            dataset = self._source.batches(batch_size, shuffle=training, seed=config.seed)
        else:
            images, labels = self.tensors
            count = int(labels.shape[0])
            dataset = tf.data.Dataset.range(count)
            if training:
                dataset = dataset.shuffle(count, seed=config.seed, reshuffle_each_iteration=True)
            dataset = dataset.batch(batch_size)
            if repeat and training:
                # Epochs of batches, repeated, so fit keeps one iterator (steps_per_epoch): a new one
                # per epoch cost 2-5 s at each epoch boundary once Beam stages had run in the process.
                dataset = dataset.repeat()
            dataset = dataset.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
        if training and config.augment:
            dataset = dataset.map(lambda images, labels: (augment(images, config.seed, config.augment), labels))
        if images_seen is not None:
            dataset = dataset.map(lambda images, labels: _counted(images, labels, images_seen))
        return dataset.prefetch(tf.data.AUTOTUNE)


def _counted(images: tf.Tensor, labels: tf.Tensor, images_seen: tf.Variable) -> tuple[tf.Tensor, tf.Tensor]:
    with tf.control_dependencies([images_seen.assign_add(tf.shape(labels, out_type=tf.int64)[0])]):
        return tf.identity(images), tf.identity(labels)


def input_fn(
    file_pattern: list[str],
    data_accessor: Any,
    tf_transform_output: tft.TFTransformOutput,
    config: TrainingConfig,
    training: bool,
) -> tf.data.Dataset:
    """(image_xf [B,H,W,C], label [B]) batches of one split, as the trainer reads them."""
    split = TransformedSplit(file_pattern, data_accessor, tf_transform_output, config, memory_budget_bytes(config))
    return split.dataset(training)


class _EpochCheck(tf.keras.callbacks.Callback):
    """Feeds the shared Stopwatch, and stops training on a non-finite loss (as the Lightning twin does).

    Epoch-level hooks only: a batch-level hook would make Keras call back into Python
    (and wait for the step) after every step.
    """

    def __init__(self, stopwatch: Stopwatch, config: TrainingConfig, images_seen: tf.Variable):
        super().__init__()
        self._stopwatch = stopwatch
        self._config = config
        self._images_seen = images_seen
        self._counted = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._stopwatch.start_epoch()

    def on_test_begin(self, logs: dict | None = None) -> None:  # fit's validation pass starts
        self._stopwatch.end_training_steps()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seen = int(self._images_seen.numpy())
        self._stopwatch.end_epoch(logs, images=seen - self._counted)
        self._counted = seen
        check_finite_loss("keras", epoch + 1, float((logs or {}).get("loss", 0.0)), self._config)


def optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(config.learning_rate, momentum=0.9)
    return tf.keras.optimizers.Adam(config.learning_rate)


def _schedule(config: TrainingConfig) -> list[tf.keras.callbacks.Callback]:
    """The epoch's learning rate, set at its start as the Lightning twin's scheduler sets it."""
    if config.lr_schedule == "constant":
        return []
    return [
        tf.keras.callbacks.LearningRateScheduler(
            lambda epoch, _: scheduled_learning_rate(config.learning_rate, epoch, config.epochs, config.lr_schedule)
        )
    ]


def distribution(config: TrainingConfig) -> tf.distribute.Strategy:
    """One device: TensorFlow's default. More: MirroredStrategy, a replica per GPU in this one process.

    Without that many GPUs it trains on one device and says so: on a CPU one process already
    uses every core. Across machines, tf.distribute.MultiWorkerMirroredStrategy is the equivalent.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if config.devices == 1:
        return tf.distribute.get_strategy()
    if len(gpus) < config.devices:
        print(
            f"[keras] --devices {config.devices}: {len(gpus)} GPUs visible, so one device trains "
            "(MirroredStrategy replicates over GPUs; on a CPU one process already uses every core)",
            flush=True,
        )
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus[: config.devices]])


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


def read_splits(fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, config: TrainingConfig):
    """Train then eval split, each held in memory if it fits what the budget has left, else streamed."""
    budget = memory_budget_bytes(config)
    train = TransformedSplit(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config, budget)
    evaluation = TransformedSplit(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config, budget - train.held_bytes
    )
    mode = "stream" if train.streamed or evaluation.streamed else "memory"
    held = (train.held_bytes + evaluation.held_bytes) / MB
    print(f"[keras] Transform output: {held:,.0f} MB held in memory, input mode {mode}", flush=True)
    return train, evaluation, mode


def run_fn(fn_args: FnArgs) -> None:
    skip_autograph_for_tf_keras()
    config = training_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = parse_class_vocabulary(tf_transform_output.vocabulary_by_name(CLASS_VOCAB_NAME))
    train_split, eval_split, input_mode = read_splits(fn_args, tf_transform_output, config)
    images_seen = tf.Variable(0, dtype=tf.int64, trainable=False)
    evaluation = eval_split.dataset(training=False)

    strategy = distribution(config)
    with strategy.scope():
        model = build_model(config.architecture, config.image_size, config.channels, len(class_names))
        model.compile(
            optimizer=optimizer(config),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    model.summary(print_fn=logging.info)
    device = device_name()
    replicas = strategy.num_replicas_in_sync
    where = f"{replicas} × {device} (MirroredStrategy)" if replicas > 1 else device
    print(f"[keras] training {config.architecture} ({model.count_params():,} parameters) on {where}", flush=True)
    stopwatch = Stopwatch()
    history = model.fit(
        train_split.dataset(training=True, images_seen=images_seen, replicas=replicas, repeat=True),
        steps_per_epoch=train_split.steps_per_epoch(replicas),
        validation_data=evaluation,
        epochs=config.epochs,
        verbose=2,
        callbacks=[
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            ),
            tf.keras.callbacks.TensorBoard(log_dir=os.path.join(fn_args.model_run_dir, "logs"), profile_batch=0),
            _EpochCheck(stopwatch, config, images_seen),
            *_schedule(config),
        ],
    )
    train_loss, train_accuracy = model.evaluate(train_split.dataset(training=False), verbose=0)
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
            input_mode=input_mode,
            train=split_metrics(train_loss, train_accuracy),
            eval=split_metrics(eval_loss, eval_accuracy),
        ),
        size_bytes=artifact_size(fn_args.serving_model_dir, "."),
    )
    write_model_card(fn_args.serving_model_dir, card)
