"""The results table a run ends with: one row per framework, plus component timings.

Written as Markdown, JSON and a per-class accuracy plot under
``<pipeline_root>/reports/<run_id>/`` so runs can be compared later.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from twinflow.components.image_example_gen.ingest import read_ingest_report
from twinflow.components.tfma_results import load_sliced_metrics
from twinflow.core import fs
from twinflow.core.contract import DRIFT_REPORT_FILE, LABEL_KEY
from twinflow.core.model_card import read_model_card
from twinflow.core.repeats import Candidate, choose_best, node_id, parse_node_id
from twinflow.pipelines.run.guard import report_dir
from twinflow.pipelines.run.record import RunRecord, custom_property


def framework_repeats(record: RunRecord, framework: str) -> list[int]:
    """The repeats of ``framework`` this run trained (or tried to): [1] for a run without repeats."""
    parsed = (parse_node_id(node) for node in record.nodes)
    found = {p[2] for p in parsed if p and p[:2] == ("Trainer", framework)}
    return sorted(found) or [1]


def repeat_row(record: RunRecord, framework: str, repeat: int = 1) -> dict[str, Any]:
    """One trained model of the run (one repeat): its card, its Evaluator's metrics and blessing."""
    from tfx.utils import path_utils  # here, not at the top: history's import of this module stays TF-free

    from twinflow.components.finite_evaluator.promotion import COMPARISON_PROPERTY, REASON_PROPERTY

    trainer = record.nodes.get(node_id("Trainer", framework, repeat))
    evaluator = record.nodes.get(node_id("Evaluator", framework, repeat))
    row: dict[str, Any] = {"framework": framework, "repeat": repeat}
    model = trainer.output("model") if trainer else None
    if model is None:
        return {**row, "status": "not trained"}
    model_dir = path_utils.serving_model_path(model.uri)
    card = read_model_card(model_dir)
    training = card.training
    class_names = card.class_names
    row.update(
        model_dir=model_dir,
        seed=training.config.seed,
        device=training.device,
        architecture=card.architecture,
        parameters=card.parameters,
        model_size_bytes=card.size_bytes,
        epochs_run=training.epochs_run,
        training_seconds=training.seconds,
        images_per_second=training.images_per_second,
        train_accuracy=training.train.accuracy,
        train_loss=training.train.loss,
        eval_accuracy=training.eval.accuracy,
        eval_loss=training.eval.loss,
        history=[epoch.model_dump() for epoch in training.history],
    )
    evaluation = evaluator.output("evaluation") if evaluator else None
    if evaluation is not None:
        sliced = load_sliced_metrics(evaluation.uri)
        overall = sliced.get("overall", {})
        row.update(
            test_accuracy=overall.get("accuracy"),
            test_loss=overall.get("loss"),
            test_examples=overall.get("example_count"),
        )
        row["per_class_accuracy"] = {
            name: sliced.get(f"{LABEL_KEY}={index}", {}).get("accuracy") for index, name in enumerate(class_names)
        }
    blessing = evaluator.output("blessing") if evaluator else None
    row["blessed"] = bool(blessing is not None and custom_property(blessing, "blessed") == 1)
    # The Evaluator's promotion checks in words (every failed check with its figures and threshold) and its
    # paired comparison with the served version on the same test images (components.finite_evaluator.promotion).
    reason = custom_property(blessing, REASON_PROPERTY) if blessing is not None else None
    comparison = custom_property(blessing, COMPARISON_PROPERTY) if blessing is not None else None
    if comparison:
        row["served_comparison"] = json.loads(str(comparison))
    if reason and not row["blessed"]:
        row["not_blessed_because"] = str(reason)
    return row


