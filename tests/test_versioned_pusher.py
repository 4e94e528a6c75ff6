"""Atomic, versioned, idempotent pushes."""

import json
from pathlib import Path

import pytest

from components.versioned_pusher.executor import STAGING_PREFIX, find_pushed, next_version, push_atomically


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"x" * 100)
    (path / "variables").mkdir()
    (path / "variables" / "v.data").write_bytes(b"y" * 100)
    (path / "model.json").write_text(json.dumps({"framework": "keras"}))
    return path


def test_push_creates_a_complete_version_with_metrics(tmp_path: Path) -> None:
    source = _model(tmp_path / "src")
    root = tmp_path / "serving" / "keras"
    final = push_atomically(source, root, {"evaluation": {"accuracy": 0.9}})
    assert final.parent == root and final.name.isdigit()
    card = json.loads((final / "model.json").read_text())
    assert card == {
        "framework": "keras",
        "evaluation": {"accuracy": 0.9},
        "version": int(final.name),
        "source_model": str(source),
    }
    assert (final / "variables" / "v.data").read_bytes() == b"y" * 100
    assert find_pushed(root, source) == final
    assert find_pushed(root, tmp_path / "other") is None


def test_versions_strictly_increase(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "99999999999").mkdir(parents=True)
    assert next_version(root) == 100000000000
    first = push_atomically(_model(tmp_path / "a"), root, {})
    second = push_atomically(_model(tmp_path / "b"), root, {})
    assert int(second.name) > int(first.name)


def test_a_failed_push_leaves_no_version_and_stale_staging_is_cleared(tmp_path: Path) -> None:
    root = tmp_path / "serving" / "keras"
    (root / f"{STAGING_PREFIX}123-1").mkdir(parents=True)  # left by a crash
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"x")  # no model.json: the push must fail midway
    with pytest.raises(FileNotFoundError, match="no model card"):
        push_atomically(broken, root, {})
    assert list(root.iterdir()) == []
