"""--repeats: one model per seed, each judged by the same Evaluator, only the best by eval-split accuracy pushed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from tests.helpers import make_card, pushed_versions, tiny_config
from twinflow.core.config import TrainingConfig, load_config
from twinflow.core.errors import ConfigError
from twinflow.core.repeats import Candidate, choose_best, describe_choice, node_id, parse_node_id, repeat_seed
from twinflow.core.statistics import compare_seeds
from twinflow.pipelines.report.build import seed_variation
from twinflow.pipelines.report.markdown import to_markdown


def test_node_ids_keep_the_single_run_names_and_parse_back() -> None:
    assert node_id("Trainer", "keras") == "Trainer_keras"
    assert node_id("Trainer", "keras", 3) == "Trainer_keras_r3"
    assert parse_node_id("Evaluator_lightning_r12") == ("Evaluator", "lightning", 12)
    assert parse_node_id("Pusher_keras") == ("Pusher", "keras", 1)
    assert parse_node_id("Transform") is None
    assert [repeat_seed(42, r) for r in (1, 2, 3)] == [42, 43, 44]
    with pytest.raises(ValueError, match="count from 1"):
        node_id("Trainer", "keras", 0)


def test_the_choice_is_the_blessed_repeat_with_the_best_eval_accuracy() -> None:
    candidates = [
        Candidate("a", 42, 0.90, True),
        Candidate("b", 43, 0.95, False),  # best eval accuracy, but the Evaluator refused it
        Candidate("c", 44, 0.92, True),
        Candidate("d", 45, 0.92, True),  # a tie goes to the lower seed
    ]
    chosen = choose_best(candidates)
    assert chosen is not None and chosen.item == "c"
    line = describe_choice(chosen, candidates)
    assert line.startswith("seed 44 is the best of 4 repeats") and "seed 43 eval 95.00% (not blessed)" in line
    refused = [Candidate("a", 42, 0.9, False)]
    assert choose_best(refused) is None and describe_choice(None, refused).startswith("no repeat of 1 blessed")


def test_repeats_is_a_checked_config_key_and_kubeflow_refuses_it() -> None:
    assert load_config(overrides={"repeats": 3}).repeats == 3
    with pytest.raises(ConfigError, match="repeats"):
        load_config(overrides={"repeats": 0})
    from twinflow.pipelines.kubeflow.compiler import compile_spec

    config = load_config(overrides={"repeats": 2, "kubeflow": {"image": "twinflow:test"}})
    with pytest.raises(ConfigError, match="repeats: 2 is for local runs"):
        compile_spec(config)


def test_seed_comparison_is_welchs_test() -> None:
    keras, lightning = [0.915, 0.912, 0.918], [0.905, 0.903, 0.904]
    result = compare_seeds({"keras": keras, "lightning": lightning})
    expected = stats.ttest_ind(keras, lightning, equal_var=False).pvalue
    assert result["welch_p_value"] == pytest.approx(expected)
    assert result["difference_of_means"] == pytest.approx(0.011)
    assert result["accuracy"]["keras"]["sd"] == pytest.approx(0.003)
    assert result["exceeds_seed_variation"] and "exceeds the seed-to-seed variation" in result["verdict"]
    close = compare_seeds({"keras": [0.91, 0.92, 0.90], "lightning": [0.915, 0.905, 0.91]})
    assert not close["exceeds_seed_variation"] and "does not exceed" in close["verdict"]
    assert seed_variation([0.9, None, 0.8]).model_dump() == {
        "n": 2,
        "mean": pytest.approx(0.85),
        "sd": pytest.approx(0.0707, 1e-3),
    }


def _model(root: Path, artifact_id: int, seed: int, eval_accuracy: float):
    from tfx.types import standard_artifacts

    from twinflow.core.model_card import SplitMetrics, write_model_card

    card = make_card()
    training = card.training.model_copy(
        update={"config": TrainingConfig(seed=seed), "eval": SplitMetrics(accuracy=eval_accuracy, loss=0.3)}
    )
    model = standard_artifacts.Model()
    model.id, model.uri = artifact_id, str(root / f"model{artifact_id}")
    write_model_card(str(Path(model.uri) / "Format-Serving"), card.model_copy(update={"training": training}))
    return model


def _marked(kind, model_id: int, blessed: int | None = None):
    artifact = kind()
    artifact.set_int_custom_property("current_model_id", model_id)
    if blessed is not None:
        artifact.set_int_custom_property("blessed", blessed)
    return artifact


def test_the_pusher_narrows_its_inputs_to_the_chosen_repeat(tmp_path: Path) -> None:
    from tfx.types import standard_artifacts

    from twinflow.components.versioned_pusher.executor import choose_repeat

    models = [_model(tmp_path, 7, 42, 0.91), _model(tmp_path, 9, 43, 0.93), _model(tmp_path, 8, 44, 0.97)]
    blessings = [_marked(standard_artifacts.ModelBlessing, i, b) for i, b in ((8, 0), (9, 1), (7, 1))]
    evaluations = [_marked(standard_artifacts.ModelEvaluation, i) for i in (9, 7, 8)]
    inputs = {"model": models, "model_blessing": blessings, "model_evaluation": evaluations}
    narrowed, line = choose_repeat(inputs)
    assert [a.get_int_custom_property("current_model_id") for a in narrowed["model_blessing"]] == [9]
    assert narrowed["model"] == [models[1]] and narrowed["model_evaluation"] == [evaluations[0]]
    assert line.startswith("seed 43 is the best of 3") and "seed 44 eval 97.00% (not blessed)" in line
    single = {"model": models[:1], "model_blessing": blessings[2:], "model_evaluation": evaluations[1:2]}
    assert choose_repeat(single) == (single, "")
    with pytest.raises(RuntimeError, match="expected one model_evaluation"):
        choose_repeat({**inputs, "model_evaluation": evaluations[1:]})  # the chosen one's is missing


def test_the_markdown_lists_every_repeat_and_the_verdict() -> None:
    repeats = [
        {"seed": 42, "eval_accuracy": 0.9, "test_accuracy": 0.88, "blessed": True, "epochs_run": 3, "chosen": False},
        {"seed": 43, "eval_accuracy": 0.92, "test_accuracy": 0.89, "blessed": True, "epochs_run": 3, "chosen": True},
    ]
    row = {"framework": "keras", "repeats": repeats, "seed_variation": seed_variation([0.88, 0.89]).model_dump()}
    seeds = compare_seeds({"keras": [0.88, 0.89], "lightning": [0.87, 0.875]})
    markdown = to_markdown(
        {"run_id": "r", "wall_seconds": 1.0, "components": [], "frameworks": [row], "seed_comparison": seeds}
    )
    assert "| keras | 43 | 92.00% | 89.00% | yes | yes |" in markdown
    assert "test accuracy 88.50% ± 0.71 pp (mean ± sd, n = 2)" in markdown and seeds["verdict"] in markdown


@pytest.mark.e2e
def test_a_run_with_repeats_trains_every_seed_and_pushes_the_best_by_eval_accuracy(
    tmp_path: Path, tiny_folders: Path
) -> None:
    from twinflow.pipelines.run.local import run_local

    config = tiny_config(tmp_path, tiny_folders, framework="lightning", repeats=3, **{"evaluation.accuracy_floor": 0.5})
    report = run_local(config).to_json()
    states = {c["id"]: c["state"] for c in report["components"]}
    for repeat in (1, 2, 3):
        assert states[node_id("Trainer", "lightning", repeat)] == "COMPLETE", states
        assert states[node_id("Evaluator", "lightning", repeat)] == "COMPLETE", states
    (row,) = report["frameworks"]
    assert [r["seed"] for r in row["repeats"]] == [42, 43, 44]  # each repeat trained with its own seed
    assert all(r["test_accuracy"] is not None for r in row["repeats"])  # and evaluated by the same Evaluator
    blessed = [r for r in row["repeats"] if r["blessed"]]
    best = max(blessed, key=lambda r: (r["eval_accuracy"], -r["seed"]))
    assert [r["chosen"] for r in row["repeats"]] == [r is best for r in row["repeats"]]
    assert row["seed"] == best["seed"] and row["test_accuracy"] == best["test_accuracy"]
    (version,) = pushed_versions(config.serving_dir, "lightning")  # one push, of the chosen repeat
    card = json.loads((version / "model.json").read_text())
    assert card["training"]["config"]["seed"] == best["seed"]
    assert card["evaluation"]["accuracy"] == pytest.approx(best["test_accuracy"])
    assert row["pushed"] and row["push_choice"].startswith(f"seed {best['seed']} is the best of 3 repeats")
    variation = row["seed_variation"]
    assert variation["n"] == 3 and variation["mean"] == pytest.approx(
        sum(r["test_accuracy"] for r in row["repeats"]) / 3
    )
    folder = Path(config.pipeline_root, "reports", report["run_id"].replace(":", "-"))
    assert "## Seed-to-seed variation" in (folder / "report.md").read_text()
    recorded = json.loads((folder / "report.json").read_text())
    assert recorded["config"]["repeats"] == 3 and recorded["data_fingerprint"]
    assert 'alt="Seed-to-seed variation"' in (folder / "report.html").read_text()  # the per-seed plot