def framework_row(record: RunRecord, framework: str) -> dict[str, Any]:
    """Everything the comparison needs about one framework's branch of the run.

    With repeats, the row is the repeat the pusher chooses (twinflow.core.repeats: blessed, best
    eval-split accuracy), with every repeat listed under ``repeats`` and their test accuracies'
    mean and standard deviation under ``seed_variation``.
    """
    rows = [repeat_row(record, framework, r) for r in framework_repeats(record, framework)]
    trained = [r for r in rows if "status" not in r]
    candidates = [Candidate(r, r["seed"], r["eval_accuracy"], r["blessed"]) for r in trained]
    chosen = choose_best(candidates)
    row = dict(chosen.item if chosen else (trained or rows)[0])
    if len(rows) > 1:
        row["repeats"] = [
            {key: r.get(key) for key in ("seed", "eval_accuracy", "test_accuracy", "blessed", "epochs_run")}
            | {"chosen": chosen is not None and r is chosen.item}
            for r in rows
        ]
        row["seed_variation"] = seed_variation([r.get("test_accuracy") for r in rows])
    pusher = record.nodes.get(node_id("Pusher", framework))
    pushed = pusher.output("pushed_model") if pusher else None
    row["pushed"] = bool(pushed is not None and custom_property(pushed, "pushed") == 1)
    if row["pushed"]:
        row["pushed_to"] = custom_property(pushed, "pushed_destination")
        version = custom_property(pushed, "pushed_version")
        row["pushed_version"] = int(version) if version not in (None, "") else None
    if pushed is not None and custom_property(pushed, "decision"):
        row["push_reason"] = custom_property(pushed, "decision")
    if pushed is not None and custom_property(pushed, "repeats"):
        row["push_choice"] = custom_property(pushed, "repeats")  # the pusher's own account of its choice
    return row


VARIANT_LATENCY_KEYS = ("p50_ms_b1_t1", "p50_ms_b64_t1", "p50_ms_b1_t2", "p50_ms_b64_t2")


