"""Transform output as both trainers read it: held in memory under a budget, streamed above it.

Small data is read once into arrays and batched by index (one gather per batch, no
per-example tf.data work): this is what lets the trainers run at the speed of a bare loop.
Data over ``TrainingConfig.memory_budget_mb`` is never held whole: batches are streamed
from the TFRecords on every epoch, shuffled through a bounded buffer, so a trainer's peak
memory does not grow with the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from twinflow.core.config import TrainingConfig
from twinflow.core.contract import IMAGE_XF_KEY, LABEL_XF_KEY

MB = 1024 * 1024
READ_BATCH = 1024
SHUFFLE_BUFFER_MAX = 10_000  # examples; a streamed shuffle buffer also stays within a quarter of the budget
SHUFFLE_BUFFER_MIN = 256

Arrays = tuple[np.ndarray, np.ndarray]  # (image_xf [N,H,W,C] float32, or uint8 pixels for backbones; label [N] int64)


def transformed_batches(
    file_pattern: list[str],
    data_accessor: Any,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle_buffer: int = 0,
    seed: int = 0,
) -> tf.data.Dataset:
    """(image_xf, label [B]) batches read from the TFRecords, one pass; shuffled by records when ``shuffle_buffer``."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=batch_size,
        shuffle=shuffle_buffer > 0,
        shuffle_buffer_size=max(shuffle_buffer, 1),
        shuffle_seed=seed,
        num_epochs=1,
        label_key=LABEL_XF_KEY,
    )
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tf_transform_output.transformed_metadata.schema)
    return dataset.map(lambda features, label: (features[IMAGE_XF_KEY], tf.reshape(label, [-1])))


def read_within_budget(batches: tf.data.Dataset, budget_bytes: float) -> Arrays | None:
    """All of ``batches`` as arrays, or None as soon as they would pass ``budget_bytes`` (then: stream).

    The split's size is only known by reading it, so data over the budget costs one extra
    partial pass, bounded by the budget, before streaming starts.
    """
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0
    for image_batch, label_batch in batches.as_numpy_iterator():
        held += image_batch.nbytes + label_batch.nbytes
        if held > budget_bytes:
            return None
        images.append(held_images(image_batch))
        labels.append(label_batch.astype(np.int64, copy=False))
    if not labels:
        raise ValueError("the Transform output split is empty: no examples to train or evaluate on")
    return np.concatenate(images), np.concatenate(labels)


def held_images(batch: np.ndarray) -> np.ndarray:
    """Images as held in memory: normalised floats as float32; pixel values (a backbone's integers 0..255) as
    uint8, a quarter of the memory (the model's first layer scales them)."""
    if np.issubdtype(batch.dtype, np.integer):
        return batch.astype(np.uint8)
    return batch.astype(np.float32, copy=False)


def shuffle_buffer_size(example_bytes: int, budget_bytes: float) -> int:
    """Examples a streamed shuffle buffer holds: up to 10,000, within a quarter of the memory budget."""
    fits = int(budget_bytes / 4 // max(example_bytes, 1))
    return max(SHUFFLE_BUFFER_MIN, min(SHUFFLE_BUFFER_MAX, fits))


def memory_budget_bytes(config: TrainingConfig) -> float:
    """``training.memory_budget_mb`` in bytes: what the train and eval splits together may hold."""
    return config.memory_budget_mb * MB


def example_bytes(config: TrainingConfig) -> int:
    """Bytes one transformed example takes in memory (float32 image or uint8 pixels, int64 label)."""
    return config.image_size * config.image_size * config.channels * (1 if config.backbone else 4) + 8


class TransformedSource:
    """One split's Transform output as a trainer reads it under ``config.memory_budget_mb``: the one
    place both trainers size their shuffle buffer and read arrays from."""

    def __init__(
        self, files: list[str], data_accessor: Any, tf_transform_output: tft.TFTransformOutput, config: TrainingConfig
    ):
        self._files, self._data_accessor, self._tft_output = files, data_accessor, tf_transform_output
        self._config = config

    @property
    def budget_bytes(self) -> float:
        return memory_budget_bytes(self._config)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
        """One streamed pass; shuffled through a buffer sized from the budget when ``shuffle``."""
        buffer = 0
        if shuffle:
            buffer = shuffle_buffer_size(example_bytes(self._config), self.budget_bytes)
        return transformed_batches(self._files, self._data_accessor, self._tft_output, batch_size, buffer, seed)

    def read(self, budget_bytes: float) -> Arrays | None:
        """The whole split as arrays, or None when it is over ``budget_bytes``."""
        return read_within_budget(self.batches(READ_BATCH), budget_bytes)
