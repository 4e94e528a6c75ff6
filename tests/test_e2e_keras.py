"""End to end on tiny generated images: every component for real (LocalDagRunner, Beam, MLMD)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import pushed_versions, tiny_config
from twinflow.components.image_example_gen.executor import make_example
from twinflow.core.errors import ImageFolderError
from twinflow.pipelines.cli.main import main
from twinflow.pipelines.run.local import run_local

pytestmark = pytest.mark.e2e
CLASSES = ["circle", "square", "stripes"]


def _pushed_versions(serving_dir: Path) -> list[Path]:
    return pushed_versions(serving_dir, "keras")


def _executions(config) -> int:
    """How many component executions the run's ML Metadata store has recorded."""
    from ml_metadata import metadata_store
    from tfx import v1 as tfx

    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    return len(metadata_store.MetadataStore(connection).get_executions())


def cli_args(config, **changed: str) -> list[str]:
    """The ``twinflow run`` command line that builds exactly ``config`` (tiny_config's values), flags ``changed``."""
    argv = [
        "run",
        "--framework",
        config.framework,
        "--architecture",
        config.training.architecture,
        "--epochs",
        str(config.training.epochs),
        "--lr-schedule",
        config.training.lr_schedule,
        "--batch-size",
        str(config.training.batch_size),
        "--accuracy-floor",
        str(config.evaluation.accuracy_floor),
        "--data-dir",
        config.data_dir,
        "--schema",
        str(config.schema_path),
        "--serving-dir",
        config.serving_dir,
        "--pipeline-root",
        config.pipeline_root,
        "--metadata-path",
        config.metadata_path,
    ]
    for flag, value in changed.items():
        argv[argv.index(flag) + 1] = value
    return argv


def twinflow(*argv: str) -> subprocess.CompletedProcess:
    """The installed command line in its own process, as a user runs it."""
    command = [sys.executable, "-m", "twinflow.pipelines.cli", *argv]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": ""}
    )


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


def test_unchanged_second_run_does_nothing_says_so_and_names_what_is_served(keras_run) -> None:
    config, first = keras_run
    before = _pushed_versions(Path(config.serving_dir))
    executions = _executions(config)
    result = twinflow(*cli_args(config))
    assert result.returncode == 0, result.stderr
    assert f"nothing changed since run {first['run_id']}" in result.stdout
    assert f"Served: keras version {before[-1].name}" in result.stdout
    assert result.stderr == ""
    assert _executions(config) == executions  # no component ran, not even from cache
    assert _pushed_versions(Path(config.serving_dir)) == before


def test_transform_writes_its_graph_and_examples_and_no_second_set_of_statistics(keras_run) -> None:
    # StatisticsGen describes the data; Transform's own TFDV passes would repeat that work.
    config, _ = keras_run
    outputs = {p.name for p in (Path(config.pipeline_root) / "Transform").iterdir()}
    assert {"transform_graph", "transformed_examples"} <= outputs
    assert not {name for name in outputs if name.endswith(("_stats", "_anomalies", "_schema"))}, outputs


def test_a_changed_threshold_re_judges_the_cached_model_and_pushes_nothing_new(keras_run) -> None:
    config, first = keras_run
    before = _pushed_versions(Path(config.serving_dir))
    changed = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"accuracy_floor": 0.55})})
    report = run_local(changed).to_json()
    assert report["run_id"] != first["run_id"]
    states = {c["id"]: c["state"] for c in report["components"]}
    cached = {k for k, v in states.items() if v == "CACHED"}
    assert {"ImageExampleGen", "StatisticsGen", "Transform", "Trainer_keras"} <= cached, states
    assert states["Evaluator_keras"] == "COMPLETE"  # new thresholds: judged again
    assert _pushed_versions(Path(config.serving_dir)) == before  # the same model is not pushed twice
    assert report["frameworks"][0]["pushed_to"] == str(before[0])


