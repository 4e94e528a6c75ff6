"""Paired statistics of two classifiers on the very same examples: what the comparison report and the
promotion rule share, free of TensorFlow so that components, pipelines and tests can all use them.

- accuracy and per-class recall with 95% Wilson score intervals (``scipy.stats.binomtest``);
- the 2×2 agreement table and McNemar's exact test: a two-sided binomial test of the
  discordant pairs against 1/2 (``scipy.stats.binomtest``), the exact form of McNemar's test;
- a 95% paired-bootstrap interval of the accuracy difference (``scipy.stats.bootstrap`` with
  ``paired=True``, percentile method, 2,000 resamples, fixed seed), overall and per class;
- Holm's step-down adjustment of the per-class p-values (one test per class is a family of tests);
- Welch's t-test of test accuracy over seeds (repeats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

SIGNIFICANCE = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def proportion(correct: np.ndarray) -> dict[str, Any]:
    """A share of right answers with its 95% Wilson score interval."""
    n, k = int(correct.size), int(correct.sum())
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return {"value": k / n, "low": float(interval.low), "high": float(interval.high), "n": n}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when the models never disagree)."""
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Accuracy of a minus b, with a paired-bootstrap 95% interval (examples resampled together)."""
    n = int(correct_a.size)
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    value = float(correct_a.mean() - correct_b.mean())
    if n < 2 or np.array_equal(correct_a, correct_b):
        return {"value": value, "low": value, "high": value, "n": n}
    result = stats.bootstrap(
        (correct_a.astype(float), correct_b.astype(float)),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return {"value": value, "low": float(interval.low), "high": float(interval.high), "n": n}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: compare each with the family-wise level.

    With one test per class, some p-value falls below 5% by chance alone; rejecting where the
    adjusted value is below 5% keeps the chance of any false finding among them at 5%, with no
    assumption about how the tests depend on each other, and never rejects less than Bonferroni.
    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), capped at 1, and kept
    at least as large as the adjusted values before it.
    """
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


CONFIDENT_MISTAKES = 12


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int = CONFIDENT_MISTAKES) -> list[int]:
    """The wrong answers given with the highest probability, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")
    return [int(i) for i in wrong[order][:count]]


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def compare(
    names: tuple[str, str], labels: np.ndarray, predicted: tuple[np.ndarray, np.ndarray], class_names: list[str]
) -> dict[str, Any]:
    """Intervals per framework, the agreement table, McNemar's test and the paired difference, overall and per class."""
    a, b = names
    right_a, right_b = predicted[0] == labels, predicted[1] == labels
    table = {
        "both_right": int((right_a & right_b).sum()),
        f"only_{a}_right": int((right_a & ~right_b).sum()),
        f"only_{b}_right": int((~right_a & right_b).sum()),
        "both_wrong": int((~right_a & ~right_b).sum()),
    }
    p_value = mcnemar_exact(table[f"only_{a}_right"], table[f"only_{b}_right"])
    difference = paired_difference(right_a, right_b)
    per_class = {}
    for index, name in enumerate(class_names):
        rows = labels == index
        per_class[name] = {
            "recall": {a: proportion(right_a[rows]), b: proportion(right_b[rows])},
            "difference": paired_difference(right_a[rows], right_b[rows]),
            "p_value": mcnemar_exact(int((right_a & ~right_b)[rows].sum()), int((~right_a & right_b)[rows].sum())),
        }
    for row, adjusted in zip(per_class.values(), holm([row["p_value"] for row in per_class.values()]), strict=True):
        row["p_value_holm"] = adjusted
    return {
        "frameworks": [a, b],
        "test_examples": int(labels.size),
        "accuracy": {a: proportion(right_a), b: proportion(right_b)},
        "agreement": table,
        "mcnemar_p_value": p_value,
        "difference": difference,
        "significant": p_value < SIGNIFICANCE,
        "verdict": verdict(a, b, difference, p_value),
        "per_class": per_class,
        "significant_classes": sorted(
            (name for name, row in per_class.items() if row["p_value_holm"] < SIGNIFICANCE),
            key=lambda name: per_class[name]["p_value"],
        ),
        "disagreements": [int(i) for i in np.flatnonzero(predicted[0] != predicted[1])],
        "predictions": {a: predicted[0].tolist(), b: predicted[1].tolist()},
        "confusion": {
            a: confusion(labels, predicted[0], len(class_names)),
            b: confusion(labels, predicted[1], len(class_names)),
        },
        "class_names": list(class_names),
    }


def verdict(a: str, b: str, difference: dict[str, Any], p_value: float) -> str:
    """The Δ row in words."""
    value = difference["value"]
    interval = f"{100 * value:+.2f} pp, 95% CI {100 * difference['low']:+.2f} to {100 * difference['high']:+.2f} pp"
    if p_value < SIGNIFICANCE and value != 0:
        better, worse = (a, b) if value > 0 else (b, a)
        return f"{better} is more accurate than {worse} on these test images ({interval}; McNemar p = {p_value:.3g})"
    return f"no significant difference at 5% ({a} − {b}: {interval}; McNemar p = {p_value:.3g})"


def compare_seeds(accuracies: dict[str, list[float]]) -> dict[str, Any]:
    """Does the framework difference exceed seed-to-seed variation? Test accuracy per repeat, two frameworks.

    Mean and sample standard deviation per framework, the difference of means, and Welch's
    t-test (``scipy.stats.ttest_ind(equal_var=False)``): the seeds of two frameworks are not
    pairs (seed 42 means different weights in each), and their spreads need not be equal.
    With 3 repeats each the test has little power: a "within seed variation" verdict says
    the repeats could not tell the frameworks apart, not that they are equal.
    """
    (a, first), (b, second) = accuracies.items()
    summary = {
        name: {
            "n": len(values),
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": list(values),
        }
        for name, values in accuracies.items()
    }
    difference = summary[a]["mean"] - summary[b]["mean"]
    p_value = None
    if len(first) > 1 and len(second) > 1 and (np.ptp(first) > 0 or np.ptp(second) > 0):
        p_value = float(stats.ttest_ind(first, second, equal_var=False).pvalue)
    exceeds = p_value is not None and p_value < SIGNIFICANCE
    spread = ", ".join(f"{name} sd {100 * (s['sd'] or 0):.2f} pp" for name, s in summary.items())
    welch = "no test (no spread)" if p_value is None else f"Welch's t-test p = {p_value:.3g}"
    words = "exceeds" if exceeds else "does not exceed"
    return {
        "frameworks": [a, b],
        "accuracy": summary,
        "difference_of_means": difference,
        "welch_p_value": p_value,
        "exceeds_seed_variation": exceeds,
        "verdict": f"the framework difference ({a} − {b}: {100 * difference:+.2f} pp in mean test accuracy over "
        f"{len(first)} and {len(second)} seeds) {words} the seed-to-seed variation ({spread}; {welch})",
    }
