"""Retraining end to end: spans arriving one after another through the real command line and pipeline.

One data root receives spans in order; each step runs ``twinflow retrain`` for real
(LocalDagRunner, Beam, ML Metadata) in its own process, as a scheduler would:
span 1 trains and pushes; no new span runs nothing; span 2 (similar) pushes only if not
worse; a label shift and a brightness shift stop at the drift gate with served models
unchanged; shuffled labels are not pushed; a rollback is followed by a retrain that
compares against what is served after it; ``history``, ``status`` and ``lineage`` tell it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import pushed_versions
from tests.image_data import write_image_folders
from twinflow.core.locks import hold
from twinflow.core.model_card import read_model_card
from twinflow.model_store.decisions import read_decisions
from twinflow.model_store.layout import served_version

pytestmark = [pytest.mark.e2e]
CLASSES = ("circle", "stripes")  # told apart at once: accuracy steady at 100%, so pushes are predictable
PER_CLASS = 120  # a few hundred images per span: similar spans stay well inside the drift thresholds


def twinflow(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twinflow.pipelines.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )


def _span(root: Path, number: int, counts: dict[str, int] | None = None, seed: int | None = None) -> Path:
    folder = root / "data" / f"span-{number}"
    counts = counts or dict.fromkeys(CLASSES, PER_CLASS)
    for index, (name, count) in enumerate(counts.items()):
        write_image_folders(folder, [name], count, seed=(seed if seed is not None else number) * 10 + index)
    # write_image_folders writes train/<class>; spans hold class folders straight away too (both layouts work)
    return folder


def _brighten(folder: Path, offset: int) -> None:
    for path in folder.rglob("*.png"):
        pixels = np.asarray(Image.open(path), dtype=np.int16)
        Image.fromarray(np.clip(pixels + offset, 0, 255).astype(np.uint8)).save(path)


def _shuffle_labels(folder: Path, seed: int) -> None:
    """Move every image into a random class folder: the labels no longer say anything."""
    rng = np.random.default_rng(seed)
    images = sorted(folder.rglob("*.png"))
    labels = rng.permutation([path.parent.name for path in images])  # the same class shares, wrong classes
    staging = folder.parent / f"{folder.name}-shuffling"
    for path, label in zip(images, labels, strict=True):
        target = staging / "train" / str(label) / f"{path.parent.name}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    shutil.rmtree(folder)
    staging.rename(folder)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from twinflow.pipelines.schema_draft import draft_schema

    root = tmp_path_factory.mktemp("retrain")
    _span(root, 1)
    draft_schema(root / "data" / "span-1", root / "schema.pbtxt")
    return root


def _args(root: Path, *extra: str) -> list[str]:
    return [
        "--data-root",
        str(root / "data"),
        "--schema",
        str(root / "schema.pbtxt"),
        "--framework",
        "keras",
        "--architecture",
        "tiny_cnn",
        "--epochs",
        "3",
        "--lr-schedule",
        "constant",
        "--learning-rate",
        "0.003",
        "--batch-size",
        "16",
        "--accuracy-floor",
        "0.6",
        *_read_args(root),
        *extra,
    ]


def _read_args(root: Path) -> list[str]:
    return [
        "--serving-dir",
        str(root / "serving"),
        "--pipeline-root",
        str(root / "pipeline"),
        "--metadata-path",
        str(root / "metadata.sqlite"),
    ]


def _served(root: Path) -> int | None:
    version = served_version(str(root / "serving" / "keras"))
    return version.number if version else None


def _retrain(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return twinflow("retrain", *_args(root, *extra))


def test_spans_arriving_one_after_another(root: Path) -> None:
    # Span 1: trained, blessed, pushed; the card says which span it was trained on.
    first = _retrain(root)
    assert first.returncode == 0, first.stdout + first.stderr
    v1 = _served(root)
    assert v1 is not None
    card = read_model_card(str(root / "serving" / "keras" / str(v1)))
    assert card.data is not None and card.data.spans == [1]
    assert (root / "serving" / "keras" / str(v1) / "data_statistics" / "FeatureStats.pb").is_file()

    # No new span: nothing runs, exit 0, said in words.
    started = time.perf_counter()
    again = _retrain(root)
    took = time.perf_counter() - started
    assert again.returncode == 0, again.stderr
    assert "no new data" in again.stdout and "span 1" in again.stdout
    print(f"retrain with no new data: {took:.1f} s")

    # Span 2 arrives. A run killed (SIGKILL, in a real process) in training, and another
    # killed in the push, leave the served model and its files as they were.
    _span(root, 2)
    serving = root / "serving" / "keras"
    files_before = _files(serving)
    command = [sys.executable, "-m", "twinflow.pipelines.cli", "retrain", *_args(root)]
    trainer_dir = root / "pipeline" / "Trainer_keras"
    earlier = {p for p in trainer_dir.rglob("*") if p.is_dir()}
    training = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(training, lambda: any(p.is_dir() and p not in earlier for p in trainer_dir.rglob("*")))
    assert _served(root) == v1 and _files(serving) == files_before
    env = {**os.environ, "TWINFLOW_PAUSE_BEFORE_PUBLISH": "120"}
    # Any blessed model is pushed with this tolerance, so the run surely reaches the push.
    pushing = subprocess.Popen(
        [*command, "--max-accuracy-drop", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    _kill_when(pushing, lambda: any(serving.glob(".staging-*")))
    assert list(serving.glob(".staging-*")), "the push was killed with its staging folder in place"
    assert _served(root) == v1 and _files(serving) == files_before

    # The next retrain completes (cleaning the dead push's staging folder); pushed only if shown not worse
    # than v1 on span 2's test images (both models predict them): else refused, saying why with the figures.
    second = _retrain(root)
    assert second.returncode == 0, second.stdout + second.stderr
    v2 = _served(root)
    card2 = read_model_card(str(root / "serving" / "keras" / str(v2)))
    (decision,) = [r for r in read_decisions(str(serving)) if r["run_id"] and r["spans"] == [2]]
    comparison = decision["comparison"]
    assert comparison["names"] == {"candidate": "keras", "reference": f"served version {v1}"}
    if v2 != v1:
        assert card2.data.spans == [2] and comparison["verdict"] == "non-inferior"
    else:
        assert comparison["verdict"] in ("inferior", "test set too small to decide")
        assert f"[push] keras: not pushed: {comparison['words']}" in second.stdout + second.stderr
    assert not list(serving.glob(".staging-*"))

    # Span 3, a shifted label distribution: the drift gate stops it, naming feature, distance and threshold.
    _span(root, 3, counts={"circle": 216, "stripes": 24})
    shifted = _retrain(root)
    assert shifted.returncode == 3, shifted.stdout + shifted.stderr
    assert "drift" in shifted.stderr and "label_name" in shifted.stderr and "threshold" in shifted.stderr
    assert _served(root) == v2
    # The stopped run keeps its report and drift.json: every feature's distance, the ones that did not drift too.
    kept = re.search(r"report of the stopped run written to (\S+) ", shifted.stdout)
    assert kept, shifted.stdout
    drift = json.loads((Path(kept.group(1)) / "drift.json").read_text())
    measured = {m["feature"]: m for m in drift["measured"]}
    assert drift["verdict"] == "drift" and measured["label_name"]["distance"] > measured["label_name"]["threshold"]
    assert measured["image_height"]["distance"] <= measured["image_height"]["threshold"]
    assert "**Stopped at DriftGate:**" in (Path(kept.group(1)) / "report.md").read_text()

    # Span 4, brighter images: stopped too, naming the mean intensity.
    _brighten(_span(root, 4), 90)
    bright = _retrain(root)
    assert bright.returncode == 3, bright.stdout + bright.stderr
    assert "image_mean" in bright.stderr
    assert _served(root) == v2

    # Span 5, shuffled labels (no drift in what is measured, but nothing to learn): not pushed.
    # A person lets it through the drift gate (--accept-drift), as one would after reviewing it.
    _shuffle_labels(_span(root, 5), seed=5)
    regression = _retrain(root, "--accept-drift")
    assert regression.returncode == 0, regression.stdout + regression.stderr
    assert _served(root) == v2

    # Rollback: span 1's model is re-published as the newest version.
    before = [p.name for p in pushed_versions(root / "serving", "keras")]
    rolled = twinflow("rollback", "--framework", "keras", "--to", str(v1), *_read_args(root)[:2])
    if v2 == v1:
        assert rolled.returncode == 2, rolled.stdout + rolled.stderr  # nothing earlier to roll back to
    else:
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        v3 = _served(root)
        assert v3 not in (v1, v2) and str(v3) not in before
        assert read_model_card(str(root / "serving" / "keras" / str(v3))).rolled_back_from == v1

    status = twinflow("status", *_read_args(root)[:2], "--framework", "keras", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["served_version"] == _served(root)

    # A new similar span after the rollback is judged against what is served now.
    _span(root, 6)
    after = _retrain(root)
    assert after.returncode == 0, after.stdout + after.stderr

    history = twinflow("history", *_read_args(root), "--json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    runs = [r for r in rows if r["run_id"]]
    assert [r["spans"] for r in runs] == [[1], [2], [2], [2], [3], [4], [5], [6]]
    assert [r["outcome"].split(" (")[0] for r in runs[1:3]] == ["did not finish"] * 2  # the two killed runs
    assert [r["drift"].split(" (")[0] for r in runs][4:6] == ["drift: stopped", "drift: stopped"]
    assert "label_name" in runs[4]["drift"] and "image_mean" in runs[5]["drift"]  # named from the kept drift.json
    regressed = runs[6]["frameworks"]["keras"]  # shuffled labels: below the floor, or below the served model
    assert regressed["pushed_version"] is None and runs[6]["served_after"]["keras"] == v2
    assert regressed["blessed"] is False or "below the served version" in regressed["decision"]
    assert runs[6]["drift"] in ("drift accepted", "no drift")
    assert all(r["served_after"]["keras"] == v2 for r in runs[3:7])
    assert runs[-1]["served_after"]["keras"] == _served(root)
    table = twinflow("history", *_read_args(root))
    assert "| time |" in table.stdout

    lineage = twinflow("lineage", "--framework", "keras", *_read_args(root), "--json")
    assert lineage.returncode == 0, lineage.stderr
    chain = json.loads(lineage.stdout)
    nodes = [step["node"] for step in chain["steps"]]
    assert {"Trainer_keras", "Transform", "ImageExampleGen", "StatisticsGen"} <= set(nodes)

    # The local scheduler on a one-second trigger: one line per tick, each running retrain for real.
    schedule = ["schedule", "--local", "--cron", "* * * * * *", *_args(root)]
    ticks = twinflow(*schedule, "--ticks", "2", timeout=300)
    assert ticks.returncode == 0, ticks.stdout + ticks.stderr
    lines = [line for line in ticks.stdout.splitlines() if re.search(r" tick \d+: ", line)]
    assert len(lines) == 2 and all("no new data" in line for line in lines), ticks.stdout
    # While another run holds the store, a tick is skipped (never run alongside it), naming the holder.
    with hold(str(root / "metadata.sqlite")):
        busy = twinflow(*schedule, "--ticks", "1", timeout=300)
    assert busy.returncode == 0, busy.stdout + busy.stderr
    assert "skipped: another run holds the store" in busy.stdout and f"pid {os.getpid()}" in busy.stdout


def _kill_when(process: subprocess.Popen, ready, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if ready():
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before it could be killed")
        time.sleep(0.2)
    process.kill()
    pytest.fail("the run never reached the point to kill it at")


def _files(serving: Path) -> list[str]:
    """The served versions' files (decision records and staging folders aside)."""
    return sorted(str(p.relative_to(serving)) for p in serving.rglob("*") if p.relative_to(serving).parts[0].isdigit())


