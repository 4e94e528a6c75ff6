"""Promotion on the same test examples: the paired non-inferiority rule, what a model is compared with,
and the real Evaluator and Pusher deciding on real models, every refusal naming its check and figures."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import make_card
from tests.test_comparison import paired
from tests.test_versioned_pusher import make_model
from twinflow.components.finite_evaluator import promotion
from twinflow.core.model_card import read_model_card, write_model_card
from twinflow.core.statistics import INFERIOR, NON_INFERIOR, UNDECIDED, non_inferiority
from twinflow.model_store.layout import write_labels

NAMES = ("keras", "served version 7")


def _rule(both: int, only_candidate: int, only_served: int, neither: int, drop: float) -> dict[str, Any]:
    return non_inferiority(NAMES, paired(both, only_candidate, only_served, neither), drop)


def test_a_candidate_whose_interval_lies_above_minus_the_drop_is_non_inferior() -> None:
    result = _rule(900, 20, 5, 75, 0.01)  # 1,000 images: right on 20 the served one misses, wrong on 5 it gets
    assert result["verdict"] == NON_INFERIOR and result["difference"]["low"] > -0.01
    assert result["agreement"] == {
        "both_right": 900,
        "only_candidate_right": 20,
        "only_reference_right": 5,
        "both_wrong": 75,
    }
    assert result["accuracy"]["candidate"]["value"] == 0.92 and result["accuracy"]["reference"]["value"] == 0.905
    assert result["mcnemar_p_value"] == pytest.approx(0.004077, abs=1e-6)
    assert result["words"] == (
        "keras is not worse than served version 7 by more than 1.00 pp: the interval's lower bound is above -1.00 pp "
        "(keras 92.00% vs served version 7 90.50% on the same 1000 test images; keras − served version 7: +1.50 pp, "
        "95% CI +0.57 to +2.63 pp; McNemar p = 0.00408)"
    )
    assert _rule(900, 20, 5, 75, 0.0)["verdict"] == NON_INFERIOR  # a drop of 0 asks for a significant gain: shown


def test_a_candidate_whose_interval_lies_below_minus_the_drop_is_inferior() -> None:
    result = _rule(850, 5, 60, 85, 0.01)
    assert result["verdict"] == INFERIOR and result["difference"]["high"] < -0.01
    assert result["words"].startswith(
        "keras is worse than served version 7 by more than 1.00 pp: the interval's upper bound is below -1.00 pp "
        "(keras 85.50% vs served version 7 91.00% on the same 1000 test images; keras − served version 7: -5.50 pp"
    )


def test_an_interval_straddling_minus_the_drop_is_too_small_to_decide() -> None:
    result = _rule(40, 1, 2, 2, 0.01)  # 45 images, 3 disagreements: anything from -13 to +8 pp
    assert result["verdict"] == UNDECIDED
    assert result["difference"]["low"] < -0.01 < result["difference"]["high"]
    assert result["words"].startswith("test set too small to decide: the interval of keras − served version 7")
    assert "straddles -1.00 pp (keras 91.11% vs served version 7 93.33% on the same 45 test images" in result["words"]
    # The same disagreements on more images decide: the interval narrows about as 1/sqrt(n).
    assert _rule(400, 10, 20, 20, 0.01)["verdict"] == UNDECIDED
    assert _rule(4000, 10, 20, 200, 0.01)["verdict"] == NON_INFERIOR
    # On the line itself it is not decided: "above" means strictly above.
    edge = -_rule(40, 1, 2, 2, 0.01)["difference"]["low"]
    assert _rule(40, 1, 2, 2, edge)["verdict"] == UNDECIDED
    assert _rule(40, 1, 2, 2, edge + 1e-9)["verdict"] == NON_INFERIOR


def test_identical_answers_are_non_inferior_only_on_enough_images() -> None:
    """Two models that never disagree on n images: ±z²/(n+z²), 1.26 pp at 300 and 0.04 pp at 10,000."""
    assert _rule(9000, 0, 0, 1000, 0.01)["verdict"] == NON_INFERIOR
    at_300 = _rule(270, 0, 0, 30, 0.01)
    assert at_300["verdict"] == UNDECIDED and at_300["mcnemar_p_value"] == 1.0
    assert at_300["difference"] == {
        "value": 0.0,
        "low": pytest.approx(-0.012643, abs=1e-6),
        "high": pytest.approx(0.012643, abs=1e-6),
        "n": 300,
    }
    assert _rule(270, 0, 0, 30, 0.02)["verdict"] == NON_INFERIOR
    empty = non_inferiority(NAMES, (np.zeros(0, bool), np.zeros(0, bool)), 0.01)
    assert empty["verdict"] == UNDECIDED and empty["words"] == (
        "test set too small to decide: no test images to compare keras with served version 7 on"
    )


# What a candidate is compared with: the served version, read from the serving folder.


def _serve(root: Path, card_changes: dict[str, Any] | None = None, source: str | None = None) -> str:
    """A complete served version (fake model files, a real card), as the pusher leaves it; returns its number.

    ``source``: the model folder its card says it was pushed from."""
    from twinflow.components.versioned_pusher.executor import push

    folder = make_model(str(root.parent / f"src-{uuid.uuid4().hex[:6]}"))
    write_model_card(folder, make_card().model_copy(update=card_changes or {}))
    version = push(folder, str(root), {"accuracy": 0.9})
    if source is not None:
        write_model_card(version.path, read_model_card(version.path).model_copy(update={"source_model": source}))
    return str(version.number)


def test_the_reference_is_the_served_version_or_a_stated_reason_for_none(tmp_path: Path) -> None:
    serving, root = tmp_path / "serving", tmp_path / "serving" / "keras"
    candidate = make_model(str(tmp_path / "candidate"))
    first = promotion.served_reference(str(serving), "keras", candidate)
    assert (first.model_dir, first.served_version) == (None, promotion.NOTHING_SERVED)
    assert first.note == "first version: nothing served to compare with"

    number = _serve(root)
    served = promotion.served_reference(str(serving), "keras", candidate)
    assert (served.name, served.served_version, served.same_model) == (f"served version {number}", number, False)
    assert served.model_dir == str(root / number)

    other = _serve(root, {"class_names": ["cat", "dog", "emu"]})
    classes = promotion.served_reference(str(serving), "keras", candidate)
    assert classes.model_dir is None and classes.served_version == other
    assert (
        classes.note
        == f"served version {other} has other classes (cat, dog, emu) than this model (a, b): compared with nothing"
    )

    torch = _serve(root, {"framework": "lightning"})
    framework = promotion.served_reference(str(serving), "keras", candidate)
    assert framework.model_dir is None and framework.note.startswith(f"served version {torch} is a lightning model")

    itself = _serve(root, source=candidate)
    same = promotion.served_reference(str(serving), "keras", candidate)
    assert same.same_model and same.note == f"this model is served version {itself} itself"


def test_with_labels_the_reference_is_the_stable_version_not_the_canary(tmp_path: Path) -> None:
    serving, root = tmp_path / "serving", tmp_path / "serving" / "keras"
    stable, canary = _serve(root), _serve(root)
    write_labels(str(root), {"stable": int(stable), "canary": int(canary)})
    reference = promotion.served_reference(str(serving), "keras", make_model(str(tmp_path / "candidate")))
    assert reference.served_version == stable and reference.model_dir == str(root / stable)


def test_nothing_compared_leaves_the_floor_and_finite_metrics_to_decide() -> None:
    nothing = promotion.Reference("", None, promotion.NOTHING_SERVED, "first version: nothing served to compare with")

    def never() -> Any:
        raise AssertionError("nothing to compare with: the test split is not read")

    first = promotion.judge(("keras", "/m"), {"accuracy": 0.9, "loss": 0.3}, [], nothing, never, 0.01)
    assert first == promotion.Judgement(True, nothing.note, None, promotion.NOTHING_SERVED)
    floor = ["test accuracy 55.00% is below the floor 60.00%"]
    low = promotion.judge(("keras", "/m"), {"accuracy": 0.55, "loss": 0.3}, floor, nothing, never, 0.01)
    assert (low.blessed, low.reason) == (False, floor[0])
    nan = promotion.judge(("keras", "/m"), {"accuracy": 0.9, "loss": float("nan")}, [], nothing, never, 0.01)
    assert (nan.blessed, nan.reason) == (False, "non-finite test metrics: loss")


# The real Evaluator and Pusher on real models (the Keras model of ``keras_run`` and models made beside it).


@pytest.fixture(scope="module")
def trained(keras_run) -> dict[str, Any]:
    """The run's trained Keras model (artifact and folder) and raw examples, as the Evaluator receives them."""
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts
    from tfx.utils import path_utils

    from twinflow.pipelines.run.record import read_run

    config, _ = keras_run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    record = read_run(metadata, config.pipeline_name)
    examples = standard_artifacts.Examples()
    examples.uri = record.nodes["ImageExampleGen"].output("examples").uri
    examples.split_names = '["train", "eval", "test"]'
    model = standard_artifacts.Model()
    model.uri = record.nodes["Trainer_keras"].output("model").uri
    return {"examples": examples, "model": model, "dir": path_utils.serving_model_path(model.uri)}


