"""End to end on tiny generated images: every component for real (LocalDagRunner, Beam, MLMD)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.errors import ImageFolderError
from components.image_example_gen.executor import make_example
from pipelines.cli import main
from pipelines.local_runner import run_local
from tests.conftest import tiny_config

pytestmark = pytest.mark.e2e
CLASSES = ["circle", "square", "stripes"]


def _pushed_versions(serving_dir: Path) -> list[Path]:
    return sorted(p for p in (serving_dir / "keras").iterdir() if not p.name.startswith("."))


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


def test_blessed_model_is_pushed_with_a_model_card(keras_run) -> None:
    config, report = keras_run
    (row,) = report["frameworks"]
    assert row["blessed"] and row["pushed"]
    assert row["test_accuracy"] >= config.evaluation.accuracy_floor
    assert row["test_examples"] == 45
    assert set(row["per_class_accuracy"]) == set(CLASSES)
    assert all(0.0 <= value <= 1.0 for value in row["per_class_accuracy"].values()), row["per_class_accuracy"]
    (version,) = _pushed_versions(Path(config.serving_dir))
    assert row["pushed_to"] == str(version)
    card = json.loads((version / "model.json").read_text())
    assert card["framework"] == "keras" and card["class_names"] == CLASSES
    assert card["version"] == int(version.name)
    assert card["evaluation"]["accuracy"] == pytest.approx(row["test_accuracy"])
    assert card["training"]["images_per_second"] > 0
    states = {c["id"]: c["state"] for c in report["components"]}
    assert all(state == "COMPLETE" for state in states.values()), states
    out = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"))
    assert json.loads((out / "report.json").read_text())["frameworks"][0]["framework"] == "keras"
    assert (out / "per_class_accuracy.png").stat().st_size > 0


def test_both_serving_signatures_predict(keras_run, tiny_folders: Path) -> None:
    config, _ = keras_run
    (version,) = _pushed_versions(Path(config.serving_dir))
    model = tf.saved_model.load(str(version))
    files = [p for name in CLASSES for p in sorted((tiny_folders / "test" / name).glob("*.png"))]
    image_bytes = [p.read_bytes() for p in files]
    by_bytes = model.signatures["serving_image_bytes"](image_bytes=tf.constant(image_bytes))
    examples = [make_example(b, 0, "circle", "f").SerializeToString() for b in image_bytes]
    by_example = model.signatures["serving_default"](examples=tf.constant(examples))
    probabilities = by_bytes["probabilities"].numpy()
    assert probabilities.shape == (45, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(by_example["probabilities"].numpy(), probabilities, atol=1e-6)
    names = [n.decode() for n in by_bytes["class_name"].numpy()]
    truth = [p.parent.name for p in files]
    assert np.mean([a == b for a, b in zip(names, truth, strict=True)]) >= config.evaluation.accuracy_floor
    assert [n.decode() for n in by_bytes["class_names"].numpy()[0]] == CLASSES


def test_unchanged_second_run_is_served_from_cache(keras_run) -> None:
    config, _ = keras_run
    before = _pushed_versions(Path(config.serving_dir))
    report = run_local(config)
    states = {c["id"]: c["state"] for c in report["components"]}
    cached = {k for k, v in states.items() if v == "CACHED"}
    assert {"ImageExampleGen", "StatisticsGen", "Transform", "Trainer_keras"} <= cached, states
    # The Evaluator runs again only because its baseline input changed: the first run's
    # model is now the latest blessed one. The pusher sees that model is already pushed.
    assert _pushed_versions(Path(config.serving_dir)) == before
    assert report["frameworks"][0]["pushed_to"] == str(before[0])


def test_unknown_class_folder_stops_before_training(keras_run, tiny_folders: Path, tmp_path: Path, capsys) -> None:
    """Through the command line, as a user meets it: exit status 3 and every anomaly named."""
    config, _ = keras_run
    data = tmp_path / "data"
    shutil.copytree(tiny_folders, data)
    shutil.copytree(data / "train" / "circle", data / "train" / "zebra")
    serving_before = _tree(Path(config.serving_dir))
    run = tmp_path / "run"
    argv = [
        "run",
        "--framework",
        "keras",
        "--architecture",
        "tiny_cnn",
        "--data-dir",
        str(data),
        "--schema",
        str(config.schema_path),
        "--serving-dir",
        str(config.serving_dir),
        "--pipeline-root",
        str(run / "pipeline"),
        "--metadata-path",
        str(run / "metadata.sqlite"),
    ]
    assert main(argv) == 3
    message = capsys.readouterr().err
    assert message.startswith("twinflow run: stopped by data validation: data validation found")
    assert "feature 'label_name' [ENUM_TYPE_UNEXPECTED_STRING_VALUES]" in message and "zebra" in message
    assert "feature 'label' [INT_TYPE_BIG_INT]" in message  # zebra is label 3 of a 0..2 domain
    assert _tree(Path(config.serving_dir)) == serving_before
    assert not (run / "pipeline" / "Transform").exists()
    assert not (run / "pipeline" / "Trainer_keras").exists()


def test_corrupt_image_stops_the_run_naming_the_file(keras_run, tiny_folders: Path, tmp_path: Path) -> None:
    config, _ = keras_run
    data = tmp_path / "data"
    shutil.copytree(tiny_folders, data)
    victim = data / "train" / "square" / "square_0003.png"
    victim.write_bytes(victim.read_bytes()[:40])
    serving_before = _tree(Path(config.serving_dir))
    with pytest.raises(ImageFolderError, match=r"square/square_0003\.png: corrupt or not an image"):
        run_local(tiny_config(tmp_path / "run", data, serving_dir=config.serving_dir, schema_path=config.schema_path))
    assert _tree(Path(config.serving_dir)) == serving_before
