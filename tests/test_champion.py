"""Champion/challenger pushes, versions kept, training data and baseline statistics, one decision record per run.

The pusher pushes what the Evaluator blessed (its judgement on the blessing: reason, paired
comparison, the served version it was judged against); here the judgements are written as
the Evaluator writes them (twinflow.components.finite_evaluator.promotion.record), and tests/test_promotion.py
makes them for real.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.utils import path_utils

from tests.helpers import make_card
from tests.test_versioned_pusher import make_model
from twinflow.components.finite_evaluator import promotion
from twinflow.components.versioned_pusher.component import VersionedPusher
from twinflow.components.versioned_pusher.executor import Executor, push, stale_judgement
from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.core.model_card import read_model_card, write_model_card
from twinflow.model_store.decisions import DECISION_KEYS, read_decisions, write_decision
from twinflow.model_store.layout import BASELINE_STATISTICS, COMPLETE_MARKER, complete_versions, served_version
from twinflow.model_store.publish import remove_oldest


def write_metrics(uri: str, **metrics: float) -> None:
    """A real TFMA metrics file (overall slice) as the Evaluator writes it; ``accuracy=``, ``loss=``."""
    names = {"accuracy": "sparse_categorical_accuracy", "loss": "sparse_categorical_crossentropy"}
    record = metrics_for_slice_pb2.MetricsForSlice()
    for name, value in metrics.items():
        entry = record.metric_keys_and_values.add()
        entry.key.name = names[name]
        entry.value.double_value.value = value
    tf.io.gfile.makedirs(uri)
    with tf.io.TFRecordWriter(fs.join(uri, "metrics-00000-of-00001.tfrecord")) as writer:
        writer.write(record.SerializeToString())


def trained_model(root: Path, classes: list[str] | None = None) -> Artifact:
    """A Trainer's Model artifact holding a small model folder with a valid model.json."""
    model = standard_artifacts.Model()
    model.uri = str(root)
    folder = make_model(path_utils.serving_model_path(model.uri))
    if classes is not None:
        write_model_card(folder, make_card().model_copy(update={"class_names": classes}))
    return model


FIRST = "first version: nothing served to compare with"


def run_pusher(
    tmp_path: Path,
    serving_dir: Path,
    model: Artifact,
    accuracy: float,
    *,
    blessed: bool = True,
    reason: str = "",
    comparison: dict[str, Any] | None = None,
    judged_against: str | None = None,
    examples: Artifact | None = None,
    statistics: Artifact | None = None,
    **exec_properties: Any,
) -> Artifact:
    """One real Pusher execution of a model the Evaluator judged against ``judged_against`` (default: the
    version served now, as the Evaluator just before it would have); returns its PushedModel artifact."""
    tag = uuid.uuid4().hex[:8]
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / f"evaluation-{tag}"), str(tmp_path / f"blessing-{tag}")
    write_metrics(evaluation.uri, accuracy=accuracy, loss=0.5)
    if judged_against is None:
        served = served_version(str(serving_dir / exec_properties.get("model_name", "keras")))
        judged_against = promotion.NOTHING_SERVED if served is None else str(served.number)
    if not reason:
        reason = FIRST if judged_against == promotion.NOTHING_SERVED else f"judged against {judged_against}"
    promotion.record(blessing, promotion.Judgement(blessed, reason, comparison, judged_against))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{tag}")
    inputs = {"model": [model], "model_blessing": [blessing], "model_evaluation": [evaluation]}
    inputs |= {"examples": [examples]} if examples else {}
    inputs |= {"statistics": [statistics]} if statistics else {}
    properties = {"serving_dir": str(serving_dir), "model_name": "keras"}
    Executor().Do(inputs, {"pushed_model": [pushed]}, properties | exec_properties)
    return pushed


