"""Frameworks live in one place: a third one registered by one entry reaches the CLI, the pipeline and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dummy_framework import PLUGIN
from tests.helpers import pushed_versions, tiny_config
from twinflow.core.config import load_config
from twinflow.core.registry import FRAMEWORKS, framework_choices, resolve_frameworks
from twinflow.pipelines.cli.main import build_parser


@pytest.fixture
def dummy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FRAMEWORKS, PLUGIN.name, PLUGIN)


def test_a_registered_framework_is_a_choice_everywhere(dummy_registered, capsys: pytest.CaptureFixture) -> None:
    assert "dummy" in framework_choices()
    assert resolve_frameworks("all") == ("keras", "lightning", "dummy")
    assert load_config(overrides={"framework": "keras,dummy"}).frameworks == ("keras", "dummy")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "keras, lightning, dummy, both, all" in " ".join(capsys.readouterr().out.split())


def test_an_unregistered_framework_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown framework\(s\) \['dummy'\]"):
        resolve_frameworks("keras,dummy")


@pytest.mark.e2e
def test_a_third_framework_trains_evaluates_pushes_and_reports(
    dummy_registered, tiny_folders: Path, tmp_path: Path
) -> None:
    from twinflow.pipelines.run.local import run_local

    config = tiny_config(
        tmp_path, tiny_folders, framework="dummy", **{"training.epochs": 3, "evaluation.accuracy_floor": 0.5}
    )
    report = run_local(config).to_json()
    assert {"Trainer_dummy", "Evaluator_dummy", "Pusher_dummy"} <= {c["id"] for c in report["components"]}
    (row,) = report["frameworks"]
    assert row["framework"] == "dummy" and row["architecture"] == "softmax_regression"
    assert row["blessed"] and row["pushed"] and row["test_accuracy"] >= 0.5
    (version,) = pushed_versions(config.serving_dir, "dummy")
    assert row["pushed_to"] == str(version)
