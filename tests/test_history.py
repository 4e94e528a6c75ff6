"""``history`` from the serving folder alone (runs elsewhere, e.g. Kubeflow): a version goes to the run that pushed it.

Real pushes (``push``: staging, rename, marker) and real decision records; no ML Metadata store,
as on a machine that only sees the serving volume.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import tiny_config
from tests.image_data import write_image_folders
from tests.test_versioned_pusher import make_model
from twinflow.components.versioned_pusher.executor import push
from twinflow.core.model_card import TrainingData
from twinflow.model_store.decisions import write_decision
from twinflow.model_store.published import pushes_on_span
from twinflow.pipelines.retraining.history import format_history, history


def _push(tmp_path: Path, serving: Path, run_id: str, span: int, index: int) -> int:
    source = make_model(str(tmp_path / f"model{index}"))
    Path(source, "variables", "v.data").write_text(f"weights {index}")
    data = TrainingData(input_base="/data", spans=[span], run_id=run_id)
    return push(source, str(serving / "keras"), {"accuracy": 0.9 + index / 100, "loss": 0.3}, data=data).number


def _record(serving: Path, run_id: str, span: int, **values: object) -> None:
    write_decision(
        str(serving / "keras"),
        {"framework": "keras", "run_id": run_id, "blessed": True, "spans": [span], "evaluation": {}, **values},
    )


def test_a_run_killed_between_its_push_and_its_record_is_credited_from_the_card(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    first = _push(tmp_path, serving, "kfp-run-1", 1, 0)
    _record(serving, "kfp-run-1", 1, pushed=True, version=first, reason="pushed: first version", served_after=first)
    time.sleep(1.1)  # runs are seconds apart; a card's push time has whole seconds
    killed = _push(tmp_path, serving, "kfp-run-2", 2, 1)  # killed here: no decision record
    time.sleep(1.1)
    # The next run trains the same model (cached), finds it already there, and records that.
    _record(
        serving,
        "kfp-run-3",
        2,
        pushed=False,
        version=killed,
        reason=f"already pushed as version {killed}",
        served_after=killed,
    )
    write_image_folders(tmp_path / "data", ["a", "b"], 2)
    config = tiny_config(tmp_path, tmp_path / "data", serving_dir=serving, metadata_path=tmp_path / "none.sqlite")

    rows = {row["run_id"]: row for row in history(config)}
    assert rows["kfp-run-1"]["frameworks"]["keras"]["pushed_version"] == first
    stopped = rows["kfp-run-2"]
    assert stopped["frameworks"]["keras"]["pushed_version"] == killed and stopped["served_after"]["keras"] == killed
    assert stopped["outcome"] == "stopped after its push, before recording its decision" and stopped["spans"] == [2]
    later = rows["kfp-run-3"]
    assert later["frameworks"]["keras"]["pushed_version"] is None and later["served_after"]["keras"] == killed
    assert list(rows) == ["kfp-run-1", "kfp-run-2", "kfp-run-3"]  # in time order
    assert f"| {killed} | {killed} |" in format_history(list(rows.values()))

    # What retrain --redo-span asks: span 2 pushed, by the killed run (known from the card alone).
    (push_on_2,) = pushes_on_span(str(serving), ["keras"], 2)
    assert (push_on_2.number, push_on_2.run_id, push_on_2.from_card) == (killed, "kfp-run-2", True)
