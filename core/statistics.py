"""Paired statistics of two classifiers on the very same examples: what the comparison report and the
promotion rule share, free of TensorFlow so that components, pipelines and tests can all use them.

- accuracy and per-class recall with 95% Wilson score intervals (``scipy.stats.binomtest``);
- the 2×2 agreement table and McNemar's exact test: a two-sided binomial test of the
  discordant pairs against 1/2 (``scipy.stats.binomtest``), the exact form of McNemar's test;
- a 95% interval of the accuracy difference: Tango's score interval for paired proportions
  (Tango 1998, Stat Med 17:891), overall and per class;
- Holm's step-down adjustment of the per-class p-values (one test per class is a family of tests);
- the promotion rule: non-inferiority of a candidate to a reference model on paired data;
- Welch's t-test of test accuracy over seeds (repeats).

Why Tango's interval rather than a paired bootstrap: it is deterministic (no resamples, no
seed), it keeps close to its nominal coverage on small test sets, where a percentile bootstrap
is too narrow (with one discordant pair in the candidate's favour it rules out any loss), and
it never collapses to a single point: two models that agree on all n examples get
±z²/(n+z²) (±1.26 pp at n = 300), which is what n agreements can and cannot show. It
reproduces Fagerland, Lydersen & Laake (2014)'s published example (tests/test_comparison.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

SIGNIFICANCE = 0.05
CONFIDENCE = 0.95


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
    """Accuracy of a minus b on the same examples, with Tango's 95% score interval."""
    n = int(correct_a.size)
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    low, high = tango_interval(only_a, only_b, n)
    return {"value": (only_a - only_b) / n, "low": low, "high": high, "n": n}


def tango_interval(only_a: int, only_b: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Tango's score interval for p(a right) − p(b right) from ``n`` pairs, ``only_a`` and ``only_b`` discordant.

    The interval holds every difference δ whose score statistic
    (only_a − only_b − nδ) / sqrt(n(2q + δ(1 − δ))), with q the constrained maximum-likelihood
    estimate of P(only b right), lies within ±z; the statistic falls as δ grows, so each bound is
    one root.
    """
    z = float(stats.norm.ppf(0.5 + confidence / 2))

    def score(delta: float) -> float:
        a = 2 * n
        b = -only_a - only_b + (2 * n - only_a + only_b) * delta
        c = -only_b * delta * (1 - delta)
        q = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
        return (only_a - only_b - n * delta) / math.sqrt(max(n * (2 * q + delta * (1 - delta)), 1e-300))

    estimate = (only_a - only_b) / n
    edge = 1e-12
    low = -1.0 if estimate == -1 else optimize.brentq(lambda d: score(d) - z, -1 + edge, 1 - edge, xtol=1e-12)
    high = 1.0 if estimate == 1 else optimize.brentq(lambda d: score(d) + z, -1 + edge, 1 - edge, xtol=1e-12)
    return float(low), float(high)


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


# The promotion rule's verdicts (core.statistics.non_inferiority).
NON_INFERIOR = "non-inferior"
INFERIOR = "inferior"
UNDECIDED = "test set too small to decide"


def non_inferiority(names: tuple[str, str], correct: tuple[np.ndarray, np.ndarray], max_drop: float) -> dict[str, Any]:
    """The promotion rule on paired data: is the candidate (first) at most ``max_drop`` less accurate than the
    reference (second), judged on the same examples? ``correct``: each model's right (True) or wrong answers.

    With [low, high] the 95% interval of candidate − reference accuracy (``paired_difference``):

    - non-inferior when low > −max_drop: a drop of ``max_drop`` or more is ruled out: push;
    - inferior when high < −max_drop: a drop of more than ``max_drop`` is shown: do not push;
    - otherwise the interval straddles −max_drop, so neither is shown: the test set is too small to
      decide, and nothing is pushed. The interval narrows about as 1/sqrt(n): more test images, or a
      larger ``max_drop``, decide more often. Two models that never disagree get ±z²/(n+z²).

    A ``max_drop`` of 0 asks for a significant improvement.
    """
    candidate, reference = correct
    only_candidate = int((candidate & ~reference).sum())
    only_reference = int((~candidate & reference).sum())
    difference = paired_difference(candidate, reference)
    if difference["n"] and difference["low"] > -max_drop:
        decision = NON_INFERIOR
    elif difference["n"] and difference["high"] < -max_drop:
        decision = INFERIOR
    else:
        decision = UNDECIDED
    result = {
        "names": {"candidate": names[0], "reference": names[1]},
        "test_examples": int(candidate.size),
        "accuracy": {"candidate": proportion(candidate), "reference": proportion(reference)},
        "agreement": {
            "both_right": int((candidate & reference).sum()),
            "only_candidate_right": only_candidate,
            "only_reference_right": only_reference,
            "both_wrong": int((~candidate & ~reference).sum()),
        },
        "difference": difference,
        "mcnemar_p_value": mcnemar_exact(only_candidate, only_reference),
        "max_drop": max_drop,
        "verdict": decision,
    }
    return {**result, "words": non_inferiority_words(result)}


def non_inferiority_words(result: dict[str, Any]) -> str:
    """The rule's verdict in the comparison report's words: the check, both accuracies on the same test
    images, the interval, McNemar's p and the threshold."""
    a, b = result["names"]["candidate"], result["names"]["reference"]
    n, drop = result["test_examples"], 100 * result["max_drop"]
    if not n:
        return f"{UNDECIDED}: no test images to compare {a} with {b} on"
    difference, accuracy = result["difference"], result["accuracy"]
    headline = {
        NON_INFERIOR: f"{a} is not worse than {b} by more than {drop:.2f} pp: the interval's lower bound is above "
        f"-{drop:.2f} pp",
        INFERIOR: f"{a} is worse than {b} by more than {drop:.2f} pp: the interval's upper bound is below "
        f"-{drop:.2f} pp",
        UNDECIDED: f"{UNDECIDED}: the interval of {a} − {b} straddles -{drop:.2f} pp",
    }[result["verdict"]]
    return (
        f"{headline} ({a} {100 * accuracy['candidate']['value']:.2f}% vs {b} "
        f"{100 * accuracy['reference']['value']:.2f}% on the same {n} test images; {a} − {b}: "
        f"{100 * difference['value']:+.2f} pp, 95% CI {100 * difference['low']:+.2f} to "
        f"{100 * difference['high']:+.2f} pp; McNemar p = {result['mcnemar_p_value']:.3g})"
    )