def _mislabelled_span(root: Path, number: int) -> Path:
    """A span with a test/ folder holding two stripes images labelled circle: test accuracy is surely below 1."""
    folder = _span(root, number)
    write_image_folders(folder / "held-out", CLASSES, 0, test_per_class=12, seed=number * 10 + 7)
    (folder / "held-out" / "test").rename(folder / "test")
    shutil.rmtree(folder / "held-out")
    for index, stripes in enumerate(sorted((folder / "test" / "stripes").glob("*.png"))[:2]):
        stripes.rename(folder / "test" / "circle" / f"mislabelled-{index}.png")
    return folder


def _kill_once_published(command: list[str], serving: Path, limit: float = 600) -> None:
    """Run a retrain (at the lowest CPU priority) and SIGKILL it the moment a new version folder appears:
    after its push landed, before it could record that push (a decision record, the Pusher's output in ML Metadata)."""
    before = {p.name for p in serving.iterdir()} if serving.is_dir() else set()
    process = subprocess.Popen(["nice", "-n", "19", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if serving.is_dir() and any(p.name.isdigit() and p.name not in before for p in serving.iterdir()):
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return
        time.sleep(0.002)
    process.kill()
    pytest.fail(f"the run never published a version (exit {process.returncode})")


def test_a_redo_a_run_killed_after_its_push_and_pruning_old_runs(tmp_path: Path) -> None:
    from twinflow.pipelines.schema_draft import draft_schema

    root = tmp_path
    _mislabelled_span(root, 1)
    draft_schema(root / "data" / "span-1", root / "schema.pbtxt")
    serving = root / "serving" / "keras"

    # A config mistake (a floor no model can reach) leaves span 1 without a push, and used up.
    mistake = _retrain(root, "--accuracy-floor", "1")
    assert mistake.returncode == 0, mistake.stdout + mistake.stderr
    assert _served(root) is None
    used_up = _retrain(root, "--accuracy-floor", "1")
    assert used_up.returncode == 0 and "no new data" in used_up.stdout, used_up.stdout + used_up.stderr

    # --redo-span 1 runs it again with the mistake fixed (and another epoch count: a model of its own).
    redo = _retrain(root, "--redo-span", "1", "--epochs", "2")
    assert redo.returncode == 0, redo.stdout + redo.stderr
    v1 = _served(root)
    assert v1 is not None and "a redo of span 1" in redo.stdout
    # A span that pushed is not redone without --force, and the refusal names the version.
    again = _retrain(root, "--redo-span", "1", "--epochs", "2")
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"span 1 already pushed keras version {v1}" in again.stderr and "--force" in again.stderr
    newest_only = _retrain(root, "--redo-span", "7")
    assert newest_only.returncode == 2 and "the newest span" in newest_only.stderr, newest_only.stderr

    # Span 2: a run killed right after its push landed, then a run that finds its model pushed.
    _span(root, 2)
    _kill_once_published(
        [
            sys.executable,
            "-m",
            "twinflow.pipelines.cli",
            "retrain",
            *_args(root, "--epochs", "2", "--max-accuracy-drop", "1"),
        ],
        serving,
    )
    v2 = _served(root)
    assert v2 not in (None, v1)
    # The next run judges with another floor (so it is no no-op), and its Trainer is answered from TFX's cache:
    # it meets the killed run's model, already served.
    after_kill = _retrain(
        root, "--epochs", "2", "--max-accuracy-drop", "1", "--accuracy-floor", "0.5", "--keep-runs", "10"
    )
    assert after_kill.returncode == 0, after_kill.stdout + after_kill.stderr
    assert "[prune] removed nothing (0.0 MB) of 0 older run(s)" in after_kill.stdout  # --keep-runs: after each run
    assert _served(root) == v2  # the same model: not pushed twice

    history = twinflow("history", *_read_args(root), "--json")
    assert history.returncode == 0, history.stderr
    runs = [r for r in json.loads(history.stdout) if r["run_id"]]
    assert [r["spans"] for r in runs] == [[1], [1], [2], [2]], runs
    mistaken, redone, killed, next_run = runs
    assert mistaken["frameworks"]["keras"]["blessed"] is False and mistaken["served_after"]["keras"] is None
    assert redone["redo_of_span"] == 1 and "redo of span 1" in redone["outcome"]
    assert redone["frameworks"]["keras"]["pushed_version"] == v1
    assert killed["outcome"].startswith("did not finish"), "the kill landed after the Pusher recorded its output"
    assert killed["frameworks"]["keras"]["pushed_version"] == v2 and killed["served_after"]["keras"] == v2
    assert next_run["frameworks"]["keras"]["pushed_version"] is None and next_run["served_after"]["keras"] == v2

    # Pruning to the newest run keeps what both served versions came from, and removes the mistaken run's model.
    pipeline = root / "pipeline"
    lineage_files = {version: _lineage_files(root, version) for version in (v1, v2)}
    assert all(lineage_files.values())
    size_before = _size(pipeline)
    dry = twinflow("prune-runs", *_read_args(root), "--keep-runs", "1", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert _size(pipeline) == size_before and "would remove" in dry.stdout
    mistaken_model = _model_of(root, mistaken["run_id"])
    assert mistaken_model is not None and f"artifact: {mistaken_model.uri}" in dry.stdout
    pruned = twinflow("prune-runs", *_read_args(root), "--keep-runs", "1")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    print(pruned.stdout.strip(), f"({size_before:,} -> {_size(pipeline):,} bytes)")
    assert _size(pipeline) < size_before
    assert not Path(mistaken_model.uri).exists()
    assert _model_of(root, mistaken["run_id"]).state == mistaken_model.DELETED  # TFX's cache never offers it again
    assert not (pipeline / "reports" / mistaken["run_id"].replace(":", "-")).exists()
    rebuilt = twinflow("report", *_read_args(root), "--run", mistaken["run_id"])
    assert rebuilt.returncode == 2 and "was pruned (twinflow prune-runs)" in rebuilt.stderr, rebuilt.stderr
    assert (pipeline / "reports" / next_run["run_id"].replace(":", "-") / "report.json").is_file()
    for version, files in lineage_files.items():
        assert _lineage_files(root, version) == files  # every artifact lineage shows is still there
    kept = json.loads(twinflow("history", *_read_args(root), "--json").stdout)
    assert [r["frameworks"]["keras"]["test_accuracy"] is not None for r in kept if r["run_id"]] == [True] * 4


def _lineage_files(root: Path, version: int) -> set[str]:
    """The artifact folders ``lineage`` shows for a version that exist on disk (Trainer back to ImageExampleGen)."""
    lineage = twinflow("lineage", "--framework", "keras", "--version", str(version), *_read_args(root), "--json")
    assert lineage.returncode == 0, lineage.stderr
    steps = json.loads(lineage.stdout)["steps"]
    assert {"Trainer_keras", "Transform", "ImageExampleGen", "StatisticsGen"} <= {s["node"] for s in steps}
    return {a["uri"] for s in steps for a in s["outputs"] if Path(a["uri"]).exists()}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _model_of(root: Path, run_id: str):
    """The Trainer's model artifact of a run, from ML Metadata."""
    from twinflow.core.metadata import connection_config
    from twinflow.pipelines.run.record import read_run

    record = read_run(connection_config(None, str(root / "metadata.sqlite")), "twinflow", run_id)
    return record.nodes["Trainer_keras"].output("model")
