"""The results report built from a recorded run: one typed row per framework (and per optimized variant), the
paired comparison of the frameworks on the same test images, and the component timings.

Written as report.json, report.md, report.html and a per-class accuracy plot under
``<pipeline_root>/reports/<run_id>/`` so runs can be compared later.
"""

from __future__ import annotations

import itertools
import json
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
from twinflow.pipelines.report.model import (
    NOT_TRAINED,
    VARIANT_LATENCY_KEYS,
    ComponentTiming,
    Difference,
    FrameworkRow,
    RepeatSummary,
    Report,
    SeedVariation,
    VariantRow,
)
from twinflow.pipelines.run.guard import report_dir
from twinflow.pipelines.run.record import RunRecord, custom_property


def framework_repeats(record: RunRecord, framework: str) -> list[int]:
    """The repeats of ``framework`` this run trained (or tried to): [1] for a run without repeats."""
    parsed = (parse_node_id(node) for node in record.nodes)
    found = {p[2] for p in parsed if p and p[:2] == ("Trainer", framework)}
    return sorted(found) or [1]


def repeat_row(record: RunRecord, framework: str, repeat: int = 1) -> FrameworkRow:
    """One trained model of the run (one repeat): its card, its Evaluator's metrics and blessing."""
    from tfx.utils import path_utils  # here, not at the top: history's import of this module stays TF-free

    from twinflow.components.finite_evaluator.promotion import COMPARISON_PROPERTY, REASON_PROPERTY

    trainer = record.nodes.get(node_id("Trainer", framework, repeat))
    evaluator = record.nodes.get(node_id("Evaluator", framework, repeat))
    model = trainer.output("model") if trainer else None
    if model is None:
        return FrameworkRow(framework=framework, repeat=repeat, status=NOT_TRAINED)
    model_dir = path_utils.serving_model_path(model.uri)
    card = read_model_card(model_dir)
    training = card.training
    row: dict[str, Any] = {
        "framework": framework,
        "repeat": repeat,
        "model_dir": model_dir,
        "seed": training.config.seed,
        "device": training.device,
        "architecture": card.architecture,
        "parameters": card.parameters,
        "model_size_bytes": card.size_bytes,
        "epochs_run": training.epochs_run,
        "training_seconds": training.seconds,
        "images_per_second": training.images_per_second,
        "train_accuracy": training.train.accuracy,
        "train_loss": training.train.loss,
        "eval_accuracy": training.eval.accuracy,
        "eval_loss": training.eval.loss,
        "history": training.history,
    }
    evaluation = evaluator.output("evaluation") if evaluator else None
    if evaluation is not None:
        sliced = load_sliced_metrics(evaluation.uri)
        overall = sliced.get("overall", {})
        row.update(
            test_accuracy=overall.get("accuracy"),
            test_loss=overall.get("loss"),
            test_examples=overall.get("example_count"),
            per_class_accuracy={
                name: sliced.get(f"{LABEL_KEY}={index}", {}).get("accuracy")
                for index, name in enumerate(card.class_names)
            },
        )
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
    return FrameworkRow.model_validate(row)


def framework_row(record: RunRecord, framework: str) -> FrameworkRow:
    """Everything the comparison needs about one framework's branch of the run.

    With repeats, the row is the repeat the pusher chooses (twinflow.core.repeats: blessed, best
    eval-split accuracy), with every repeat listed under ``repeats`` and their test accuracies'
    mean and standard deviation under ``seed_variation``.
    """
    rows = [repeat_row(record, framework, r) for r in framework_repeats(record, framework)]
    trained = [r for r in rows if r.trained]
    chosen = choose_best([Candidate(r, r.seed, r.eval_accuracy, r.blessed) for r in trained])
    update: dict[str, Any] = {}
    if len(rows) > 1:
        update["repeats"] = [
            RepeatSummary(
                seed=r.seed,
                eval_accuracy=r.eval_accuracy,
                test_accuracy=r.test_accuracy,
                blessed=r.blessed if r.trained else None,
                epochs_run=r.epochs_run,
                chosen=chosen is not None and r is chosen.item,
            )
            for r in rows
        ]
        update["seed_variation"] = seed_variation([r.test_accuracy for r in rows])
    pusher = record.nodes.get(node_id("Pusher", framework))
    pushed = pusher.output("pushed_model") if pusher else None
    update["pushed"] = bool(pushed is not None and custom_property(pushed, "pushed") == 1)
    if update["pushed"]:
        update["pushed_to"] = custom_property(pushed, "pushed_destination")
        version = custom_property(pushed, "pushed_version")
        update["pushed_version"] = int(version) if version not in (None, "") else None
    if pushed is not None and custom_property(pushed, "decision"):
        update["push_reason"] = custom_property(pushed, "decision")
    if pushed is not None and custom_property(pushed, "repeats"):
        update["push_choice"] = custom_property(pushed, "repeats")
    row = chosen.item if chosen else (trained or rows)[0]
    return FrameworkRow.model_validate({**row.model_dump(), **update})


