"""Training time and throughput per epoch, with the training steps timed apart, the same way in every trainer."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from twinflow.core.model_card import EpochMetrics

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # logged per epoch under these names by both


class Stopwatch:
    """Training wall time and throughput, per epoch, with the training steps timed apart.

    An epoch runs from the end of the one before to its own end; its training steps run
    from ``start_epoch`` to ``end_training_steps`` (where validation begins). Throughput is
    images over training-step time only; the rest of the epoch (validation, callbacks,
    checkpoints, logging) is reported as overhead. The first epoch pays for graph tracing
    and data loading, so both headline figures are taken over later epochs when there are any.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.epochs: list[tuple[int, float, float]] = []  # (images, epoch seconds, training-step seconds)
        self.history: list[EpochMetrics] = []  # what each epoch logged, the same names in both frameworks
        self._last_end = self.start
        self._epoch_start: float | None = None
        self._steps_end: float | None = None
        self._epoch_images = 0

    def start_epoch(self) -> None:
        self._epoch_start, self._steps_end = time.perf_counter(), None

    def end_training_steps(self) -> None:
        if self._steps_end is None:
            self._steps_end = time.perf_counter()

    def add_images(self, count: int) -> None:
        self._epoch_images += count

    def end_epoch(self, logged: Mapping[str, Any] | None = None, images: int | None = None) -> None:
        """Close the epoch; ``logged`` is what the framework logged for it (loss, accuracy, val_loss, val_accuracy)."""
        values = {name: float(logged[name]) for name in EPOCH_METRICS if logged and name in logged}
        self.history.append(EpochMetrics(**{k: v for k, v in values.items() if math.isfinite(v)}))
        now = time.perf_counter()
        steps_start = self._epoch_start if self._epoch_start is not None else self._last_end
        steps = (self._steps_end or now) - steps_start
        count = self._epoch_images if images is None else images
        self.epochs.append((count, now - self._last_end, steps))
        self._last_end, self._epoch_start, self._steps_end, self._epoch_images = now, None, None, 0

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds, _ in self.epochs)

    def _steady(self) -> list[tuple[int, float, float]]:
        return self.epochs[1:] or self.epochs

    @property
    def images_per_second(self) -> float:
        """Training-step throughput over the steady epochs."""
        steady = self._steady()
        images, seconds = sum(e[0] for e in steady), sum(e[2] for e in steady)
        return images / seconds if seconds > 0 else 0.0

    @property
    def overhead_seconds_per_epoch(self) -> float:
        """Mean time per steady epoch outside training steps: validation, callbacks, checkpoints, logging."""
        steady = self._steady()
        return sum(max(total - steps, 0.0) for _, total, steps in steady) / len(steady) if steady else 0.0

    @property
    def first_epoch_images_per_second(self) -> float:
        if not self.epochs or self.epochs[0][2] <= 0:
            return 0.0
        return self.epochs[0][0] / self.epochs[0][2]

    def epoch_line(self, epoch: int, epochs: int) -> str:
        """The line both trainers print as an epoch ends (Keras's verbose=2 line, in twinflow's words)."""
        images, seconds, steps = self.epochs[-1]
        logged = self.history[-1].model_dump() if self.history else {}
        metrics = " - ".join(f"{name}: {logged[name]:.4f}" for name in EPOCH_METRICS if logged.get(name) is not None)
        speed = images / steps if steps else 0
        return f"Epoch {epoch}/{epochs} - {seconds:.1f}s - {speed:,.0f} images/s in training steps - {metrics}"

    def save(self, path: str) -> None:
        """The epochs so far, for another process (a data-parallel launcher) to ``load``."""
        state = {"epochs": self.epochs, "history": [h.model_dump() for h in self.history]}
        with open(path, "w") as handle:
            json.dump(state, handle)

    def load(self, path: str) -> None:
        with open(path) as handle:
            state = json.load(handle)
        self.epochs = [tuple(epoch) for epoch in state["epochs"]]
        self.history = [EpochMetrics(**h) for h in state["history"]]

    def summary(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
            "first_epoch_images_per_second": round(self.first_epoch_images_per_second, 1),
            "overhead_seconds_per_epoch": round(self.overhead_seconds_per_epoch, 3),
        }
