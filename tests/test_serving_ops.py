"""Rollback re-publishes an earlier version as the newest (as a push would); status says what is served and why."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tfx.utils import path_utils

from tests.test_champion import run_pusher, trained_model, was_pushed
from tests.test_versioned_pusher import make_model
from twinflow.components.finite_evaluator import promotion
from twinflow.components.versioned_pusher.executor import push
from twinflow.core import fs
from twinflow.core.errors import RollbackError, RunLockedError
from twinflow.core.locks import hold
from twinflow.core.model_card import read_model_card
from twinflow.model_store.decisions import read_decisions
from twinflow.model_store.layout import COMPLETE_MARKER, Version, complete_versions, served_version
from twinflow.model_store.operations import format_status, rollback, status

_STAMPED = {"version", "pushed_at", "decision", "rolled_back_from"}


def _contents(version: Version) -> dict[str, bytes]:
    """Every file of a version but its card and marker."""
    io = fs.gfile()
    contents = {}
    for name in fs.list_files(version.path):
        if name not in ("model.json", COMPLETE_MARKER):
            with io.GFile(fs.join(version.path, name), "rb") as handle:
                contents[name] = handle.read()
    return contents


def _pushed(tmp_path: Path, serving: Path, count: int) -> list[Version]:
    """``count`` versions of keras, each from its own model folder (a different accuracy each)."""
    root = str(serving / "keras")
    versions = []
    for i in range(count):
        source = make_model(str(tmp_path / f"model{i}"))
        Path(source, "variables", "v.data").write_text(f"weights {i}")
        versions.append(push(source, root, {"accuracy": 0.8 + i / 100, "loss": 0.5}))
    return versions


def _assert_republished(new: Version, old: Version, served_before: Version) -> None:
    assert _contents(new) == _contents(old)
    new_card, old_card = read_model_card(new.path), read_model_card(old.path)
    assert new_card.model_dump(exclude=_STAMPED) == old_card.model_dump(exclude=_STAMPED)
    assert (new_card.version, new_card.rolled_back_from) == (new.number, old.number)
    assert new_card.decision == f"rollback to {old.number} (was serving {served_before.number})"
    marker = json.loads(fs.read_text(fs.join(new.path, COMPLETE_MARKER)))
    assert marker["files"] == [name for name in fs.list_files(new.path) if name != COMPLETE_MARKER]


def test_rollback_re_publishes_the_previous_model_as_the_newest_version(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    a, b = _pushed(tmp_path, serving, 2)
    c = rollback(str(serving), "keras")
    assert c.number > b.number and served_version(str(serving / "keras")) == c
    _assert_republished(c, a, b)
    assert [v.number for v in complete_versions(str(serving / "keras"))] == [a.number, b.number, c.number]
    (record,) = read_decisions(str(serving / "keras"))
    assert {k: record[k] for k in ("pushed", "reason", "version", "served_before", "served_after")} == {
        "pushed": True,
        "reason": "rollback",
        "version": c.number,
        "served_before": b.number,
        "served_after": c.number,
    }
    assert record["rolled_back_from"] == a.number and record["evaluation"] == {"accuracy": 0.8, "loss": 0.5}
    # Rolling back again skips the re-publication of the served model: back to b.
    d = rollback(str(serving), "keras")
    _assert_republished(d, b, c)
    assert not [p for p in (serving / "keras").iterdir() if p.name.startswith(".")]


def test_rollback_to_a_named_version(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    a, _, c = _pushed(tmp_path, serving, 3)
    d = rollback(str(serving), "keras", to=a.number)
    _assert_republished(d, a, c)


def test_rollback_refuses_naming_what_there_is(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    with pytest.raises(RollbackError, match=r"keras has no complete versions under .*push a model first"):
        rollback(str(serving), "keras")
    (a,) = _pushed(tmp_path, serving, 1)
    with pytest.raises(RollbackError, match=rf"nothing to roll back to .*complete versions: {a.number}\)"):
        rollback(str(serving), "keras")
    with pytest.raises(RollbackError, match=f"version {a.number} is already served"):
        rollback(str(serving), "keras", to=a.number)
    with pytest.raises(RollbackError, match=f"version 123 is not a complete version .*complete versions: {a.number}$"):
        rollback(str(serving), "keras", to=123)
    assert RollbackError("x").exit_code == 2
    assert complete_versions(str(serving / "keras")) == [a] and read_decisions(str(serving / "keras")) == []


def test_rollback_waits_for_no_one_while_a_run_holds_the_serving_folder(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    versions = _pushed(tmp_path, serving, 2)
    with hold(str(serving)), pytest.raises(RunLockedError, match="Roll back once it has finished"):
        rollback(str(serving), "keras")
    assert complete_versions(str(serving / "keras")) == versions


def test_rollback_on_an_object_store() -> None:
    base = f"ram://twinflow-{uuid.uuid4().hex}"
    root = f"{base}/serving/keras"
    a = push(make_model(f"{base}/a"), root, {"accuracy": 0.9})
    b = push(make_model(f"{base}/b"), root, {"accuracy": 0.8})
    c = rollback(f"{base}/serving", "keras")
    assert c.path == f"{root}/{c.number}" and served_version(root) == c
    _assert_republished(c, a, b)


def test_after_a_rollback_a_challenger_is_judged_against_the_rolled_back_model(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    root = str(serving / "keras")
    assert was_pushed(run_pusher(tmp_path, serving, trained_model(tmp_path / "a"), 0.80))
    assert was_pushed(run_pusher(tmp_path, serving, trained_model(tmp_path / "b"), 0.90))
    b = served_version(root)
    rolled = rollback(str(serving), "keras")  # b misbehaves in production: back to a
    # The Evaluator compares a challenger with what is served now: the re-published a, not b.
    challenger_model = trained_model(tmp_path / "c")
    reference = promotion.served_reference(str(serving), "keras", path_utils.serving_model_path(challenger_model.uri))
    assert (reference.served_version, reference.model_dir) == (str(rolled.number), rolled.path)
    # A blessing judged against b before the rollback no longer applies; one judged against a does.
    assert not was_pushed(run_pusher(tmp_path, serving, challenger_model, 0.85, judged_against=str(b.number)))
    words = f"keras is not worse than served version {rolled.number} by more than 1.00 pp: (figures)"
    assert was_pushed(run_pusher(tmp_path, serving, challenger_model, 0.85, reason=words))
    assert read_model_card(served_version(root).path).decision == f"pushed: {words}"
    assert [r["reason"] for r in read_decisions(root)][-3:] == [
        "rollback",
        f"not pushed: judged against served version {b.number}, but version {rolled.number} is served now; "
        "run again to judge it against that",
        f"pushed: {words}",
    ]
    assert read_decisions(root)[-1]["served_before"] == rolled.number


def test_status_says_what_is_served_why_and_the_last_decision(tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    a, b = _pushed(tmp_path, serving, 2)
    c = rollback(str(serving), "keras")
    keras, lightning = status(str(serving), ["keras", "lightning"])
    assert keras["served_version"] == c.number and keras["versions_kept"] == 3
    assert keras["rolled_back_from"] == a.number
    assert keras["decision"] == f"rollback to {a.number} (was serving {b.number})"
    assert keras["evaluation"] == {"accuracy": 0.8, "loss": 0.5}
    assert keras["last_decision"]["reason"] == "rollback" and keras["last_decision"]["pushed"] is True
    assert lightning["served_version"] is None and lightning["last_decision"] is None
    text = format_status([keras, lightning])
    assert f"keras: serving version {c.number}" in text
    assert "3 complete version(s) kept" in text and "accuracy 0.8, loss 0.5" in text
    assert f"re-publishes version {a.number}" in text and "pushed: rollback" in text
    assert "lightning: nothing served" in text


def test_canary_labels_promote_rollback_and_pruning_keep_stable(tmp_path: Path) -> None:
    from twinflow.components.versioned_pusher.executor import label_push
    from twinflow.model_store.layout import read_labels, write_labels
    from twinflow.model_store.operations import promote
    from twinflow.model_store.publish import remove_oldest

    serving = tmp_path / "serving"
    first, second = _pushed(tmp_path, serving, 2)
    root = str(serving / "keras")
    assert label_push(root, second, None, canary=False) == {}  # no labels in use: the newest is served
    assert label_push(root, second, first, canary=True) == {"stable": first.number, "canary": second.number}
    assert served_version(root) == first  # the champion, drift baseline and status read stable
    with pytest.raises(RollbackError, match="no canary"):
        write_labels(root, {"stable": first.number})
        promote(str(serving), "keras")
    write_labels(root, {"stable": first.number, "canary": second.number})
    assert promote(str(serving), "keras") == {"stable": second.number}
    assert read_decisions(root)[-1]["reason"] == "promote"
    rolled = rollback(str(serving), "keras", to=first.number)
    assert read_labels(root) == {"stable": rolled.number}  # a rollback ends any canary
    more = _pushed(tmp_path / "more", serving, 3)
    write_labels(root, {"stable": first.number, "canary": more[-1].number})
    removed = remove_oldest(root, keep=2)
    assert first.number not in removed and first.number in [v.number for v in complete_versions(root)]
    row = status(str(serving), ["keras"])[0]
    assert row["served_version"] == first.number and row["labels"]["canary"] == more[-1].number
    assert "labels:   canary → " in format_status([row])