def test_touched_or_copied_data_is_nothing_new_against_the_served_version(
    keras_run, tiny_folders: Path, tmp_path: Path
) -> None:
    # After the changed-threshold run the last run's inputs differ: the served version's card decides.
    config, first = keras_run
    (version,) = _pushed_versions(Path(config.serving_dir))
    card = json.loads((version / "model.json").read_text())
    assert card["run_fingerprint"] and card["data"]["run_id"] == first["run_id"]
    copy = tmp_path / "data"
    subprocess.run(["cp", "-r", str(tiny_folders), str(copy)], check=True)  # no -p: every file newer
    for path in tiny_folders.rglob("*.png"):
        os.utime(path)
    executions = _executions(config)
    for data_dir in (f"{tiny_folders}/", f"{copy}/"):
        result = twinflow(*cli_args(config, **{"--data-dir": data_dir}))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"nothing changed since run {first['run_id']}" in result.stdout, result.stdout
        assert f"Served: keras version {version.name}" in result.stdout
    assert _executions(config) == executions
    assert _pushed_versions(Path(config.serving_dir)) == [version]


def test_a_second_run_at_the_same_time_is_refused_naming_the_holder(keras_run, tmp_path: Path) -> None:
    from twinflow.pipelines.run.guard import exclusive_run

    config, _ = keras_run
    executions = _executions(config)
    with exclusive_run(config):  # this process is mid-run
        result = twinflow(*cli_args(config, **{"--epochs": "3"}))  # a run with something new to do
    assert result.returncode == 5
    assert result.stderr.startswith(f"twinflow run: error: another twinflow run is using {config.metadata_path}: ")
    assert f"pid {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    assert _executions(config) == executions  # refused before any component started


def _argv(config, data: Path, run: Path, schema: Path) -> list[str]:
    return [
        "run",
        "--framework",
        "keras",
        "--architecture",
        "tiny_cnn",
        "--data-dir",
        str(data),
        "--schema",
        str(schema),
        "--serving-dir",
        str(config.serving_dir),
        "--pipeline-root",
        str(run / "pipeline"),
        "--metadata-path",
        str(run / "metadata.sqlite"),
    ]


def test_unknown_class_folder_is_refused_at_once_with_the_draft_schema_command(
    keras_run, tiny_folders: Path, tmp_path: Path, capsys
) -> None:
    config, _ = keras_run
    data = tmp_path / "data"
    shutil.copytree(tiny_folders, data)
    shutil.copytree(data / "train" / "circle", data / "train" / "zebra")
    serving_before = _tree(Path(config.serving_dir))
    run = tmp_path / "run"
    assert main(_argv(config, data, run, Path(config.schema_path))) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"twinflow run: error: the classes in {data} do not match the schema")
    assert "classes not in the schema: ['zebra']" in message
    assert f"twinflow draft-schema --data-dir {data} --out schemas/data/schema.pbtxt" in message
    assert _tree(Path(config.serving_dir)) == serving_before
    assert not run.exists()  # refused before anything ran


def test_a_schema_violation_stops_at_the_data_gate_before_training(
    keras_run, tiny_folders: Path, tmp_path: Path, capsys
) -> None:
    """Through the command line, as a user meets it: exit status 3 and every anomaly named."""
    config, _ = keras_run
    schema = tmp_path / "strict.pbtxt"
    schema.write_text(Path(config.schema_path).read_text().replace("max: 2", "max: 1"))  # one label too few
    serving_before = _tree(Path(config.serving_dir))
    run = tmp_path / "run"
    assert main(_argv(config, tiny_folders, run, schema)) == 3
    message = capsys.readouterr().err
    assert message.startswith("twinflow run: stopped by data validation: data validation found")
    assert "feature 'label' [INT_TYPE_BIG_INT]" in message  # stripes is label 2 of a 0..1 domain
    assert "twinflow draft-schema" in message
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
    with pytest.raises(ImageFolderError, match=r"square/square_0003\.png \(40 bytes\): not an image Pillow can read"):
        run_local(tiny_config(tmp_path / "run", data, serving_dir=config.serving_dir, schema_path=config.schema_path))
    assert _tree(Path(config.serving_dir)) == serving_before
