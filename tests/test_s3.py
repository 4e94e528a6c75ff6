"""s3:// through TensorFlow's file layer (tensorflow-io) and Beam (boto3), against a local moto server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import tiny_config
from twinflow.core import fs
from twinflow.core.model_card import read_model_card
from twinflow.model_store.layout import COMPLETE_MARKER, complete_versions

pytestmark = pytest.mark.slow


def test_a_push_to_s3_is_complete_marked_and_found(s3: str, tmp_path: Path) -> None:
    from tests.test_versioned_pusher import make_model
    from twinflow.components.versioned_pusher.executor import find_pushed, push

    source = make_model(str(tmp_path / "model"))
    root = f"{s3}/unit/serving/keras"
    version = push(source, root, {"accuracy": 0.8})
    assert version.path == f"{root}/{version.number}"
    assert [v.number for v in complete_versions(root)] == [version.number]
    assert json.loads(fs.read_text(f"{version.path}/{COMPLETE_MARKER}"))["files"] == [
        "model.json",
        "saved_model.pb",
        "variables/v.data",
    ]
    assert read_model_card(version.path).evaluation == {"accuracy": 0.8}
    assert find_pushed(root, source) == version


@pytest.mark.e2e
def test_a_whole_pipeline_runs_with_its_root_and_serving_folder_on_s3(
    s3: str, tiny_folders: Path, tmp_path: Path
) -> None:
    from twinflow.pipelines.run.local import run_local

    config = tiny_config(
        tmp_path,
        tiny_folders,
        pipeline_root=f"{s3}/pipeline",
        serving_dir=f"{s3}/serving",
        **{"training.epochs": 2, "evaluation.accuracy_floor": 0.4},
    )
    report = run_local(config).to_json()
    states = {c["id"]: c["state"] for c in report["components"]}
    assert all(state == "COMPLETE" for state in states.values()), states
    (row,) = report["frameworks"]
    assert row["blessed"] and row["pushed"]
    (version,) = complete_versions(f"{s3}/serving/keras")
    assert row["pushed_to"] == version.path
    card = read_model_card(version.path)
    assert card.framework == "keras" and card.evaluation["accuracy"] == pytest.approx(row["test_accuracy"])
    assert fs.gfile().exists(f"{version.path}/saved_model.pb")
    reports = f"{s3}/pipeline/reports/{report['run_id'].replace(':', '-')}"
    assert json.loads(fs.read_text(f"{reports}/report.json"))["frameworks"][0]["pushed_to"] == version.path
    assert fs.gfile().exists(f"{reports}/per_class_accuracy.png")
    assert fs.gfile().glob(f"{s3}/pipeline/Transform/transformed_examples/*/Split-train/*")
    # Nothing changed: the second run reads the last run's record from the bucket and does nothing.
    assert run_local(config).to_json()["unchanged_since"] == report["run_id"]
