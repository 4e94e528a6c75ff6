"""Promotion: may this model replace the one it would replace? Judged on the very same test examples.

After TFMA, the Evaluator judges three checks, and blesses a model only when all pass:

1. finite headline metrics (TFMA's thresholds compare with ``<``, which NaN passes);
2. the accuracy floor (TFMA's value threshold);
3. non-inferiority (``twinflow.core.statistics.non_inferiority``): the candidate and the model it would
   replace predict the same test examples, and the lower bound of the 95% interval of
   (candidate − reference) accuracy must be above −``max_accuracy_drop``. When the interval
   straddles that line the test set is too small to decide, and the model is not blessed.

What a model would replace is the *served* version of its model name, read from the serving
folder (``twinflow.model_store.layout.served_version``: the ``stable`` label's version when labels are set,
so a canary is never the reference; else the newest complete version), loaded by its
model.json. No TFX resolver is involved, so the local runner and Kubeflow judge alike. An
optimized variant is compared with its float parent instead. With nothing served (a first
run), or a served version of another framework or class list, nothing is compared and the
first two checks decide; the reason says so.

The judgement travels on the blessing (custom properties, and ``judgement.json`` in it) to the
pusher, which records it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tfx.components.evaluator import constants
from tfx.types.artifact import Artifact
from tfx.utils import io_utils

from twinflow.components.tfma_results import REPORTED_METRICS, non_finite_headline
from twinflow.core import fs
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import read_model_card
from twinflow.core.statistics import NON_INFERIOR, non_inferiority
from twinflow.model_store.layout import served_version

if TYPE_CHECKING:
    from twinflow.components.paired_predictions import TestSet

NON_FINITE_PROPERTY = "non_finite_metrics"
REASON_PROPERTY = "reason"
COMPARISON_PROPERTY = "comparison"
# What the comparison was with: a served version's number, NOTHING_SERVED, or "" (a variant's parent).
SERVED_VERSION_PROPERTY = "served_version"
NOTHING_SERVED = "none"
JUDGEMENT_FILE = "judgement.json"


@dataclass(frozen=True)
class Reference:
    """The model a candidate is compared with, or (``model_dir`` None) why there is none."""

    name: str  # "served version 1733456789", "its float parent"
    model_dir: str | None
    served_version: str  # SERVED_VERSION_PROPERTY's value
    note: str = ""  # why nothing is compared, or that the candidate is the served version itself
    same_model: bool = False


@dataclass(frozen=True)
class Judgement:
    blessed: bool
    reason: str  # the deciding checks in words: every failed one, or why it passed
    comparison: dict[str, Any] | None  # core.statistics.non_inferiority's result; None when nothing was compared
    served_version: str  # SERVED_VERSION_PROPERTY's value


def served_reference(serving_dir: str, model_name: str, candidate_dir: str) -> Reference:
    """The served version of ``model_name`` as the candidate's reference, or why there is none."""
    served = served_version(fs.join(serving_dir, model_name))
    if served is None:
        return Reference("", None, NOTHING_SERVED, "first version: nothing served to compare with")
    number, name = str(served.number), f"served version {served.number}"
    try:
        card = read_model_card(served.path)
    except ModelCardError as err:
        return Reference(name, None, number, f"{name} has no readable model card ({err}): compared with nothing")
    candidate = read_model_card(candidate_dir)
    if card.framework != candidate.framework:
        note = f"{name} is a {card.framework} model, this one {candidate.framework}: compared with nothing"
        return Reference(name, None, number, note)
    if card.class_names != candidate.class_names:
        note = f"{name} has other classes ({', '.join(card.class_names)}) than this model "
        note += f"({', '.join(candidate.class_names)}): compared with nothing"
        return Reference(name, None, number, note)
    if card.source_model == str(candidate_dir):
        return Reference(name, served.path, number, f"this model is {name} itself", same_model=True)
    return Reference(name, served.path, number)


def parent_reference(parent_dir: str) -> Reference:
    """An optimized variant's float parent (the ModelOptimizer's copy of it) as its reference."""
    return Reference("its float parent", parent_dir, "")