def _model_artifact(serving_model_dir: Path) -> Any:
    from tfx.types import standard_artifacts

    model = standard_artifacts.Model()
    model.uri = str(serving_model_dir.parent)
    return model


def _always_first_class(trained: dict[str, Any], transform_outputs: dict, root: Path) -> Any:
    """A real Keras serving model that answers the first class for every image (a third of the test images)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from twinflow.trainers.keras.export import export_serving_model

    card = read_model_card(trained["dir"])
    inputs = tf.keras.Input(shape=tuple(card.input_contract.transformed.shape), name="image_xf")
    dense = tf.keras.layers.Dense(
        len(card.class_names), kernel_initializer="zeros", bias_initializer=tf.keras.initializers.Constant([5, 0, 0])
    )
    folder = root / "Format-Serving"
    export_serving_model(
        tf.keras.Model(inputs, dense(tf.keras.layers.Flatten()(inputs))),
        tft.TFTransformOutput(transform_outputs["transform_graph"]),
        card.class_names,
        str(folder),
    )
    write_model_card(str(folder), card)
    return _model_artifact(folder)


def _evaluate(
    trained: dict[str, Any], model: Any, serving: Path, tmp_path: Path, floor: float = 0.2, drop: float = 0.01
) -> tuple[Any, Any]:
    """One real FiniteEvaluator execution on the run's test split; (evaluation, blessing)."""
    from google.protobuf import json_format
    from tfx.types import standard_artifacts

    from twinflow.components.finite_evaluator.executor import Executor
    from twinflow.core.config import EvaluationConfig
    from twinflow.core.registry import get_framework
    from twinflow.pipelines.evaluation import build_eval_config

    tag = uuid.uuid4().hex[:8]
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / f"evaluation-{tag}"), str(tmp_path / f"blessing-{tag}")
    eval_config = build_eval_config(EvaluationConfig(accuracy_floor=floor), get_framework("keras"))
    properties = {"eval_config": json_format.MessageToJson(eval_config), "example_splits": json.dumps(["test"])}
    properties |= {"serving_dir": str(serving), "model_name": "keras", "max_accuracy_drop": drop}
    Executor().Do(
        {"examples": [trained["examples"]], "model": [model]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        properties,
    )
    return evaluation, blessing


def _push_served(trained: dict[str, Any], serving: Path) -> Any:
    """The run's trained model as the served version of a serving folder of this test's own."""
    from twinflow.components.versioned_pusher.executor import push

    return push(trained["dir"], str(serving / "keras"), {})


def test_the_served_model_itself_is_blessed_and_named(trained: dict[str, Any], tmp_path: Path, capsys) -> None:
    served = _push_served(trained, tmp_path / "serving")
    _, blessing = _evaluate(trained, trained["model"], tmp_path / "serving", tmp_path)
    judgement = promotion.read(blessing)
    assert judgement == promotion.Judgement(
        True, f"this model is served version {served.number} itself", None, str(served.number)
    )
    assert f"[evaluate] keras: blessed: this model is served version {served.number} itself" in capsys.readouterr().out
    assert json.loads(Path(blessing.uri, promotion.JUDGEMENT_FILE).read_text())["blessed"] is True


def test_a_worse_model_that_clears_the_floor_is_refused_naming_the_check_both_accuracies_and_the_threshold(
    trained: dict[str, Any], transform_outputs: dict, tmp_path: Path, capsys
) -> None:
    from tfx.types import standard_artifacts

    from twinflow.components.tfma_results import load_overall_metrics
    from twinflow.components.versioned_pusher.executor import Executor as Pusher
    from twinflow.model_store.decisions import read_decisions

    serving = tmp_path / "serving"
    served = _push_served(trained, serving)
    worse = _always_first_class(trained, transform_outputs, tmp_path / "worse")
    evaluation, blessing = _evaluate(trained, worse, serving, tmp_path, floor=0.2)
    tfma_accuracy = load_overall_metrics(evaluation.uri)["accuracy"]
    assert tfma_accuracy == pytest.approx(1 / 3)  # cleared the floor of 20%
    judgement = promotion.read(blessing)
    comparison = judgement.comparison
    assert not judgement.blessed and comparison is not None and comparison["verdict"] == INFERIOR
    # Both accuracies on the same 45 images: the candidate's is TFMA's, the served one's is that model's own.
    assert comparison["test_examples"] == 45
    assert comparison["accuracy"]["candidate"]["value"] == pytest.approx(tfma_accuracy)
    candidate, reference = (100 * comparison["accuracy"][k]["value"] for k in ("candidate", "reference"))
    assert reference > 60
    assert judgement.reason == comparison["words"]
    assert judgement.reason.startswith(
        f"keras is worse than served version {served.number} by more than 1.00 pp: the interval's upper bound is "
        "below -1.00 pp "
        f"(keras {candidate:.2f}% vs served version {served.number} {reference:.2f}% on the same 45 test images; "
    )
    assert "95% CI" in judgement.reason and "McNemar p = " in judgement.reason
    assert f"[evaluate] keras: not blessed: {judgement.reason}" in capsys.readouterr().out

    # The pusher refuses it and records the judgement: its words, and the figures as numbers.
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    inputs = {"model": [worse], "model_blessing": [blessing], "model_evaluation": [evaluation]}
    Pusher().Do(inputs, {"pushed_model": [pushed]}, {"serving_dir": str(serving), "model_name": "keras"})
    assert f"[push] keras: not pushed: {judgement.reason}" in capsys.readouterr().out
    (record,) = read_decisions(str(serving / "keras"))
    assert (record["blessed"], record["pushed"], record["reason"]) == (False, False, f"not pushed: {judgement.reason}")
    assert record["comparison"] == comparison and record["served_after"] == served.number

    # Below the floor as well: both refusals, each with its figures and threshold.
    _, low = _evaluate(trained, worse, serving, tmp_path, floor=0.6)
    both = promotion.read(low).reason
    assert both.startswith("test accuracy 33.33% is below the floor 60.00%; keras is worse than served version")


def test_a_copy_of_the_served_model_on_45_images_is_too_small_to_decide_until_the_drop_allows_it(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """The same answers on every image, from a model folder that is not the served one: ±7.9 pp on 45 images."""
    served = _push_served(trained, tmp_path / "serving")
    shutil.copytree(trained["dir"], tmp_path / "copy" / "Format-Serving")
    copy = _model_artifact(tmp_path / "copy" / "Format-Serving")
    _, strict = _evaluate(trained, copy, tmp_path / "serving", tmp_path, drop=0.01)
    undecided = promotion.read(strict)
    assert not undecided.blessed and undecided.comparison["verdict"] == UNDECIDED
    assert (
        undecided.comparison["agreement"]["only_candidate_right"]
        == undecided.comparison["agreement"]["only_reference_right"]
        == 0
    )
    assert undecided.reason.startswith(
        f"test set too small to decide: the interval of keras − served version {served.number} straddles -1.00 pp"
    )
    assert "+0.00 pp, 95% CI -7.87 to +7.87 pp; McNemar p = 1)" in undecided.reason
    _, lenient = _evaluate(trained, copy, tmp_path / "serving", tmp_path, drop=0.1)
    assert promotion.read(lenient).blessed and promotion.read(lenient).comparison["verdict"] == NON_INFERIOR
