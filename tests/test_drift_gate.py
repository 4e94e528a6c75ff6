"""DriftGate: real TFDV statistics of real generated images against served versions' baselines."""

from __future__ import annotations

import io
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.types import artifact_utils, standard_artifacts

from tests.helpers import make_card
from tests.image_data import pattern, write_image_folders
from twinflow.components.drift_gate.executor import STATISTICS_FILE, VERDICT_PROPERTY, Executor
from twinflow.components.image_example_gen.executor import make_example
from twinflow.components.image_example_gen.images import ingest
from twinflow.core import fs
from twinflow.core.contract import DRIFT_REPORT_FILE, IMAGE_PROPERTY_KEYS
from twinflow.core.errors import DataDriftError
from twinflow.core.model_card import write_model_card
from twinflow.model_store.layout import BASELINE_STATISTICS, write_marker

pytestmark = pytest.mark.slow  # real TFDV statistics: seconds each, computed once for the module

CLASSES = ("circle", "square", "stripes")


def _examples(counts: dict[str, int], seed: int, brighter: int = 0) -> list[tf.train.Example]:
    """28x28 grayscale PNGs through ImageExampleGen's own ingest and make_example."""
    rng = np.random.default_rng(seed)
    examples = []
    for label, name in enumerate(CLASSES):
        for i in range(counts.get(name, 0)):
            pixels = np.clip(pattern(name, 28, rng).astype(np.int16) + brighter, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buffer, "PNG")
            image = ingest(buffer.getvalue())
            examples.append(
                make_example(image.data, label, name, f"{name}/{i}.png", properties=image.properties.features())
            )
    return examples


