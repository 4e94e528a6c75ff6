"""What every trainer shares: feature keys, the architecture table, config and model.json.

Framework modules (keras_trainer, lightning_trainer) import from here and add only
their ``run_fn``, so they read as twins.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config import TrainingConfig

# Raw example contract (ImageExampleGen output).
IMAGE_KEY = "image"
LABEL_KEY = "label"
LABEL_NAME_KEY = "label_name"
FILENAME_KEY = "filename"
# Transform output contract: the only features trainers read.
IMAGE_XF_KEY = "image_xf"
LABEL_XF_KEY = "label_xf"
# What every served model outputs, and what TFMA reads (EvalConfig prediction_key).
PROBABILITIES_KEY = "probabilities"
# Transform-graph vocabulary holding "<label index>:<label name>" lines.
CLASS_VOCAB_NAME = "class_names"

MODEL_CARD_FILE = "model.json"
TRAINING_CONFIG_KEY = "training"
# Augmentation shared by both trainers (train split only): random horizontal flip with
# p=0.5 and an additive brightness shift drawn uniformly from [-delta, delta].
BRIGHTNESS_DELTA = 0.2


@dataclass(frozen=True)
class CnnSpec:
    """A conv-pool stack then dense layers; both frameworks build it from this one spec."""

    conv_filters: tuple[int, ...]
    kernel_size: int
    dense_units: tuple[int, ...]


ARCHITECTURES: dict[str, CnnSpec] = {
    # The reference article's twin CNN: conv32-pool-conv64-pool-dense128-dense<classes>,
    # 'same' padding; 421,642 parameters at 28x28x1 with 10 classes.
    "twin_cnn": CnnSpec(conv_filters=(32, 64), kernel_size=3, dense_units=(128,)),
    # A smaller twin for quick runs and tests.
    "tiny_cnn": CnnSpec(conv_filters=(8, 16), kernel_size=3, dense_units=(32,)),
}


def architecture(name: str) -> CnnSpec:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}") from None


def training_config(custom_config: Mapping[str, Any] | None) -> TrainingConfig:
    """The TrainingConfig a pipeline passed through TFX ``custom_config``."""
    values = (custom_config or {}).get(TRAINING_CONFIG_KEY, {})
    config = TrainingConfig.from_dict(values)
    config.validate()
    return config


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


class Stopwatch:
    """Training wall time and throughput, per epoch.

    The first epoch pays for graph tracing and for filling the in-memory cache, so the
    headline images/s is taken over later epochs whenever there are any.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.epochs: list[tuple[int, float]] = []  # (images, seconds) per finished epoch
        self._epoch_start = self.start
        self._epoch_images = 0

    def add_images(self, count: int) -> None:
        self._epoch_images += count

    def end_epoch(self) -> None:
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

    def summary(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
            "first_epoch_images_per_second": round(self.first_epoch_images_per_second, 1),
        }


def input_contract(config: TrainingConfig) -> dict[str, Any]:
    return {
        "raw": {"image": "encoded JPEG or PNG bytes", "example": "serialized tf.Example with feature 'image'"},
        "transformed": {
            "name": IMAGE_XF_KEY,
            "dtype": "float32",
            "shape": [config.image_size, config.image_size, config.channels],
        },
    }


def write_model_card(serving_dir: str | Path, card: dict[str, Any]) -> None:
    """model.json beside the framework artifact: what a server needs to know about it."""
    os.makedirs(serving_dir, exist_ok=True)
    Path(serving_dir, MODEL_CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))


def read_model_card(serving_dir: str | Path) -> dict[str, Any]:
    path = Path(serving_dir, MODEL_CARD_FILE)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no model card; is {serving_dir} a twinflow serving model?") from None


def directory_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