def variant_rows(record: RunRecord, parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The float model and each optimized variant of one framework (``<fw>-<variant>`` nodes): test
    accuracy and its change vs the float parent, sizes and latencies (measured in one benchmark run per
    variant, float beside variant), blessing and push. Empty when the run made no variants."""
    framework = parent["framework"]
    names = sorted({p[1] for node in record.nodes if (p := parse_node_id(node)) and p[0] == "Optimizer"} - {framework})
    names = [n for n in names if n.startswith(f"{framework}-")]
    if not names:
        return []
    from tfx.utils import path_utils

    rows: list[dict[str, Any]] = []
    float_row: dict[str, Any] = {
        "framework": framework,
        "variant": "float",
        "test_accuracy": parent.get("test_accuracy"),
    }
    float_row.update(blessed=parent.get("blessed"), pushed=parent.get("pushed"))
    for name in names:
        optimizer = record.nodes[node_id("Optimizer", name)]
        model = optimizer.output("variant_model")
        row: dict[str, Any] = {"framework": framework, "variant": name.removeprefix(f"{framework}-"), "model": name}
        if model is None:
            rows.append({**row, "status": "not made"})
            continue
        card = read_model_card(path_utils.serving_model_path(model.uri))
        info = card.variant
        benchmark = info.benchmark if info else {}
        row.update(
            method=info.method if info else None,
            sparsity=info.sparsity if info else None,
            size_bytes=benchmark.get("variant_bytes"),
            gzip_bytes=benchmark.get("variant_gzip_bytes"),
            size_vs_float=_ratio(benchmark.get("variant_bytes"), benchmark.get("float_bytes")),
            **{key: benchmark.get(f"variant_{key}") for key in VARIANT_LATENCY_KEYS},
            speedup_b1_t1=_ratio(benchmark.get("float_p50_ms_b1_t1"), benchmark.get("variant_p50_ms_b1_t1")),
        )
        if "size_bytes" not in float_row and benchmark:  # the float model, as timed beside this variant
            float_row.update(
                size_bytes=benchmark.get("float_bytes"),
                gzip_bytes=benchmark.get("float_gzip_bytes"),
                size_vs_float=1.0,
                **{key: benchmark.get(f"float_{key}") for key in VARIANT_LATENCY_KEYS},
                speedup_b1_t1=1.0,
            )
        evaluator = record.nodes.get(node_id("Evaluator", name))
        evaluation = evaluator.output("evaluation") if evaluator else None
        if evaluation is not None:
            row["test_accuracy"] = load_sliced_metrics(evaluation.uri).get("overall", {}).get("accuracy")
            row["delta_vs_float"] = _difference(row["test_accuracy"], parent.get("test_accuracy"))
        blessing = evaluator.output("blessing") if evaluator else None
        row["blessed"] = bool(blessing is not None and custom_property(blessing, "blessed") == 1)
        pusher = record.nodes.get(node_id("Pusher", name))
        pushed = pusher.output("pushed_model") if pusher else None
        row["pushed"] = bool(pushed is not None and custom_property(pushed, "pushed") == 1)
        if pushed is not None and custom_property(pushed, "decision"):
            row["push_reason"] = custom_property(pushed, "decision")
        rows.append(row)
    return [float_row, *rows]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def seed_variation(accuracies: list[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation of test accuracy over the repeats that were evaluated."""
    values = [a for a in accuracies if a is not None]
    return {
        "n": len(values),
        "mean": statistics.fmean(values) if values else None,
        "sd": statistics.stdev(values) if len(values) > 1 else None,
    }


def build_report(
    record: RunRecord, frameworks: tuple[str, ...], wall_seconds: float, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``config``: the run's whole PipelineConfig as JSON, recorded verbatim (each model's training
    config is in its card either way)."""
    rows = [framework_row(record, name) for name in frameworks]
    variants = [v for row in rows if "status" not in row for v in variant_rows(record, row)]
    report: dict[str, Any] = {
        "pipeline": record.pipeline_name,
        "run_id": record.run_id,
        "wall_seconds": round(wall_seconds, 1),
        **({"config": config} if config else {}),
        "components": [
            {"id": n.node_id, "state": n.state, "seconds": round(n.seconds, 1)} for n in record.nodes.values()
        ],
        "frameworks": rows,
        **({"variants": variants} if variants else {}),
    }
    example_gen = record.nodes.get("ImageExampleGen")
    examples = example_gen.output("examples") if example_gen else None
    ingest = read_ingest_report(examples.uri) if examples is not None else None
    if ingest is not None:
        report["data"] = ingest.model_dump()
    if examples is not None:
        report["data_fingerprint"] = custom_property(examples, "input_fingerprint") or None
        report["examples_uri"] = examples.uri
    if examples is not None and custom_property(examples, "spans"):
        report["spans"] = json.loads(str(custom_property(examples, "spans")))
    gate = record.nodes.get("DriftGate")
    drift = gate.output("drift") if gate else None
    if drift is not None and fs.gfile().exists(fs.join(drift.uri, DRIFT_REPORT_FILE)):
        report["drift"] = json.loads(fs.read_text(fs.join(drift.uri, DRIFT_REPORT_FILE)))
    if len(rows) == 2 and all("test_accuracy" in r for r in rows) and examples is not None:
        report["comparison"] = paired_comparison(examples.uri, rows[0], rows[1])
    if len(rows) == 2 and all(r.get("seed_variation", {}).get("n", 0) > 1 for r in rows):
        from twinflow.core.statistics import compare_seeds

        report["seed_comparison"] = compare_seeds(
            {r["framework"]: [x["test_accuracy"] for x in r["repeats"] if x["test_accuracy"] is not None] for r in rows}
        )
    if len(rows) == 2 and all("test_accuracy" in r for r in rows):
        a, b = rows
        report["difference"] = {
            "frameworks": f"{a['framework']} - {b['framework']}",
            **{
                key: _difference(a.get(key), b.get(key))
                for key in (
                    "train_accuracy",
                    "eval_accuracy",
                    "test_accuracy",
                    "test_loss",
                    "training_seconds",
                    "images_per_second",
                    "parameters",
                    "model_size_bytes",
                )
            },
        }
    return report


def paired_comparison(examples_uri: str, first_row: dict[str, Any], second_row: dict[str, Any]) -> dict[str, Any]:
    """Both trained models (with repeats: each framework's chosen one) on the run's very test images:
    intervals, McNemar's test, the paired difference."""
    from twinflow.components.paired_predictions import predict_classes, read_test_split
    from twinflow.core.statistics import compare, confident_mistakes

    test = read_test_split(examples_uri)
    names = (first_row["framework"], second_row["framework"])
    model_dirs = [first_row["model_dir"], second_row["model_dir"]]
    class_names = read_model_card(model_dirs[0]).class_names
    (first, first_probabilities), (second, second_probabilities) = (predict_classes(d, test) for d in model_dirs)
    result = compare(names, test.labels, (first, second), class_names)
    result["disagreement_files"] = [test.filenames[i] for i in result["disagreements"]]
    result["confident_mistakes"] = {
        names[0]: confident_mistakes(test.labels, first_probabilities),
        names[1]: confident_mistakes(test.labels, second_probabilities),
    }
    result["labels"] = test.labels.tolist()
    result["examples_uri"] = examples_uri  # where report.html reads the thumbnails from
    return result


def strict_json(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and a reader must see 'no value'."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def _difference(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else a - b


def _blessed(row: dict[str, Any]) -> str:
    if row["blessed"]:
        return "yes"
    return f"no ({row['not_blessed_because']})" if row.get("not_blessed_because") else "no"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


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
        if "train_accuracy" not in r:
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
            f"| Δ ({diff['frameworks']}) | {number(100 * diff['train_accuracy'], 2)} pp | "
            f"{number(100 * diff['eval_accuracy'], 2)} pp | {number(100 * diff['test_accuracy'], 2)} pp | "
            f"{number(diff['test_loss'])} | {number(diff['training_seconds'], 1)} | "
            f"{number(diff['images_per_second'], 0)} | {diff['parameters']:+,} | "
            f"{diff['model_size_bytes'] / 1e6:+.2f} MB | | | |"
        )
    if any("train_accuracy" in r for r in rows):
        lines += ["", f"{TRAIN_ACCURACY_NOTE} {MODEL_SIZE_NOTE}"]
    lines += _comparison_markdown(report.get("comparison"))
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
        if v.get("status"):
            lines.append(f"| {name} | {v['status']} |" + " |" * 11)
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


def per_class_figure(report: dict[str, Any]) -> Any:
    """Grouped bars of test accuracy per class, one colour per framework (a matplotlib figure), or None."""
    rows = [r for r in report["frameworks"] if r.get("per_class_accuracy")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["per_class_accuracy"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.9), 4))
    for i, row in enumerate(rows):
        values = [row["per_class_accuracy"].get(n) or 0.0 for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=row["framework"])
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Per-class test accuracy, run {report['run_id']}")
    ax.legend(loc="lower left", framealpha=0.9)
    fig.tight_layout()
    return fig


def plot_per_class(report: dict[str, Any], path: Path) -> Path | None:
    fig = per_class_figure(report)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def recorded_config(pipeline_root: str, run_id: str) -> dict[str, Any] | None:
    """The config a run's own report recorded (None without a report, or from before configs were kept)."""
    path = fs.join(report_dir(pipeline_root, run_id), "report.json")
    if not fs.gfile().exists(path):
        return None
    return json.loads(fs.read_text(path)).get("config")


def write_report(report: dict[str, Any], pipeline_root: str, output: str | None = None) -> str:
    """report.json (strict JSON), report.md, report.html, per_class_accuracy.png, into ``output`` or, by
    default, the run's folder ``<pipeline_root>/reports/<run>/``."""
    out = output or report_dir(pipeline_root, report["run_id"])
    fs.gfile().makedirs(out)
    fs.write_text(fs.join(out, "report.json"), json.dumps(strict_json(report), indent=2, allow_nan=False))
    fs.write_text(fs.join(out, "report.md"), to_markdown(report))
    from twinflow.pipelines.report.html import render_html

    fs.write_text(fs.join(out, "report.html"), render_html(report))
    with tempfile.TemporaryDirectory() as tmp:
        plot = plot_per_class(report, Path(tmp) / "per_class_accuracy.png")
        if plot is not None:
            fs.gfile().copy(str(plot), fs.join(out, plot.name), overwrite=True)
    return out
