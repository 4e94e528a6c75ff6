"""The softmax framework's trainer: trainers.base's steps, filled in with plain Keras ``fit``."""

from __future__ import annotations

import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from tests.dummy_framework.data import read_splits
from tests.dummy_framework.export import export
from tests.dummy_framework.model import ARCHITECTURE, build_model
from twinflow.core.model_card import SplitMetrics
from twinflow.trainers.base import Exported, TwinTrainer, split_metrics


class SoftmaxTrainer(TwinTrainer):
    framework = "dummy"
    architecture = ARCHITECTURE

    def seed(self) -> None:
        tf.keras.utils.set_random_seed(self.config.seed)

    def read_data(self) -> None:
        self.train, self.eval, self.input_mode = read_splits(self.fn_args, self.transform_output, self.config)

    def build(self) -> int:
        config = self.config
        self.model = build_model(config.image_size, config.channels, len(self.class_names))
        self.model.compile(
            optimizer=tf.keras.optimizers.Adam(config.learning_rate),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        return int(self.model.count_params())

    def fit(self) -> str:
        self.stopwatch.start_epoch()
        history = self.model.fit(self.train.dataset(training=True), epochs=self.config.epochs, verbose=0)
        for epoch in range(len(history.history["loss"])):
            self.stopwatch.end_epoch({name: values[epoch] for name, values in history.history.items()})
        return "CPU"

    def evaluate(self) -> tuple[SplitMetrics, SplitMetrics]:
        train = self.model.evaluate(self.train.dataset(training=False), verbose=0)
        evaluation = self.model.evaluate(self.eval.dataset(training=False), verbose=0)
        return split_metrics(*train), split_metrics(*evaluation)

    def export(self, path: str) -> Exported:
        return export(self.model, self.transform_output, self.class_names, path)


def run_fn(fn_args: FnArgs) -> None:
    SoftmaxTrainer(fn_args).run()
