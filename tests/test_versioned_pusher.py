"""Versioned, complete-or-invisible, idempotent pushes, locally and through TensorFlow's file layer."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tensorflow as tf

from tests.helpers import make_card
from twinflow.components.versioned_pusher.executor import STAGING_PREFIX, find_pushed, next_version, push
from twinflow.core import fs
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import read_model_card
from twinflow.model_store.layout import COMPLETE_MARKER, complete_versions, is_complete, version_numbers


def make_model(root: str) -> str:
    """A model folder through TensorFlow's file layer (``root`` may be local or ram://)."""
    io = tf.io.gfile
    io.makedirs(fs.join(root, "variables"))
    fs.write_text(fs.join(root, "saved_model.pb"), "x" * 100)
    fs.write_text(fs.join(root, "variables", "v.data"), "y" * 100)
    fs.write_text(fs.join(root, "model.json"), make_card().model_dump_json())
    return root


def test_push_creates_a_complete_version_with_metrics(tmp_path: Path) -> None:
    source = make_model(str(tmp_path / "src"))
    root = str(tmp_path / "serving" / "keras")
    version = push(source, root, {"accuracy": 0.9})
    assert Path(version.path).parent == Path(root) and Path(version.path).name == str(version.number)
    card = read_model_card(version.path)
    assert (card.version, card.source_model, card.evaluation) == (version.number, source, {"accuracy": 0.9})
    assert card.pushed_at and card.training == make_card().training
    assert Path(version.path, "variables", "v.data").read_text() == "y" * 100
    marker = json.loads(Path(version.path, COMPLETE_MARKER).read_text())
    assert marker["files"] == ["model.json", "saved_model.pb", "variables/v.data"]
    assert find_pushed(root, source) == version
    assert find_pushed(root, str(tmp_path / "other")) is None
    assert not list(Path(root).glob(f"{STAGING_PREFIX}*"))


def test_versions_strictly_increase(tmp_path: Path) -> None:
    root = str(tmp_path / "m")
    Path(root, "99999999999").mkdir(parents=True)  # an incomplete folder still holds its number
    assert next_version(root) == 100000000000
    first = push(make_model(str(tmp_path / "a")), root, {})
    second = push(make_model(str(tmp_path / "b")), root, {})
    assert second.number > first.number > 99999999999


def test_pushes_in_the_same_second_take_the_next_free_number(tmp_path: Path) -> None:
    root = str(tmp_path / "serving" / "keras")
    sources = [make_model(str(tmp_path / f"m{i}")) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(lambda source: push(source, root, {}).number, sources))
    assert len(set(numbers)) == 4
    assert [v.number for v in complete_versions(root)] == sorted(numbers)
    assert sorted(read_model_card(v.path).source_model for v in complete_versions(root)) == sorted(sources)


def test_a_failed_push_leaves_no_version_and_stale_staging_is_cleared(tmp_path: Path) -> None:
    root = tmp_path / "serving" / "keras"
    (root / f"{STAGING_PREFIX}123-999999999-ab").mkdir(parents=True)  # left by a crashed process
    live = root / f"{STAGING_PREFIX}124-{os.getppid()}-cd"  # a push in progress in a live process
    live.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"x")  # no model.json: the push must fail midway
    with pytest.raises(ModelCardError, match="no model card"):
        push(str(broken), str(root), {})
    assert list(root.iterdir()) == [live]


def test_non_finite_metrics_are_never_pushed(tmp_path: Path) -> None:
    root = tmp_path / "serving" / "keras"
    with pytest.raises(ValueError, match=r"non-finite evaluation metrics \['loss'\]"):
        push(make_model(str(tmp_path / "src")), str(root), {"accuracy": 0.5, "loss": float("nan")})
    assert not root.exists() or list(root.iterdir()) == []
    # An undefined per-class precision (a class never predicted) is left out of the card, not refused.
    version = push(make_model(str(tmp_path / "ok")), str(root), {"accuracy": 0.9, "precision_class_1": float("nan")})
    assert read_model_card(version.path).evaluation == {"accuracy": 0.9}


def test_a_push_to_an_object_store_writes_the_marker_last_and_readers_skip_versions_without_it() -> None:
    base = f"ram://twinflow-{uuid.uuid4().hex}"
    source = make_model(f"{base}/trainer/model")
    root = f"{base}/serving/keras"
    version = push(source, root, {"accuracy": 0.75})
    assert version.path == f"{root}/{version.number}"
    marker = json.loads(fs.read_text(f"{version.path}/{COMPLETE_MARKER}"))
    # What the server's poll compares remotely (ram:// keeps no times, so 0; the call itself must work).
    assert fs.modified_ns(f"{version.path}/{COMPLETE_MARKER}") >= 0
    # Written last: it lists every other file of the version, each already there.
    assert marker["files"] == [name for name in fs.list_files(version.path) if name != COMPLETE_MARKER]
    assert read_model_card(version.path).evaluation == {"accuracy": 0.75}

    # A version being written (no marker yet) is invisible to every reader but keeps its number.
    half_written = f"{root}/{version.number + 5}"
    tf.io.gfile.makedirs(half_written)
    tf.io.gfile.copy(f"{version.path}/model.json", f"{half_written}/model.json")
    assert not is_complete(half_written)
    assert [v.number for v in complete_versions(root)] == [version.number]
    assert version_numbers(root) == [version.number, version.number + 5]
    assert find_pushed(root, source) == version
    tf.io.gfile.remove(f"{version.path}/{COMPLETE_MARKER}")
    assert find_pushed(root, source) is None  # dedup no longer trusts it: the model would be pushed again
    again = push(source, root, {"accuracy": 0.75})
    assert again.number == version.number + 6  # never reuses a number, complete or not
