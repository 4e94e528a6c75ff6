"""What every trainer shares beyond the core contracts: config intake, class list, timing, card parts.

Framework modules (keras_trainer, lightning_trainer) import from here and from ``core``,
and add only their ``run_fn``, so they read as twins.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from core.config import TrainingConfig
from core.contract import IMAGE_XF_KEY, TRAINING_CONFIG_KEY
from core.errors import TrainingDivergedError
from core.model_card import EpochMetrics, InputContract, SplitMetrics, TensorSpec

# Augmentation shared by both trainers (train split only), each named in TrainingConfig.augment:
# "flip": random horizontal flip with p=0.5; "brightness": an additive shift drawn
# uniformly from [-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA].
BRIGHTNESS_DELTA = 0.2
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # logged per epoch under these names by both


def training_config(custom_config: Mapping[str, Any] | None) -> TrainingConfig:
    """The TrainingConfig a pipeline passed through TFX ``custom_config``."""
    return TrainingConfig.from_dict((custom_config or {}).get(TRAINING_CONFIG_KEY, {}))


def parse_class_vocabulary(lines: list[str | bytes]) -> list[str]:
    """Turn the ``index:name`` vocabulary into names ordered by label index.

    Raises when labels are not exactly 0..K-1 with one name each, which would mean the
    label and label_name columns disagree.
    """
    by_index: dict[int, str] = {}
    for raw in lines:
        entry = raw.decode() if isinstance(raw, bytes) else raw
        index_text, _, name = entry.partition(":")
        index = int(index_text)
        if index in by_index and by_index[index] != name:
            raise ValueError(f"label {index} has two names in the data: {by_index[index]!r} and {name!r}")
        by_index[index] = name
    expected = list(range(len(by_index)))
    if sorted(by_index) != expected:
        raise ValueError(
            f"training labels must be 0..{len(by_index) - 1} with every class present; got {sorted(by_index)}"
        )
    return [by_index[i] for i in expected]


def check_finite_loss(framework: str, epoch: int, loss: float, config: TrainingConfig) -> None:
    """Stop training on a NaN or infinite loss: such a model must never reach evaluation or serving."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"{framework} training diverged: the loss is {loss} in epoch {epoch} "
            f"(learning rate {config.learning_rate}, optimizer {config.optimizer}); no model was written. "
            "Lower --learning-rate and run again."
        )


def split_metrics(loss: float, accuracy: float) -> SplitMetrics:
    return SplitMetrics(loss=float(loss), accuracy=float(accuracy))


class Stopwatch:
    """Training wall time and throughput, per epoch.

    The first epoch pays for graph tracing and for filling the in-memory cache, so the
    headline images/s is taken over later epochs whenever there are any.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.epochs: list[tuple[int, float]] = []  # (images, seconds) per finished epoch
        self.history: list[EpochMetrics] = []  # what each epoch logged, the same names in both frameworks
        self._epoch_start = self.start
        self._epoch_images = 0

    def add_images(self, count: int) -> None:
        self._epoch_images += count

    def end_epoch(self, logged: Mapping[str, Any] | None = None) -> None:
        """Close the epoch; ``logged`` is what the framework logged for it (loss, accuracy, val_loss, val_accuracy)."""
        values = {name: float(logged[name]) for name in EPOCH_METRICS if logged and name in logged}
        self.history.append(EpochMetrics(**{k: v for k, v in values.items() if math.isfinite(v)}))
        now = time.perf_counter()
        self.epochs.append((self._epoch_images, now - self._epoch_start))
        self._epoch_start, self._epoch_images = now, 0

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.epochs)

    @property
    def images_per_second(self) -> float:
        steady = self.epochs[1:] or self.epochs
        images, seconds = sum(i for i, _ in steady), sum(s for _, s in steady)
        return images / seconds if seconds > 0 else 0.0

    @property
    def first_epoch_images_per_second(self) -> float:
        if not self.epochs or self.epochs[0][1] <= 0:
            return 0.0
        return self.epochs[0][0] / self.epochs[0][1]

    def summary(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
            "first_epoch_images_per_second": round(self.first_epoch_images_per_second, 1),
        }


def input_contract(config: TrainingConfig) -> InputContract:
    return InputContract(
        raw={"image": "encoded image bytes (JPEG, PNG, GIF, BMP)", "example": "serialized tf.Example with 'image'"},
        transformed=TensorSpec(
            name=IMAGE_XF_KEY, dtype="float32", shape=[config.image_size, config.image_size, config.channels]
        ),
    )