def variant_rows(record: RunRecord, parent: FrameworkRow) -> list[VariantRow]:
    """The float model and each optimized variant of one framework (``<fw>-<variant>`` nodes): test
    accuracy and its change vs the float parent, sizes and latencies (measured in one benchmark run per
    variant, float beside variant), blessing and push. Empty when the run made no variants."""
    framework = parent.framework
    names = sorted({p[1] for node in record.nodes if (p := parse_node_id(node)) and p[0] == "Optimizer"} - {framework})
    names = [n for n in names if n.startswith(f"{framework}-")]
    if not names:
        return []
    from tfx.utils import path_utils

    rows: list[VariantRow] = []
    float_row: dict[str, Any] = {
        "framework": framework,
        "variant": "float",
        "test_accuracy": parent.test_accuracy,
        "blessed": parent.blessed,
        "pushed": parent.pushed,
    }
    for name in names:
        optimizer = record.nodes[node_id("Optimizer", name)]
        model = optimizer.output("variant_model")
        row: dict[str, Any] = {"framework": framework, "variant": name.removeprefix(f"{framework}-"), "model": name}
        if model is None:
            rows.append(VariantRow(**row, status="not made"))
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
            row["delta_vs_float"] = _difference(row["test_accuracy"], parent.test_accuracy)
        blessing = evaluator.output("blessing") if evaluator else None
        row["blessed"] = bool(blessing is not None and custom_property(blessing, "blessed") == 1)
        pusher = record.nodes.get(node_id("Pusher", name))
        pushed = pusher.output("pushed_model") if pusher else None
        row["pushed"] = bool(pushed is not None and custom_property(pushed, "pushed") == 1)
        if pushed is not None and custom_property(pushed, "decision"):
            row["push_reason"] = custom_property(pushed, "decision")
        rows.append(VariantRow.model_validate(row))
    return [VariantRow.model_validate(float_row), *rows]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def seed_variation(accuracies: list[float | None]) -> SeedVariation:
    """Mean and sample standard deviation of test accuracy over the repeats that were evaluated."""
    values = [a for a in accuracies if a is not None]
    return SeedVariation(
        n=len(values),
        mean=statistics.fmean(values) if values else None,
        sd=statistics.stdev(values) if len(values) > 1 else None,
    )


