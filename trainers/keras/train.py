"""The Keras trainer: TFX's ``run_fn``, the twin trained with ``fit`` on Transform output only.

The steps are trainers.base's (data, build, fit, evaluate, export, model card), as in the Lightning twin.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from twinflow.core.config import TrainingConfig
from twinflow.core.contract import SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGE_BYTES_SIGNATURE
from twinflow.core.model_card import SplitMetrics
from twinflow.trainers.backbones.weights import starting_weights
from twinflow.trainers.base import (
    Exported,
    Phase,
    TwinTrainer,
    check_finite_loss,
    scheduled_learning_rate,
    split_metrics,
)
from twinflow.trainers.keras.data import read_splits
from twinflow.trainers.keras.export import export_serving_model
from twinflow.trainers.keras.model import build_model, set_trainable_blocks
from twinflow.trainers.stopwatch import Stopwatch
from twinflow.trainers.user_model import build_keras as build_user_keras

# TensorFlow 2.16's AutoGraph skips modules it knows to be graph code (``tensorflow``, ``keras``, …) but not
# ``tf_keras``, the package TFX 1.16 needs Keras 2 from. So every ``tf.function`` that calls into tf-keras
# (Keras's train and test functions, the serving signatures) had AutoGraph rewrite tf-keras's internals source
# file by source file: on 2 cores about 30 s before the first training step and 6 s more at export, for the
# same graphs and results. Every Keras entry point (run_fn, make_variant) adds the missing rule first.
TF_KERAS_PACKAGE = "tf_keras"


def skip_autograph_for_tf_keras() -> None:
    """Add a do-not-convert rule for tf-keras (idempotent; a no-op where AutoGraph has no rule list)."""
    from tensorflow.python.autograph.core import config as autograph_config

    rules = getattr(autograph_config, "CONVERSION_RULES", None)
    skip = autograph_config.DoNotConvert
    if rules is None or any(isinstance(rule, skip) and rule.matches(TF_KERAS_PACKAGE) for rule in rules):
        return
    autograph_config.CONVERSION_RULES = (skip(TF_KERAS_PACKAGE), *rules)


class _EpochCheck(tf.keras.callbacks.Callback):
    """Feeds the shared Stopwatch, prints one line per epoch and stops on a non-finite loss, as the Lightning twin
    does.

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
        print(self._stopwatch.epoch_line(epoch + 1, self.params.get("epochs") or epoch + 1), flush=True)
        check_finite_loss("keras", epoch + 1, float((logs or {}).get("loss", 0.0)), self._config)


def optimizer(config: TrainingConfig) -> tf.keras.optimizers.Optimizer:
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(config.learning_rate, momentum=0.9)
    return tf.keras.optimizers.Adam(config.learning_rate)


def _schedule(config: TrainingConfig, phase: Phase, first_epoch: int = 0) -> list[tf.keras.callbacks.Callback]:
    """The epoch's learning rate within its phase, set at the epoch's start as the Lightning twin's scheduler sets
    it (``fit`` counts epochs across phases: ``first_epoch`` is where this phase began)."""
    if config.lr_schedule == "constant":
        return []
    return [
        tf.keras.callbacks.LearningRateScheduler(
            lambda epoch, _: scheduled_learning_rate(
                phase.learning_rate, epoch - first_epoch, phase.epochs, config.lr_schedule
            )
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


class KerasTrainer(TwinTrainer):
    """The Keras twin through trainers.base's steps: tf.data input, ``fit``, a SavedModel export."""

    framework = "keras"

    def seed(self) -> None:
        tf.keras.utils.set_random_seed(self.config.seed)

    def read_data(self) -> None:
        self.train_split, self.eval_split, self.input_mode = read_splits(
            self.fn_args, self.transform_output, self.config
        )
        self.images_seen = tf.Variable(0, dtype=tf.int64, trainable=False)

    def build(self) -> int:
        config = self.config
        self.strategy = distribution(config)
        with self.strategy.scope():
            if self.user_module is not None:
                self.model = build_user_keras(self.user_module, self.input_shape, len(self.class_names))
            else:
                self.model = build_model(
                    config.architecture,
                    config.image_size,
                    config.channels,
                    len(self.class_names),
                    config.width_multiplier,
                    from_scratch=config.weights == "none",
                )
            self.start_from(
                starting_weights(
                    config, len(self.class_names), self.weights_source, self.weights_note, keras_model=self.model
                )
            )
        self.model.summary(print_fn=logging.info)
        return int(self.model.count_params())

    def _compile(self, phase: Phase) -> None:
        """For a phase: which backbone layers train (frozen ones run in inference mode), at which rate. Keras reads
        ``trainable`` when it compiles, so every phase compiles again."""
        config = self.config
        with self.strategy.scope():
            if config.backbone:
                set_trainable_blocks(self.model, phase.trainable_units, phase.train_batch_norm)
            self.model.compile(
                optimizer=optimizer(config.model_copy(update={"learning_rate": phase.learning_rate})),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )

    def fit(self) -> str:
        config, model = self.config, self.model
        device = device_name()
        replicas = self.strategy.num_replicas_in_sync
        where = f"{replicas} × {device} (MirroredStrategy)" if replicas > 1 else device
        name = self.architecture or config.architecture
        print(f"[keras] training {name} ({model.count_params():,} parameters) on {where}", flush=True)
        training = self.train_split.dataset(training=True, images_seen=self.images_seen, replicas=replicas, repeat=True)
        done = 0
        for phase in self.phases:
            self._compile(phase)
            if len(self.phases) > 1 or config.backbone:
                print(f"[keras] phase {phase.name}: {phase.epochs} epochs at {phase.learning_rate:g}", flush=True)
            history = model.fit(
                training,
                steps_per_epoch=self.train_split.steps_per_epoch(replicas),
                validation_data=self.eval_split.dataset(training=False),
                initial_epoch=done,
                epochs=done + phase.epochs,
                verbose=0,  # _EpochCheck prints the epoch's line, as the Lightning twin's callback does
                callbacks=[
                    tf.keras.callbacks.EarlyStopping(
                        monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
                    ),
                    tf.keras.callbacks.TensorBoard(
                        log_dir=os.path.join(self.fn_args.model_run_dir, "logs"), profile_batch=0
                    ),
                    _EpochCheck(self.stopwatch, config, self.images_seen),
                    *_schedule(config, phase, done),
                ],
            )
            done += len(history.history.get("loss", []))
        return device

    def evaluate(self) -> tuple[SplitMetrics, SplitMetrics]:
        train = self.model.evaluate(self.train_split.dataset(training=False), verbose=0)
        evaluation = self.model.evaluate(self.eval_split.dataset(training=False), verbose=0)
        return split_metrics(*train), split_metrics(*evaluation)

    def export(self, path: str) -> Exported:
        export_serving_model(self.model, self.transform_output, self.class_names, path)
        return Exported(
            format="saved_model",
            artifact=".",
            signatures=[SERVING_EXAMPLES_SIGNATURE, SERVING_IMAGE_BYTES_SIGNATURE],
        )


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer's entry point (``twinflow.trainers.keras.train.run_fn``)."""
    skip_autograph_for_tf_keras()
    KerasTrainer(fn_args).run()
