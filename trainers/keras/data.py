"""Transform output as Keras reads it: one tf.data pipeline per split, held in memory under the budget or
streamed above it (trainers.transformed_data), shuffled and augmented for training.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from twinflow.core.config import TrainingConfig
from twinflow.trainers.base import brightness_delta
from twinflow.trainers.keras.model import augment
from twinflow.trainers.transformed_data import MB, TransformedSource, memory_budget_bytes


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
        # A backbone's pixels are held as uint8 (streamed as int64): the model takes float32 and scales them itself.
        dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32), labels))
        if training and config.augment:
            delta = brightness_delta(config)
            dataset = dataset.map(lambda images, labels: (augment(images, config.seed, config.augment, delta), labels))
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