def build_report(
    record: RunRecord, frameworks: tuple[str, ...], wall_seconds: float, config: dict[str, Any] | None = None
) -> Report:
    """``config``: the run's whole PipelineConfig as JSON, recorded verbatim (each model's training
    config is in its card either way)."""
    rows = [framework_row(record, name) for name in frameworks]
    report = Report(
        pipeline=record.pipeline_name,
        run_id=record.run_id,
        wall_seconds=round(wall_seconds, 1),
        config=config,
        components=[
            ComponentTiming(id=n.node_id, state=n.state, seconds=round(n.seconds, 1)) for n in record.nodes.values()
        ],
        frameworks=rows,
        variants=[v for row in rows if row.trained for v in variant_rows(record, row)],
    )
    example_gen = record.nodes.get("ImageExampleGen")
    examples = example_gen.output("examples") if example_gen else None
    ingest = read_ingest_report(examples.uri) if examples is not None else None
    if ingest is not None:
        report.data = ingest.model_dump()
    if examples is not None:
        report.data_fingerprint = custom_property(examples, "input_fingerprint") or None
        report.examples_uri = examples.uri
        if custom_property(examples, "spans"):
            report.spans = json.loads(str(custom_property(examples, "spans")))
    gate = record.nodes.get("DriftGate")
    drift = gate.output("drift") if gate else None
    if drift is not None and fs.gfile().exists(fs.join(drift.uri, DRIFT_REPORT_FILE)):
        report.drift = json.loads(fs.read_text(fs.join(drift.uri, DRIFT_REPORT_FILE)))
    evaluated = [row for row in rows if row.evaluated]
    if len(evaluated) >= 2 and examples is not None:
        # Every pair of evaluated frameworks on the very same test images; the first pair is the headline.
        pairs = [paired_comparison(examples.uri, a, b) for a, b in itertools.combinations(evaluated, 2)]
        report.comparison, report.comparisons = pairs[0], pairs[1:]
        first, second = evaluated[:2]
        report.difference = Difference(
            frameworks=f"{first.framework} - {second.framework}",
            **{
                key: _difference(getattr(first, key), getattr(second, key))
                for key in Difference.model_fields
                if key != "frameworks"
            },
        )
    varied = [row for row in rows if row.seed_variation and row.seed_variation.n > 1]
    if len(varied) >= 2:
        from twinflow.core.statistics import compare_seeds

        report.seed_comparison = compare_seeds(
            {
                row.framework: [r.test_accuracy for r in row.repeats or [] if r.test_accuracy is not None]
                for row in varied[:2]
            }
        )
    return report


def paired_comparison(examples_uri: str, first: FrameworkRow, second: FrameworkRow) -> dict[str, Any]:
    """Both trained models (with repeats: each framework's chosen one) on the run's very test images:
    intervals, McNemar's test, the paired difference."""
    from twinflow.components.paired_predictions import predict_classes, read_test_split
    from twinflow.core.statistics import compare, confident_mistakes

    test = read_test_split(examples_uri)
    names = (first.framework, second.framework)
    model_dirs = [str(first.model_dir), str(second.model_dir)]
    class_names = read_model_card(model_dirs[0]).class_names
    (first_classes, first_probabilities), (second_classes, second_probabilities) = (
        predict_classes(d, test) for d in model_dirs
    )
    result = compare(names, test.labels, (first_classes, second_classes), class_names)
    result["disagreement_files"] = [test.filenames[i] for i in result["disagreements"]]
    result["confident_mistakes"] = {
        names[0]: confident_mistakes(test.labels, first_probabilities),
        names[1]: confident_mistakes(test.labels, second_probabilities),
    }
    result["labels"] = test.labels.tolist()
    result["examples_uri"] = examples_uri  # where report.html reads the thumbnails from
    return result


def recorded_report(pipeline_root: str, run_id: str) -> dict[str, Any] | None:
    """A run's own report.json as it was written (None when it kept none)."""
    path = fs.join(report_dir(pipeline_root, run_id), "report.json")
    return json.loads(fs.read_text(path)) if fs.exists(path) else None


def recorded_config(pipeline_root: str, run_id: str) -> dict[str, Any] | None:
    """The config a run's own report recorded (None without a report, or from before configs were kept)."""
    recorded = recorded_report(pipeline_root, run_id)
    return recorded.get("config") if recorded else None


def write_report(report: Report, pipeline_root: str, output: str | None = None) -> str:
    """report.json (strict JSON), report.md, report.html, per_class_accuracy.png, into ``output`` or, by
    default, the run's folder ``<pipeline_root>/reports/<run>/``. The pages render report.json's content."""
    from twinflow.pipelines.report.html import plot_per_class, render_html
    from twinflow.pipelines.report.markdown import to_markdown

    content = report.to_json()
    out = output or report_dir(pipeline_root, str(report.run_id))
    fs.gfile().makedirs(out)
    fs.write_text(fs.join(out, "report.json"), json.dumps(content, indent=2, allow_nan=False))
    fs.write_text(fs.join(out, "report.md"), to_markdown(content))
    fs.write_text(fs.join(out, "report.html"), render_html(content))
    with tempfile.TemporaryDirectory() as tmp:
        plot = plot_per_class(content, Path(tmp) / "per_class_accuracy.png")
        if plot is not None:
            fs.gfile().copy(str(plot), fs.join(out, plot.name), overwrite=True)
    return out