def threshold_failures(validation: Any) -> list[str]:
    """TFMA's failed thresholds (a ``ValidationResult``) in words: the metric, its value and the bound."""
    if validation.validation_ok:
        return []
    words = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            name = REPORTED_METRICS.get(failure.metric_key.name, failure.metric_key.name)
            value = f"test {name} {_percent(failure.metric_value.double_value.value)}"
            threshold = failure.metric_threshold.value_threshold
            if threshold.HasField("lower_bound"):
                words.append(f"{value} is below the floor {_percent(threshold.lower_bound.value)}")
            elif threshold.HasField("upper_bound"):
                words.append(f"{value} is above the limit {_percent(threshold.upper_bound.value)}")
            else:
                words.append(failure.message or f"test {name}: a TFMA threshold failed")
    return words or ["TFMA's validation failed (no failed threshold named)"]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def judge(
    candidate: tuple[str, str],
    metrics: dict[str, float],
    failed_thresholds: list[str],
    reference: Reference,
    test_examples: Callable[[], TestSet],
    max_drop: float,
) -> Judgement:
    """Every check on the candidate (``(name, model folder)``); ``test_examples`` reads the examples both
    models predict (only when there is something to compare with)."""
    name, model_dir = candidate
    refusals = []
    bad = non_finite_headline(metrics)
    if bad:
        refusals.append(f"non-finite test metrics: {', '.join(bad)}")
    refusals += failed_thresholds
    comparison = None
    if reference.model_dir is not None and not reference.same_model and not bad:
        from twinflow.components.paired_predictions import predict_classes

        test = test_examples()
        right = tuple(predict_classes(d, test)[0] == test.labels for d in (model_dir, reference.model_dir))
        comparison = non_inferiority((name, reference.name), right, max_drop) | {"reference_model": reference.model_dir}
        if comparison["verdict"] != NON_INFERIOR:
            refusals.append(comparison["words"])
    if refusals:
        return Judgement(False, "; ".join(refusals), comparison, reference.served_version)
    if comparison is not None:
        return Judgement(True, comparison["words"], comparison, reference.served_version)
    return Judgement(True, reference.note or "nothing to compare with", None, reference.served_version)


def record(blessing: Artifact, judgement: Judgement) -> None:
    """Write the judgement on the blessing: BLESSED / NOT_BLESSED as TFX does, properties, judgement.json."""
    blessed_file = os.path.join(blessing.uri, constants.BLESSED_FILE_NAME)
    not_blessed_file = os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME)
    for stale in (blessed_file, not_blessed_file):
        if io_utils.fileio.exists(stale):
            io_utils.fileio.remove(stale)
    io_utils.write_string_file(blessed_file if judgement.blessed else not_blessed_file, "")
    value = constants.BLESSED_VALUE if judgement.blessed else constants.NOT_BLESSED_VALUE
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)
    blessing.set_string_custom_property(REASON_PROPERTY, judgement.reason)
    blessing.set_string_custom_property(SERVED_VERSION_PROPERTY, judgement.served_version)
    if judgement.comparison is not None:
        blessing.set_string_custom_property(COMPARISON_PROPERTY, json.dumps(judgement.comparison, allow_nan=False))
    text = json.dumps(asdict(judgement), indent=1, allow_nan=False) + "\n"
    io_utils.write_string_file(os.path.join(blessing.uri, JUDGEMENT_FILE), text)


def read(blessing: Artifact) -> Judgement:
    """The judgement an Evaluator left on its blessing (a blessing without one: TFX's verdict, no reason)."""

    def text(name: str) -> str:
        return blessing.get_string_custom_property(name) if blessing.has_custom_property(name) else ""

    blessed = blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.BLESSED_VALUE
    comparison = json.loads(text(COMPARISON_PROPERTY)) if text(COMPARISON_PROPERTY) else None
    return Judgement(blessed, text(REASON_PROPERTY), comparison, text(SERVED_VERSION_PROPERTY))
