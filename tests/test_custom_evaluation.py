"""TFMA hooks for Lightning models, run for real under Beam's DirectRunner on raw test examples."""

import glob
import importlib
import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import torch
from tfx import v1 as tfx

from twinflow.components.tfma_results import load_sliced_metrics
from twinflow.core.registry import get_framework
from twinflow.pipelines.evaluation import build_eval_config
from twinflow.pipelines.run.record import read_run
from twinflow.trainers import custom_evaluation
from twinflow.trainers.formats.onnx_model import OnnxImageClassifier
from twinflow.trainers.lightning.export import export_serving_model
from twinflow.trainers.lightning.model import build_model
from twinflow.trainers.lightning.train import run_fn

CLASSES = ["circle", "square", "stripes"]


@pytest.fixture(scope="module")
def raw_test_examples(keras_run) -> str:
    """File pattern of ImageExampleGen's raw test split (what the Evaluator reads)."""
    config, _ = keras_run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(config.metadata_path))
    examples = read_run(metadata, config.pipeline_name).nodes["ImageExampleGen"].output("examples")
    return os.path.join(examples.uri, "Split-test", "*")


def _direct(model_dir: str, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, label) per raw example, straight from ONNX Runtime, no TFMA."""
    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP")]
    labels = np.array([tf.train.Example.FromString(r).features.feature["label"].int64_list.value[0] for r in records])
    return OnnxImageClassifier(model_dir).predict_examples(records).argmax(axis=1), labels


def _eval_config(keras_run, has_baseline: bool) -> tfma.EvalConfig:
    """The pipeline's EvalConfig, completed as the TFX Evaluator completes it before calling the hooks."""
    config, _ = keras_run
    eval_config = build_eval_config(config.evaluation, get_framework("lightning"))
    return tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=has_baseline, rubber_stamp=True)


def _accuracies(output_path: Path) -> dict[tuple[str, int | None], float]:
    """Accuracy per (model name, label slice or None for overall), read from TFMA's output."""
    result: dict[tuple[str, int | None], float] = {}
    for metrics in tfma.load_metrics(str(output_path)):
        keys = metrics.slice_key.single_slice_keys
        label = keys[0].int64_value if keys else None
        for kv in metrics.metric_keys_and_values:
            if kv.key.name == "sparse_categorical_accuracy" and not kv.key.is_diff:
                result[kv.key.model_name, label] = kv.value.double_value.value
    return result


def _analyze(models, eval_config: tfma.EvalConfig, pattern: str, out: Path) -> None:
    tfma.run_model_analysis(
        eval_shared_model=models,
        eval_config=eval_config,
        data_location=pattern,
        file_format="tfrecords",
        output_path=str(out),
        extractors=custom_evaluation.custom_extractors(models, eval_config, None),
    )


def test_custom_eval_shared_model_loads_the_serving_directory(lightning_trained) -> None:
    model = custom_evaluation.custom_eval_shared_model(
        lightning_trained.serving_model_dir, "", None, add_metrics_callbacks=None
    )
    loaded = model.model_loader.load()
    assert isinstance(loaded, OnnxImageClassifier) and loaded.class_names == CLASSES
    assert model.model_path == lightning_trained.serving_model_dir


def test_tfma_metrics_equal_direct_onnx_metrics(lightning_trained, keras_run, raw_test_examples, tmp_path) -> None:
    eval_config = _eval_config(keras_run, has_baseline=False)
    model_dir = lightning_trained.serving_model_dir
    model = custom_evaluation.custom_eval_shared_model(model_dir, eval_config.model_specs[0].name, eval_config)
    _analyze(model, eval_config, raw_test_examples, tmp_path)

    predicted, labels = _direct(model_dir, raw_test_examples)
    assert load_sliced_metrics(str(tmp_path))["overall"]["example_count"] == len(labels) == 45
    accuracy = _accuracies(tmp_path)
    assert accuracy["", None] == pytest.approx((predicted == labels).mean())
    for index in range(len(CLASSES)):
        assert accuracy["", index] == pytest.approx((predicted[labels == index] == index).mean()), index
    # Per-class precision and recall of the top-1 predictions, as the cards carry them.
    overall = load_sliced_metrics(str(tmp_path))["overall"]
    for index in range(len(CLASSES)):
        hits = ((predicted == index) & (labels == index)).sum()
        if (predicted == index).any():
            assert overall[f"precision_class_{index}"] == pytest.approx(hits / (predicted == index).sum()), index
        else:
            assert np.isnan(overall[f"precision_class_{index}"]), index
        assert overall[f"recall_class_{index}"] == pytest.approx(hits / (labels == index).sum()), index
    assert tfma.load_validation_result(str(tmp_path)).validation_ok == (
        (predicted == labels).mean() >= keras_run[0].evaluation.accuracy_floor
    )


def test_with_a_baseline_each_model_gets_its_own_predictions(
    lightning_trained, keras_run, transform_outputs, raw_test_examples, tmp_path
) -> None:
    """Candidate and baseline differ (trained vs untrained), so swapped predictions would show."""
    baseline_dir = tmp_path / "baseline"
    torch.manual_seed(1)
    config = transform_outputs["config"].training
    untrained = build_model(config.architecture, config.image_size, config.channels, len(CLASSES))
    export_serving_model(untrained, transform_outputs["transform_graph"], config, str(baseline_dir))
    (baseline_dir / "model.json").write_text(Path(lightning_trained.serving_model_dir, "model.json").read_text())

    eval_config = _eval_config(keras_run, has_baseline=True)
    dirs = {"candidate": lightning_trained.serving_model_dir, "baseline": str(baseline_dir)}
    models = [
        custom_evaluation.custom_eval_shared_model(dirs[spec.name], spec.name, eval_config)
        for spec in eval_config.model_specs
    ]
    assert [m.is_baseline for m in models] == [spec.is_baseline for spec in eval_config.model_specs]
    _analyze(models, eval_config, raw_test_examples, tmp_path / "out")

    accuracy = _accuracies(tmp_path / "out")
    for name, model_dir in dirs.items():
        predicted, labels = _direct(model_dir, raw_test_examples)
        assert accuracy[name, None] == pytest.approx((predicted == labels).mean()), name
        assert accuracy[name, 2] == pytest.approx((predicted[labels == 2] == 2).mean()), name
    assert accuracy["candidate", None] != pytest.approx(accuracy["baseline", None])


def test_run_fn_and_hooks_are_what_the_registry_names() -> None:
    # Compared by where they are defined, not identity: TFX's Trainer re-imports (reloads)
    # run_fn modules, so after an end-to-end test the module object is a newer one.
    def origin(fn: object) -> tuple[str, str, str | None]:
        return fn.__module__, fn.__qualname__, inspect.getsourcefile(fn)

    plugin = get_framework("lightning")
    module, _, name = plugin.run_fn.rpartition(".")
    assert origin(getattr(importlib.import_module(module), name)) == origin(run_fn)
    hooks = importlib.import_module(plugin.evaluator_module)
    assert origin(hooks.custom_eval_shared_model) == origin(custom_evaluation.custom_eval_shared_model)
    assert origin(hooks.custom_extractors) == origin(custom_evaluation.custom_extractors)
    assert plugin.signature_name is None