@pytest.fixture(scope="module")
def schema_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checked-in schema's constraints and drift thresholds, drafted for these classes."""
    from twinflow.pipelines.schema_draft import draft_schema

    root = tmp_path_factory.mktemp("schema")
    write_image_folders(root / "data", CLASSES, train_per_class=2)
    return draft_schema(root / "data", root / "schema" / "schema.pbtxt")


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory, schema_path: Path) -> dict[str, object]:
    """Train-split statistics as StatisticsGen computes them, for each kind of new data."""
    balanced = dict.fromkeys(CLASSES, 150)
    datasets = {
        "baseline": _examples(balanced, seed=0),
        "similar": _examples(balanced, seed=1),
        "label_shift": _examples({"circle": 300, "square": 75, "stripes": 75}, seed=2),
        "bright": _examples(balanced, seed=3, brighter=60),
        "small": _examples(dict.fromkeys(CLASSES, 40), seed=4),
    }
    options = tfdv.StatsOptions(
        enable_semantic_domain_stats=True,
        semantic_domain_stats_sample_rate=1.0,
        schema=tfdv.load_schema_text(str(schema_path)),
    )
    root = tmp_path_factory.mktemp("stats")
    result = {}
    for name, examples in datasets.items():
        path = str(root / f"{name}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
        result[name] = tfdv.generate_statistics_from_tfrecord(
            path, output_path=str(root / f"{name}_stats.tfrecord"), stats_options=options
        )
    return result


def _serve(serving_dir: str, name: str, number: int, baseline: object | None, classes=CLASSES) -> str:
    """A served version as the pusher leaves it: model card, baseline statistics, marker last."""
    path = fs.join(serving_dir, name, str(number))
    write_model_card(path, make_card(name, classes, image_size=28).model_copy(update={"version": number}))
    files = ["model.json"]
    if baseline is not None:
        target = fs.join(path, BASELINE_STATISTICS)
        fs.gfile().makedirs(fs.join(path, BASELINE_STATISTICS.rsplit("/", 1)[0]))
        with fs.gfile().GFile(target, "wb") as handle:
            handle.write(baseline.SerializeToString())
        files.append(BASELINE_STATISTICS)
    write_marker(path, files)
    return path


def _run(
    tmp_path: Path,
    new: object,
    schema_path: Path,
    serving_dir: str,
    names: tuple[str, ...] = ("keras",),
    accept: bool = False,
) -> tuple[dict, standard_artifacts.ExampleAnomalies]:
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    statistics.split_names = artifact_utils.encode_split_names(["train", "eval"])
    split = Path(artifact_utils.get_split_uri([statistics], "train"))
    split.mkdir(parents=True)
    (split / STATISTICS_FILE).write_bytes(new.SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = str(schema_path.parent)
    drift = standard_artifacts.ExampleAnomalies()
    drift.uri = str(tmp_path / "drift")
    properties = {"serving_dir": serving_dir, "model_names": json.dumps(list(names)), "accept_drift": int(accept)}
    try:
        Executor().Do({"statistics": [statistics], "schema": [schema]}, {"drift": [drift]}, properties)
    finally:
        report_path = tmp_path / "drift" / DRIFT_REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return report, drift


@pytest.mark.parametrize("where", ["local", "ram"])
def test_similar_data_passes_and_a_shared_baseline_is_compared_once(
    tmp_path: Path, schema_path: Path, stats: dict, where: str, capsys: pytest.CaptureFixture
) -> None:
    serving = str(tmp_path / "serving") if where == "local" else f"ram://drift-{uuid.uuid4().hex}/serving"
    _serve(serving, "keras", 3, stats["baseline"])
    _serve(serving, "lightning", 2, stats["baseline"])  # the same training data: one comparison
    report, drift = _run(tmp_path, stats["similar"], schema_path, serving, ("keras", "lightning"))
    assert report["verdict"] == "no drift" and drift.get_string_custom_property(VERDICT_PROPERTY) == "no drift"
    assert report["accepted"] is False and report["drifted"] == [] and report["notes"] == []
    measured = {m["feature"]: m for m in report["measured"]}  # every comparator, for reviewing thresholds
    assert set(measured) == {
        "label_name",
        "image_format",
        "image_mean",
        "image_height",
        "image_width",
        "image_channels",
    }
    assert all(m["distance"] < m["threshold"] for m in measured.values())
    (baseline,) = report["baselines"]
    assert baseline["frameworks"] == ["keras", "lightning"] and baseline["versions"] == {"keras": 3, "lightning": 2}
    assert baseline["version"] == 3 and baseline["path"] == fs.join(serving, "keras", "3", BASELINE_STATISTICS)
    assert "[drift] no drift against keras v3, lightning v2" in capsys.readouterr().out


def test_a_label_shift_stops_the_run_naming_feature_distance_threshold_and_version(
    tmp_path: Path, schema_path: Path, stats: dict
) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 4, stats["baseline"])
    with pytest.raises(DataDriftError) as err:
        _run(tmp_path, stats["label_shift"], schema_path, serving)
    message = str(err.value)
    # circle holds 2/3 of the new data instead of 1/3: L-infinity 1/3 against the schema's 0.1
    found = re.search(r"label_name: L-infinity (\d\.\d+) > threshold 0\.1 \(compared with keras v4\)", message)
    assert found and float(found.group(1)) == pytest.approx(1 / 3, abs=0.01), message
    assert fs.join(serving, "keras", "4", BASELINE_STATISTICS) in message
    assert "pass --accept-drift to train on it anyway (recorded in the history)" in message


def test_one_feature_drifting_from_two_served_models_counts_once_and_is_listed_per_framework(
    tmp_path: Path, schema_path: Path, stats: dict, capsys: pytest.CaptureFixture
) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 4, stats["baseline"])
    _serve(serving, "lightning", 2, stats["similar"])  # trained on other data: a baseline of its own
    with pytest.raises(DataDriftError) as err:
        _run(tmp_path, stats["label_shift"], schema_path, serving, ("keras", "lightning"))
    message = str(err.value)
    assert "(1 feature past the schema's thresholds: label_name)" in message, message
    assert re.search(r"label_name: L-infinity \d\.\d+ > threshold 0\.1 \(compared with keras v4\)", message)
    assert re.search(r"label_name: L-infinity \d\.\d+ > threshold 0\.1 \(compared with lightning v2\)", message)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("[drift] drift against keras v4; lightning v2: label_name (keras v4 label_name: "), line
    assert "; lightning v2 label_name: L-infinity" in line
    # The whole report travels with the error: the failed gate's own output folder is removed by TFX.
    report = err.value.report
    assert report["verdict"] == "drift" and {m["feature"] for m in report["measured"]} >= {"label_name", "image_mean"}


def test_a_brightness_shift_names_the_mean_intensity(tmp_path: Path, schema_path: Path, stats: dict) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 1, stats["baseline"])
    with pytest.raises(DataDriftError) as err:
        _run(tmp_path, stats["bright"], schema_path, serving)
    message = str(err.value)
    found = re.search(r"image_mean: Jensen-Shannon (\d\.\d+) > threshold 0\.07 \(compared with keras v1\)", message)
    assert found and float(found.group(1)) > 0.2, message
    assert "label_name" not in message


