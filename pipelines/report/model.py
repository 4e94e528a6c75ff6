"""The results report as one typed model: what a run did, per framework and per variant, and the comparison.

``report.json`` is this model serialized (fields without a value are left out); report.md and report.html
render that serialization. Code that decides something from a report (the command line's exit code, the
scheduler's tick summary, history) reads the model, never a dict's keys. A row says whether its framework
trained (``status``), instead of a missing key meaning it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinflow.core.model_card import EpochMetrics

TRAINED, NOT_TRAINED = "trained", "not trained"
VARIANT_LATENCY_KEYS = ("p50_ms_b1_t1", "p50_ms_b64_t1", "p50_ms_b1_t2", "p50_ms_b64_t2")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepeatSummary(_Part):
    """One seed of a framework trained with ``--repeats``."""

    seed: int | None = None
    eval_accuracy: float | None = None
    test_accuracy: float | None = None
    blessed: bool | None = None
    epochs_run: int | None = None
    chosen: bool = False


class SeedVariation(_Part):
    """Test accuracy over the repeats that were evaluated: mean and sample standard deviation."""

    n: int
    mean: float | None = None
    sd: float | None = None


class FrameworkRow(_Part):
    """One framework's branch of the run: the trained model (with repeats, the one the pusher chose), its
    evaluation, blessing and push."""

    framework: str
    repeat: int = 1
    status: Literal["trained", "not trained"] = TRAINED
    model_dir: str | None = None
    seed: int | None = None
    device: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    model_size_bytes: int | None = None
    epochs_run: int | None = None
    training_seconds: float | None = None
    images_per_second: float | None = None
    train_accuracy: float | None = None
    train_loss: float | None = None
    eval_accuracy: float | None = None
    eval_loss: float | None = None
    history: list[EpochMetrics] = Field(default_factory=list)
    test_accuracy: float | None = None
    test_loss: float | None = None
    test_examples: int | None = None
    per_class_accuracy: dict[str, float | None] | None = None
    blessed: bool = False
    served_comparison: dict[str, Any] | None = None  # the Evaluator's paired comparison with the served version
    not_blessed_because: str | None = None
    repeats: list[RepeatSummary] | None = None
    seed_variation: SeedVariation | None = None
    pushed: bool = False
    pushed_to: str | None = None
    pushed_version: int | None = None
    push_reason: str | None = None
    push_choice: str | None = None  # the pusher's own account of its choice among repeats

    @property
    def trained(self) -> bool:
        return self.status == TRAINED

    @property
    def evaluated(self) -> bool:
        return self.trained and self.test_accuracy is not None


class VariantRow(_Part):
    """The float model or one optimized variant of a framework: accuracy, size, latency, blessing, push."""

    framework: str
    variant: str
    model: str | None = None
    status: Literal["made", "not made"] = "made"
    method: str | None = None
    sparsity: float | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    size_vs_float: float | None = None
    p50_ms_b1_t1: float | None = None
    p50_ms_b64_t1: float | None = None
    p50_ms_b1_t2: float | None = None
    p50_ms_b64_t2: float | None = None
    speedup_b1_t1: float | None = None
    test_accuracy: float | None = None
    delta_vs_float: float | None = None
    blessed: bool | None = None
    pushed: bool | None = None
    push_reason: str | None = None


class ComponentTiming(_Part):
    id: str
    state: str
    seconds: float


class Difference(_Part):
    """The first framework minus the second, row by row (the Δ row of the results table)."""

    frameworks: str
    train_accuracy: float | None = None
    eval_accuracy: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    training_seconds: float | None = None
    images_per_second: float | None = None
    parameters: float | None = None
    model_size_bytes: float | None = None


class Stopped(_Part):
    """Where a run stopped (drift, data validation, a failed component) and why, in the error's words."""

    at: list[str]
    reason: str


class Report(_Part):
    """What one run did. Runs that did nothing say why: ``unchanged_since`` (same inputs as what is served) or
    ``no_new_data`` (retrain, no newer span)."""

    pipeline: str | None = None
    run_id: str | None = None
    wall_seconds: float | None = None
    config: dict[str, Any] | None = None
    components: list[ComponentTiming] = Field(default_factory=list)
    frameworks: list[FrameworkRow] = Field(default_factory=list)
    variants: list[VariantRow] = Field(default_factory=list)
    data: dict[str, Any] | None = None  # ImageExampleGen's ingest report
    data_fingerprint: str | None = None
    examples_uri: str | None = None
    spans: list[int] | None = None
    drift: dict[str, Any] | None = None  # the drift gate's report: every feature's distance
    # The paired comparison of the first two evaluated frameworks on the very same test images
    # (core.statistics.compare), and with more frameworks every other pair too.
    comparison: dict[str, Any] | None = None
    comparisons: list[dict[str, Any]] = Field(default_factory=list)
    seed_comparison: dict[str, Any] | None = None
    difference: Difference | None = None
    stopped: Stopped | None = None
    unchanged_since: str | None = None
    no_new_data: bool = False

    @property
    def all_trained(self) -> bool:
        """Every framework of the run trained (a run with nothing to do counts as done)."""
        return all(row.trained for row in self.frameworks)

    def row(self, framework: str) -> FrameworkRow:
        return next(row for row in self.frameworks if row.framework == framework)

    def to_json(self) -> dict[str, Any]:
        """report.json's content: strict JSON (NaN and infinities become null), fields without a value left out."""
        return strict_json(self.model_dump(mode="json", exclude_none=True))


def strict_json(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and a reader must see 'no value'."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value
