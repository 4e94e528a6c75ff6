"""prune-runs with no run to prune: old scheduler tick files go, nothing else (runs: tests/test_retrain.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from twinflow.core.config import load_config
from twinflow.core.errors import ConfigError
from twinflow.pipelines.run.retention import format_plan, prune_runs


def _file(path: Path, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x" * 100)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


def test_tick_files_older_than_the_limit_go_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "pipeline"
    config = load_config(
        overrides={
            "pipeline_root": str(root),
            "metadata_path": str(tmp_path / "metadata.sqlite"),  # no store: no runs recorded
            "serving_dir": str(tmp_path / "serving"),
        }
    )
    old = [
        _file(root / "schedule" / "logs" / f"tick-2026010{i}-030000{suffix}", 20)
        for i in (1, 2)
        for suffix in (".log", ".summary.json")
    ]
    recent = _file(root / "schedule" / "logs" / "tick-20261201-030000.log", 1)
    config_file = _file(root / "schedule" / "config.yaml", 20)
    run_log = _file(root / "logs" / "2026-01-01T03-00-00.000000.log", 20)  # no store to say whose: kept

    dry = prune_runs(config, keep_runs=3, keep_tick_days=14, dry_run=True)
    assert sorted(r.path for r in dry.removals) == sorted(map(str, old)) and all(p.exists() for p in old)
    line = format_plan(dry, 3, dry_run=True)
    assert line.startswith("prune-runs: would remove 4 tick files (0.0 MB) of 0 older run(s)")
    assert all(f"  tick file: {p} (0 KB)" in line for p in old)

    done = prune_runs(config, keep_runs=3, keep_tick_days=14)
    assert done.count("tick file") == 4 and not any(p.exists() for p in old)
    assert recent.exists() and config_file.exists() and run_log.exists()


@pytest.mark.parametrize(
    ("keep_runs", "days", "message"), [(0, 14, "--keep-runs must be at least 1"), (1, -1, "--keep-tick-days")]
)
def test_limits_that_would_remove_the_last_run_are_refused(
    tmp_path: Path, keep_runs: int, days: float, message: str
) -> None:
    config = load_config(overrides={"pipeline_root": str(tmp_path), "metadata_path": str(tmp_path / "m.sqlite")})
    with pytest.raises(ConfigError, match=message):
        prune_runs(config, keep_runs=keep_runs, keep_tick_days=days)