def spans_examples(tmp_path: Path) -> Artifact:
    """ImageExampleGen's output for a window of spans, with the properties it records."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.span, examples.version = 5, 2
    examples.set_string_custom_property("spans", json.dumps([3, 4, 5]))
    examples.set_string_custom_property("input_base", "gs://bucket/images")
    examples.set_string_custom_property("input_fingerprint", "abc123")
    return examples


def train_statistics(tmp_path: Path) -> tuple[Artifact, bytes]:
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "statistics")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.datasets.add(num_examples=42)
    content = stats.SerializeToString()
    Path(statistics.uri, "Split-train").mkdir(parents=True)
    Path(statistics.uri, "Split-train", "FeatureStats.pb").write_bytes(content)
    return statistics, content


def was_pushed(artifact: Artifact) -> bool:
    return artifact.get_int_custom_property("pushed") == 1


def test_the_component_takes_the_new_inputs_and_properties() -> None:
    from tfx.types import channel_utils

    def channel(artifact_type: type) -> Any:
        return channel_utils.as_channel([artifact_type()])

    pusher = VersionedPusher(
        model=channel(standard_artifacts.Model),
        model_blessing=channel(standard_artifacts.ModelBlessing),
        model_evaluation=channel(standard_artifacts.ModelEvaluation),
        serving_dir="/serving",
        model_name="keras",
        examples=channel(standard_artifacts.Examples),
        statistics=channel(standard_artifacts.ExampleStatistics),
        keep_versions=3,
        run_id="run-1",
    )
    assert pusher.exec_properties["keep_versions"] == 3
    assert "max_accuracy_drop" not in pusher.exec_properties  # the Evaluator's rule, not the pusher's
    assert set(pusher.inputs) == {"model", "model_blessing", "model_evaluation", "examples", "statistics"}
    bare = VersionedPusher(
        model=channel(standard_artifacts.Model),
        model_blessing=channel(standard_artifacts.ModelBlessing),
        model_evaluation=channel(standard_artifacts.ModelEvaluation),
        serving_dir="/serving",
        model_name="keras",
    )
    assert bare.exec_properties["keep_versions"] == 5


def test_a_blessing_judged_against_another_served_version_is_stale(tmp_path: Path) -> None:
    root = str(tmp_path / "serving" / "keras")
    served = push(make_model(str(tmp_path / "a")), root, {"accuracy": 0.91, "loss": 0.3})
    assert stale_judgement(str(served.number), served) is None
    assert stale_judgement(promotion.NOTHING_SERVED, None) is None
    assert stale_judgement("", served) is None  # a variant, judged against its float parent
    assert stale_judgement(promotion.NOTHING_SERVED, served) == (
        f"not pushed: judged against nothing served, but version {served.number} is served now; "
        "run again to judge it against that"
    )
    assert stale_judgement("17", None) == (
        "not pushed: judged against served version 17, but nothing is served now; run again to judge it against that"
    )


def test_a_push_records_data_decision_and_baseline_statistics_before_the_marker(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    statistics, content = train_statistics(tmp_path)
    model = trained_model(tmp_path / "model")
    artifact = run_pusher(
        tmp_path, serving, model, 0.9, examples=spans_examples(tmp_path), statistics=statistics, run_id="run-7"
    )
    assert was_pushed(artifact)
    (version,) = complete_versions(str(serving / "keras"))
    assert artifact.get_string_custom_property("pushed_version") == str(version.number)
    card = read_model_card(version.path)
    assert card.decision == f"pushed: {FIRST}"
    assert card.evaluation == {"accuracy": 0.9, "loss": 0.5}
    assert card.data is not None and card.data.model_dump() == {
        "input_base": "gs://bucket/images",
        "spans": [3, 4, 5],
        "version": 2,
        "fingerprint": "abc123",
        "examples_uri": str(tmp_path / "examples"),
        "run_id": "run-7",
    }
    assert Path(version.path, BASELINE_STATISTICS).read_bytes() == content
    assert BASELINE_STATISTICS in json.loads(Path(version.path, COMPLETE_MARKER).read_text())["files"]
    (record,) = read_decisions(str(serving / "keras"))
    assert set(record) == set(DECISION_KEYS)
    assert {k: v for k, v in record.items() if k != "time"} == {
        "framework": "keras",
        "run_id": "run-7",
        "blessed": True,
        "pushed": True,
        "version": version.number,
        "served_before": None,
        "served_after": version.number,
        "reason": f"pushed: {FIRST}",
        "evaluation": {"accuracy": 0.9, "loss": 0.5},
        "comparison": None,  # nothing served: nothing compared
        "spans": [3, 4, 5],
        "accepted_drift": None,
    }


def test_a_refused_model_is_not_pushed_and_every_execution_is_recorded_with_its_reason(tmp_path: Path, capsys) -> None:
    serving = tmp_path / "serving"
    root = str(serving / "keras")
    first = run_pusher(tmp_path, serving, trained_model(tmp_path / "m1"), 0.91)
    served = served_version(root)
    assert was_pushed(first) and served is not None

    # What the Evaluator found: worse than the served version on the same test images.
    worse_words = f"keras is worse than served version {served.number} by more than 1.00 pp: (figures)"
    comparison = {"verdict": "inferior", "words": worse_words, "accuracy": {"candidate": {"value": 0.85}}}
    refused = {"blessed": False, "reason": worse_words, "comparison": comparison}
    worse = run_pusher(tmp_path, serving, trained_model(tmp_path / "m2"), 0.85, **refused)
    assert not was_pushed(worse)
    assert [v.number for v in complete_versions(root)] == [served.number]
    assert f"[push] keras: not pushed: {worse_words}" in capsys.readouterr().out
    assert worse.get_string_custom_property("decision") == f"not pushed: {worse_words}"

    floor = "test accuracy 55.00% is below the floor 60.00%"
    run_pusher(tmp_path, serving, trained_model(tmp_path / "m3"), 0.55, blessed=False, reason=floor)
    again = run_pusher(tmp_path, serving, trained_model(tmp_path / "m1"), 0.91)  # the same model, re-blessed
    assert was_pushed(again) and again.get_string_custom_property("pushed_version") == str(served.number)
    # Blessed against nothing served, but a version is served now (pushed after its Evaluator ran): refused.
    late = run_pusher(tmp_path, serving, trained_model(tmp_path / "m5"), 0.95, judged_against=promotion.NOTHING_SERVED)
    assert not was_pushed(late)
    better = run_pusher(tmp_path, serving, trained_model(tmp_path / "m4"), 0.905, reason="not worse (figures)")
    assert was_pushed(better)

    records = read_decisions(root)
    assert [(r["blessed"], r["pushed"], r["reason"]) for r in records] == [
        (True, True, f"pushed: {FIRST}"),
        (False, False, f"not pushed: {worse_words}"),
        (False, False, f"not pushed: {floor}"),
        (True, False, f"already pushed as version {served.number}"),
        (True, False, stale_judgement(promotion.NOTHING_SERVED, served)),
        (True, True, "pushed: not worse (figures)"),
    ]
    assert records[1]["comparison"] == comparison  # the Evaluator's figures, recorded with the decision
    assert [r["served_before"] for r in records] == [None, *[served.number] * 5]
    assert records[-1]["served_after"] == records[-1]["version"] > served.number
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert all(r["spans"] is None and r["run_id"] is None for r in records)  # no examples input: skipped


def test_only_keep_versions_complete_versions_remain_after_a_push(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    root = serving / "keras"
    (root / "1").mkdir(parents=True)  # incomplete (maybe a push in progress): left alone
    numbers = []
    for i in range(4):
        run_pusher(tmp_path, serving, trained_model(tmp_path / f"m{i}"), 0.9, keep_versions=2)
        numbers.append(served_version(str(root)).number)
    assert [v.number for v in complete_versions(str(root))] == numbers[-2:]
    assert (root / "1").is_dir()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    # Never the served one, whatever is asked.
    assert remove_oldest(str(root), 0) == [numbers[-2]]
    assert [v.number for v in complete_versions(str(root))] == [numbers[-1]]


def test_old_versions_on_an_object_store_lose_their_marker_first_and_go() -> None:
    base = f"ram://twinflow-{uuid.uuid4().hex}"
    root = f"{base}/serving/keras"
    pushed = [push(make_model(f"{base}/m{i}"), root, {"accuracy": 0.9}) for i in range(3)]
    assert remove_oldest(root, 1) == [pushed[0].number, pushed[1].number]
    assert complete_versions(root) == [pushed[2]]
    assert not tf.io.gfile.exists(pushed[0].path)


def test_decision_records_round_trip_oldest_first_locally_and_on_object_stores(tmp_path: Path) -> None:
    for root in (str(tmp_path / "keras"), f"ram://twinflow-{uuid.uuid4().hex}/keras"):
        assert read_decisions(root) == []
        late = write_decision(root, {"time": "2030-01-02T03:04:05.000006Z", "framework": "keras", "reason": "b"})
        early = write_decision(root, {"time": "2030-01-01T00:00:00Z", "framework": "keras", "reason": "a"})
        assert late.rsplit("/", 1)[-1].startswith("20300102T030405000006-")
        assert early < late
        records = read_decisions(root)
        assert [r["reason"] for r in records] == ["a", "b"]
        assert records[0]["time"] == "2030-01-01T00:00:00.000000Z" and records[0]["pushed"] is None
    with pytest.raises(ValueError):
        write_decision(str(tmp_path / "keras"), {"evaluation": {"loss": float("nan")}})  # strict JSON
    Path(tmp_path, "keras", "_decisions", "20300103T000000000000-bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a decision record"):
        read_decisions(str(tmp_path / "keras"))


def test_a_canary_push_keeps_the_served_model_stable(tmp_path: Path) -> None:
    from twinflow.model_store.layout import read_labels

    serving = tmp_path / "serving"
    root = str(serving / "keras")
    run_pusher(tmp_path, serving, trained_model(tmp_path / "m0"), 0.90)
    (first,) = complete_versions(root)
    assert read_labels(root) == {}  # without --canary no labels are written
    run_pusher(tmp_path, serving, trained_model(tmp_path / "m1"), 0.91, canary=1)
    second = complete_versions(root)[-1]
    assert read_labels(root) == {"stable": first.number, "canary": second.number}
    assert served_version(root) == first
    # "Served" is the stable version: a model judged against the canary (the newest) is judged against the
    # wrong one and refused; the Evaluator compares with the stable version (tests/test_promotion.py).
    against_canary = run_pusher(
        tmp_path, serving, trained_model(tmp_path / "m9"), 0.95, judged_against=str(second.number)
    )
    assert not was_pushed(against_canary)
    assert read_decisions(root)[-1]["reason"] == stale_judgement(str(second.number), first)
    run_pusher(tmp_path, serving, trained_model(tmp_path / "m2"), 0.92)  # a plain push while labels are in use
    assert read_labels(root) == {"stable": complete_versions(root)[-1].number}