def test_accepted_drift_passes_and_is_recorded(
    tmp_path: Path, schema_path: Path, stats: dict, capsys: pytest.CaptureFixture
) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 1, stats["baseline"])
    _serve(serving, "lightning", 1, stats["similar"])  # another baseline: compared separately
    report, drift = _run(tmp_path, stats["bright"], schema_path, serving, ("keras", "lightning"), accept=True)
    assert report["verdict"] == "drift accepted" and report["accepted"] is True
    assert drift.get_string_custom_property(VERDICT_PROPERTY) == "drift accepted"
    assert [b["frameworks"] for b in report["baselines"]] == [["keras"], ["lightning"]]
    assert {(d["feature"], d["comparator"]) for d in report["drifted"]} == {("image_mean", "jensen_shannon_divergence")}
    assert [d["compared_with"] for d in report["drifted"]] == [{"keras": 1}, {"lightning": 1}]
    assert all(d["distance"] > d["threshold"] == pytest.approx(0.07) for d in report["drifted"])
    assert "[drift] drift accepted against keras v1; lightning v1: image_mean" in capsys.readouterr().out


def test_far_fewer_examples_is_drift(tmp_path: Path, schema_path: Path, stats: dict) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 1, stats["baseline"])
    with pytest.raises(DataDriftError, match=r"num_examples: ratio 0\.267 < threshold 0\.5 \(120 train examples"):
        _run(tmp_path, stats["small"], schema_path, serving)


def test_without_a_served_version_there_is_no_baseline(tmp_path: Path, schema_path: Path, stats: dict) -> None:
    serving = tmp_path / "serving"
    (serving / "keras" / "1").mkdir(parents=True)  # no marker: an unfinished push, not served
    _serve(str(serving), "lightning", 1, None)  # served before baselines were kept
    broken = Path(_serve(str(serving), "other", 1, stats["baseline"])) / BASELINE_STATISTICS
    broken.write_bytes(b"\xff not statistics")
    report, drift = _run(tmp_path, stats["bright"], schema_path, str(serving), ("keras", "lightning", "other"))
    assert report["verdict"] == "no baseline" and drift.get_string_custom_property(VERDICT_PROPERTY) == "no baseline"
    assert report["baselines"] == [] and report["drifted"] == []
    keras, lightning, other = report["notes"]
    assert keras == "keras: no served version, nothing to compare with"
    assert lightning.startswith("lightning v1: no baseline statistics")
    assert other.startswith("other v1: baseline statistics") and other.endswith("are unreadable, not compared")


def test_a_served_model_of_other_classes_is_skipped_with_a_note(tmp_path: Path, schema_path: Path, stats: dict) -> None:
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 2, stats["baseline"], classes=("cat", "dog"))
    _serve(serving, "lightning", 1, stats["baseline"])
    report, _ = _run(tmp_path, stats["similar"], schema_path, serving, ("keras", "lightning"))
    assert report["verdict"] == "no drift" and [b["frameworks"] for b in report["baselines"]] == [["lightning"]]
    (note,) = report["notes"]
    assert note.startswith("keras v2: not compared, it serves other classes (cat, dog)") and "not drift" in note


def test_a_baseline_from_before_image_properties_compares_what_it_has(
    tmp_path: Path, schema_path: Path, stats: dict
) -> None:
    old = statistics_pb2.DatasetFeatureStatisticsList()
    old.CopyFrom(stats["baseline"])
    kept = [f for f in old.datasets[0].features if f.path.step[0] not in IMAGE_PROPERTY_KEYS]
    del old.datasets[0].features[:]
    old.datasets[0].features.extend(kept)
    serving = str(tmp_path / "serving")
    _serve(serving, "keras", 1, old)
    report, _ = _run(tmp_path, stats["bright"], schema_path, serving)  # brighter, but the baseline cannot tell
    assert report["verdict"] == "no drift", report
    (note,) = report["notes"]
    assert note.startswith("keras v1: the baseline has no statistics for") and "image_mean" in note


def test_the_component_carries_its_properties() -> None:
    from tfx import types

    from twinflow.components.drift_gate.component import DriftGate

    gate = DriftGate(
        statistics=types.Channel(type=standard_artifacts.ExampleStatistics),
        schema=types.Channel(type=standard_artifacts.Schema),
        serving_dir="gs://bucket/serving",
        model_names=["keras", "lightning"],
        accept_drift=True,
        served_versions='{"keras": 17, "lightning": null}',
    )
    assert gate.exec_properties == {
        "serving_dir": "gs://bucket/serving",
        "model_names": '["keras", "lightning"]',
        "accept_drift": 1,
        "served_versions": '{"keras": 17, "lightning": null}',
    }
    assert gate.outputs["drift"].type == standard_artifacts.ExampleAnomalies
