"""report.md: the results report in Markdown, rendered from report.json's content (``Report.to_json()``), and the
text pieces report.html shares (notes, intervals, the significant classes)."""

from __future__ import annotations

import json
from typing import Any

from twinflow.pipelines.report.model import NOT_TRAINED, VARIANT_LATENCY_KEYS


def _blessed(row: dict[str, Any]) -> str:
    if row["blessed"]:
        return "yes"
    return f"no ({row['not_blessed_because']})" if row.get("not_blessed_because") else "no"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def signed(value: float | None, digits: int = 3) -> str:
    """A difference, with its sign shown both ways (+0.24, −0.10)."""
    return "–" if value is None else f"{value:+,.{digits}f}"


def _pp(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _mb(size: float | None) -> float | None:
    return None if size is None else size / 1e6


def to_markdown(report: dict[str, Any]) -> str:
    rows = report["frameworks"]
    lines = [
        f"# twinflow run {report['run_id']} ({report['wall_seconds']:.0f} s end to end)",
        "",
        "| framework | train acc (clean pass) | eval acc | test acc | test loss | training s | images/s | parameters | "
        "model size | device | blessed | pushed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") == NOT_TRAINED or r.get("train_accuracy") is None:  # nothing measured to show
            lines.append(f"| {r['framework']} | {r.get('status', '–')} |" + " |" * 10)
            continue
        lines.append(
            f"| {r['framework']} | {percent(r['train_accuracy'])} | {percent(r['eval_accuracy'])} | "
            f"{percent(r.get('test_accuracy'))} | {number(r.get('test_loss'))} | {r['training_seconds']:.1f} | "
            f"{r['images_per_second']:,.0f} | {r['parameters']:,} | {r['model_size_bytes'] / 1e6:.2f} MB | "
            f"{r['device']} | {_blessed(r)} | {'yes' if r['pushed'] else 'no'} |"
        )
    lines += _stopped_markdown(report)
    diff = report.get("difference")
    if diff:
        lines.append(
            f"| Δ ({diff['frameworks']}) | {signed(_pp(diff.get('train_accuracy')), 2)} pp | "
            f"{signed(_pp(diff.get('eval_accuracy')), 2)} pp | {signed(_pp(diff.get('test_accuracy')), 2)} pp | "
            f"{signed(diff.get('test_loss'))} | {signed(diff.get('training_seconds'), 1)} | "
            f"{signed(diff.get('images_per_second'), 0)} | {signed(diff.get('parameters'), 0)} | "
            f"{signed(_mb(diff.get('model_size_bytes')), 2)} MB | | | |"
        )
    if any(r.get("status") != NOT_TRAINED for r in rows):
        lines += ["", f"{TRAIN_ACCURACY_NOTE} {MODEL_SIZE_NOTE}"]
    lines += _comparison_markdown(report.get("comparison"))
    lines += _other_pairs_markdown(report.get("comparisons") or [])
    lines += _repeats_markdown(report)
    lines += _variants_markdown(report.get("variants"))
    per_class = [r for r in rows if r.get("per_class_accuracy")]
    if per_class:
        names = list(per_class[0]["per_class_accuracy"])
        lines += [
            "",
            "## Test accuracy per class",
            "",
            "| class | " + " | ".join(r["framework"] for r in per_class) + " |",
            "|---|" + "---|" * len(per_class),
        ]
        for name in names:
            lines.append(
                f"| {name} | " + " | ".join(percent(r["per_class_accuracy"].get(name)) for r in per_class) + " |"
            )
    lines += _data_markdown(report.get("data"))
    lines += _retraining_markdown(report)
    lines += ["", "## Components", "", "| component | state | seconds |", "|---|---|---|"]
    lines += [f"| {c['id']} | {c['state']} | {c['seconds']:.1f} |" for c in report["components"]]
    if report.get("data_fingerprint"):
        lines += ["", f"Data fingerprint: `{report['data_fingerprint']}`."]
    if report.get("config"):
        lines += ["", "## Config", "", "```json", json.dumps(report["config"], indent=2), "```"]
    return "\n".join(lines) + "\n"


TRAIN_ACCURACY_NOTE = (
    "Train acc (clean pass): the final model (the best epoch's weights) on the whole train split once more, in "
    "inference mode: no augmentation, no dropout. The accuracy the trainer logs per epoch (the training curves) is "
    "a running mean over that epoch's batches, with augmentation and dropout on and the weights still changing, so "
    "its last value differs from this one."
)
MODEL_SIZE_NOTE = (
    "Model size: the network's files as its runtime loads them (the SavedModel, Transform included, or "
    "model.onnx); the Transform graph beside model.onnx and the card are not counted. The variants table measures "
    "the same files."
)
METHODS_NOTE = (
    "Intervals: Wilson score (accuracy, recall) and Tango's paired score interval (difference). "
    "McNemar's exact test is the two-sided binomial test of the discordant pairs. With one test per class, some "
    "p-value falls below 5% by chance alone: Holm's step-down correction over the classes keeps the chance of any "
    "false finding among them at 5%, and only classes whose Holm-adjusted p is below 5% are called significant."
)


def significant_class_findings(comparison: dict[str, Any]) -> tuple[str, list[str]]:
    """The per-class differences that survive Holm's correction: a lead sentence and one line per class."""
    a, b = comparison["frameworks"]
    per_class = comparison["per_class"]
    found = comparison.get("significant_classes", [])
    if not found:
        return (
            f"No per-class difference is significant at 5% after Holm's correction over {len(per_class)} classes.",
            [],
        )
    lead = (
        f"{len(found)} of {len(per_class)} per-class differences in recall are significant at 5% after Holm's "
        f"correction ({a} − {b}):"
    )
    items = []
    for name in found:
        row = per_class[name]
        difference = row["difference"]
        items.append(
            f"{name}: {100 * difference['value']:+.2f} pp (95% CI {100 * difference['low']:+.2f} to "
            f"{100 * difference['high']:+.2f} pp; McNemar p = {row['p_value']:.2g}, Holm-adjusted "
            f"p = {row['p_value_holm']:.2g})"
        )
    return lead, items


def interval_text(share: dict[str, Any], signed: bool = False) -> str:
    if share.get("value") is None:
        return "–"
    sign = "+" if signed else ""
    return f"{100 * share['value']:{sign}.2f} [{100 * share['low']:{sign}.2f}, {100 * share['high']:{sign}.2f}]"


def _comparison_markdown(comparison: dict[str, Any] | None) -> list[str]:
    if not comparison:
        return []
    a, b = comparison["frameworks"]
    table = comparison["agreement"]
    lead, findings = significant_class_findings(comparison)
    significant = set(comparison.get("significant_classes", []))
    lines = [
        "",
        "## Is the difference real? (the same test images, paired)",
        "",
        f"**{comparison['verdict']}.**",
        "",
        lead,
        *(f"- **{finding}**" for finding in findings),
        "",
        f"| | {a} | {b} | {a} − {b} (pp) | McNemar p | Holm-adjusted p |",
        "|---|---|---|---|---|---|",
        f"| test accuracy, % [95% CI] | {interval_text(comparison['accuracy'][a])} | "
        f"{interval_text(comparison['accuracy'][b])} | {interval_text(comparison['difference'], signed=True)} | "
        f"{comparison['mcnemar_p_value']:.3g} | |",
    ]
    for name, row in comparison["per_class"].items():
        label = f"**recall {name}** (significant)" if name in significant else f"recall {name}"
        lines.append(
            f"| {label} | {interval_text(row['recall'][a])} | {interval_text(row['recall'][b])} | "
            f"{interval_text(row['difference'], signed=True)} | {row['p_value']:.3g} | {row['p_value_holm']:.3g} |"
        )
    lines += [
        "",
        f"{comparison['test_examples']} test images: both right {table['both_right']}, only {a} right "
        f"{table[f'only_{a}_right']}, only {b} right {table[f'only_{b}_right']}, both wrong {table['both_wrong']}. "
        + METHODS_NOTE,
    ]
    return lines


def _other_pairs_markdown(comparisons: list[dict[str, Any]]) -> list[str]:
    """With more than two frameworks: every other pair's verdict on the same test images (the first pair is above)."""
    if not comparisons:
        return []
    lines = ["", "### Every other pair, on the same test images", ""]
    for comparison in comparisons:
        a, b = comparison["frameworks"]
        lines.append(f"- {a} vs {b}: {comparison['verdict']}")
    return lines


def _repeats_markdown(report: dict[str, Any]) -> list[str]:
    """Every repeat's seed, eval and test accuracy; mean ± sd; whether the framework difference exceeds it."""
    rows = [r for r in report["frameworks"] if r.get("repeats")]
    if not rows:
        return []
    lines = [
        "",
        "## Seed-to-seed variation (each framework trained once per seed)",
        "",
        "| framework | seed | eval acc | test acc | blessed | chosen to push |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for r in row["repeats"]:
            lines.append(
                f"| {row['framework']} | {r['seed']} | {percent(r['eval_accuracy'])} | {percent(r['test_accuracy'])} "
                f"| {'yes' if r['blessed'] else 'no'} | {'yes' if r['chosen'] else ''} |"
            )
    lines.append("")
    for row in rows:
        variation = row["seed_variation"]
        sd = "–" if variation["sd"] is None else f"{100 * variation['sd']:.2f}"
        lines.append(
            f"- {row['framework']}: test accuracy {percent(variation['mean'])} ± {sd} pp "
            f"(mean ± sd, n = {variation['n']})"
        )
    seeds = report.get("seed_comparison")
    if seeds:
        lines += ["", f"**Across seeds, {seeds['verdict']}.**"]
    lines += [
        "",
        "The repeat chosen to push is the blessed one with the best eval-split accuracy; the paired comparison "
        "above compares the chosen repeats on the test split, which the choice never saw.",
    ]
    return lines


def _milliseconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _variants_markdown(variants: list[dict[str, Any]] | None) -> list[str]:
    if not variants:
        return []
    lines = [
        "",
        "## Optimized variants",
        "",
        "Each variant is judged by the same Evaluator (metrics, slices, floor) and the same paired rule, with "
        "its float parent in the served model's place. Sizes are the network's files, measured as in the table "
        "above (gzip in brackets); latencies are p50 milliseconds per call on `image_xf`, measured float beside "
        "variant in one run.",
        "",
        "| model | test acc | Δ vs float | size | vs float | p50 b1 1t | p50 b64 1t | p50 b1 2t | p50 b64 2t | "
        "speed-up b1 | sparsity | blessed | pushed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        name = v["framework"] if v["variant"] == "float" else v["model"]
        if v.get("status") == "not made":
            lines.append(f"| {name} | not made |" + " |" * 11)
            continue
        size, delta, ratio = v.get("size_bytes"), v.get("delta_vs_float"), v.get("size_vs_float")
        speedup, sparsity = v.get("speedup_b1_t1"), v.get("sparsity")
        cells = [
            name,
            percent(v.get("test_accuracy")),
            "–" if delta is None else f"{100 * delta:+.2f} pp",
            "–" if size is None else f"{size / 1e6:.2f} MB ({(v.get('gzip_bytes') or 0) / 1e6:.2f})",
            "–" if ratio is None else f"{ratio:.0%}",
            *(_milliseconds(v.get(key)) for key in VARIANT_LATENCY_KEYS),
            "–" if speedup is None else f"{speedup:.2f}x",
            "–" if sparsity is None else f"{sparsity:.0%}",
            "yes" if v.get("blessed") else "no",
            "yes" if v.get("pushed") else "no",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _data_markdown(data: dict[str, Any] | None) -> list[str]:
    """What ImageExampleGen found: examples per split and class, and everything worth a warning."""
    if not data:
        return []
    counts = data["class_counts"]
    totals = {split: sum(c[split] for c in counts.values()) for split in ("train", "eval", "test")}
    lines = [
        "",
        "## Data",
        "",
        f"{data['images']:,} images in {len(counts)} classes: "
        + ", ".join(f"{n:,} {split}" for split, n in totals.items()),
    ]
    if data.get("converted"):
        converted = ", ".join(f"{n:,} {fmt}" for fmt, n in data["converted"].items())
        lines.append(f"Re-encoded as PNG for TensorFlow: {converted}.")
    if data.get("skipped"):
        skipped = ", ".join(f"{n:,} {ext}" for ext, n in data["skipped"].items())
        lines.append(f"Files that are not images, not read: {skipped}.")
    lines += [f"- **warning:** {w}" for w in data.get("warnings", [])]
    lines += [f"- left out: {b}" for b in data.get("bad_files", [])]
    return lines


def _retraining_markdown(report: dict[str, Any]) -> list[str]:
    """Spans read, the drift gate's verdict, and each framework's push decision."""
    lines = []
    if report.get("spans"):
        spans = report["spans"]
        lines.append(f"Spans read: {', '.join(map(str, spans))}.")
    drift = report.get("drift")
    if drift:
        lines.append(f"Drift gate: {drift.get('verdict')}.")
        lines += _drift_table(drift)
    lines += [f"- {r['framework']}: {r['push_choice']}" for r in report["frameworks"] if r.get("push_choice")]
    lines += [f"- {r['framework']}: {r['push_reason']}" for r in report["frameworks"] if r.get("push_reason")]
    return ["", "## Retraining", "", *lines] if lines else []


def _drift_table(drift: dict[str, Any]) -> list[str]:
    """Every comparator's distance, drifted or not (what reviewing a threshold needs), per baseline compared."""
    drifted = {(d["feature"], d["comparator"], json.dumps(d.get("compared_with"))) for d in drift.get("drifted", [])}
    dataset_level = [d for d in drift.get("drifted", []) if d["feature"] == "num_examples"]
    rows = [*drift.get("measured", []), *dataset_level]
    if not rows:
        return []
    lines = ["", "| feature | comparator | distance | threshold | compared with | |", "|---|---|---|---|---|---|"]
    for m in rows:
        versions = ", ".join(f"{name} v{number}" for name, number in (m.get("compared_with") or {}).items())
        mark = "drifted" if (m["feature"], m["comparator"], json.dumps(m.get("compared_with"))) in drifted else ""
        lines.append(
            f"| {m['feature']} | {m['comparator']} | {m['distance']:.3f} | {m['threshold']:g} | {versions} | {mark} |"
        )
    return lines


def _stopped_markdown(report: dict[str, Any]) -> list[str]:
    """A run that did not finish: where it stopped and the whole error (a drift message lists every feature)."""
    stopped = report.get("stopped")
    if not stopped:
        return []
    where = ", ".join(stopped.get("at") or []) or "the start"
    return ["", f"**Stopped at {where}:**", "", "```", str(stopped.get("reason", "")), "```"]
