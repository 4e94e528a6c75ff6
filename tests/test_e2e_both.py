"""End to end with both frameworks: one pipeline run trains, evaluates and pushes Keras and Lightning twins."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from tests.conftest import BOTH_RUN_FLOOR as FLOOR
from tests.helpers import pushed_versions
from twinflow.components.image_example_gen.executor import make_example
from twinflow.pipelines.run.local import run_local
from twinflow.trainers.formats.onnx_model import OnnxImageClassifier

pytestmark = pytest.mark.e2e
CLASSES = ["circle", "square", "stripes"]


def _pushed(config, framework: str) -> Path:
    (version,) = pushed_versions(config.serving_dir, framework)
    return version


def _test_images(tiny_folders: Path) -> tuple[list[bytes], np.ndarray]:
    files = [p for name in CLASSES for p in sorted((tiny_folders / "test" / name).glob("*.png"))]
    return [p.read_bytes() for p in files], np.array([CLASSES.index(p.parent.name) for p in files])


def test_both_frameworks_are_blessed_pushed_and_reported(both_run) -> None:
    config, report = both_run
    states = {c["id"]: c["state"] for c in report["components"]}
    assert all(state == "COMPLETE" for state in states.values()), states
    assert {"Trainer_keras", "Trainer_lightning", "Evaluator_keras", "Evaluator_lightning"} <= set(states)
    rows = {r["framework"]: r for r in report["frameworks"]}
    assert list(rows) == ["keras", "lightning"]
    for name, row in rows.items():
        assert row["blessed"] and row["pushed"], name
        assert row["test_accuracy"] >= FLOOR and row["test_examples"] == 45, name
        assert row["pushed_to"] == str(_pushed(config, name))
        assert row["images_per_second"] > 0 and row["device"] == "CPU"
    assert rows["keras"]["parameters"] == rows["lightning"]["parameters"] == 26_467
    assert report["difference"]["test_accuracy"] == pytest.approx(
        rows["keras"]["test_accuracy"] - rows["lightning"]["test_accuracy"]
    )
    saved = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"), "report.json")
    assert [r["framework"] for r in json.loads(saved.read_text())["frameworks"]] == ["keras", "lightning"]


def test_model_cards_are_twins(both_run) -> None:
    config, report = both_run
    keras = json.loads((_pushed(config, "keras") / "model.json").read_text())
    lightning = json.loads((_pushed(config, "lightning") / "model.json").read_text())
    assert set(keras) - {"signatures"} <= set(lightning)
    assert set(keras["training"]) == set(lightning["training"])
    for key in ("class_names", "input_contract", "architecture", "parameters"):
        assert keras[key] == lightning[key], key
    assert keras["training"]["config"] == lightning["training"]["config"]
    assert lightning["evaluation"]["accuracy"] == pytest.approx(report["frameworks"][1]["test_accuracy"])


def test_pushed_keras_model_serves_both_signatures(both_run, tiny_folders: Path) -> None:
    config, _ = both_run
    model = tf.saved_model.load(str(_pushed(config, "keras")))
    image_bytes, truth = _test_images(tiny_folders)
    by_bytes = model.signatures["serving_image_bytes"](image_bytes=tf.constant(image_bytes))["probabilities"].numpy()
    examples = [make_example(b, 0, "circle", "f").SerializeToString() for b in image_bytes]
    by_example = model.signatures["serving_default"](examples=tf.constant(examples))["probabilities"].numpy()
    np.testing.assert_allclose(by_example, by_bytes, atol=1e-6)
    assert (by_bytes.argmax(axis=1) == truth).mean() >= FLOOR


def test_pushed_lightning_model_serves_with_onnx_runtime(both_run, tiny_folders: Path) -> None:
    config, report = both_run
    version = _pushed(config, "lightning")
    model = OnnxImageClassifier(version)
    image_bytes, truth = _test_images(tiny_folders)
    transformed = model.transform_image_bytes(image_bytes)  # the pushed transform graph
    session = ort.InferenceSession(str(version / "model.onnx"))
    (probabilities,) = session.run(["probabilities"], {"image_xf": transformed})
    assert probabilities.shape == (45, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = (probabilities.argmax(axis=1) == truth).mean()
    assert accuracy >= FLOOR
    # The Evaluator saw the same 45 test images through the same graph and model.
    assert accuracy == pytest.approx(report["frameworks"][1]["test_accuracy"])


def test_second_run_evaluates_each_framework_against_the_version_it_serves(both_run) -> None:
    config, first = both_run
    # Only the thresholds change: everything up to the Trainers is cached, the Evaluators judge again.
    changed = config.model_copy(
        update={"evaluation": config.evaluation.model_copy(update={"accuracy_floor": FLOOR - 0.05})}
    )
    report = run_local(changed).to_json()
    states = {c["id"]: c["state"] for c in report["components"]}
    assert states["Trainer_lightning"] == "CACHED" and states["Evaluator_lightning"] == "COMPLETE", states
    for before, after in zip(first["frameworks"], report["frameworks"], strict=True):
        # The served version is this very model (the first run pushed it): named, blessed, already pushed.
        version = int(_pushed(config, after["framework"]).name)
        assert after["blessed"], after["framework"]
        assert after["test_accuracy"] == pytest.approx(before["test_accuracy"]), after["framework"]
        assert after["push_reason"] == f"already pushed as version {version}"
    evaluation = Path(config.pipeline_root, "Evaluator_lightning", "evaluation")
    latest = max(evaluation.iterdir(), key=lambda p: int(p.name))
    models = {
        kv.key.model_name
        for metrics in tfma.load_metrics(str(latest))
        for kv in metrics.metric_keys_and_values
        if kv.key.name == "sparse_categorical_accuracy"
    }
    assert models == {""}  # TFMA evaluates the candidate alone: no resolver, no baseline model
    blessing = Path(config.pipeline_root, "Evaluator_lightning", "blessing")
    judgement = json.loads((max(blessing.iterdir(), key=lambda p: int(p.name)) / "judgement.json").read_text())
    version = int(_pushed(config, "lightning").name)
    assert judgement["reason"] == f"this model is served version {version} itself"
    assert judgement["served_version"] == str(version)
