"""Nothing changed means the content did not change: the data fingerprint by content, its hash cache, and the
no-op rule against what is served (real files, real pushes, the real command line)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_card
from tests.image_data import write_image_folders
from twinflow.components.image_example_gen.file_hashes import CACHE_FILE, RACY_SECONDS, FileHashes
from twinflow.components.image_example_gen.listing import list_sources
from twinflow.components.versioned_pusher.executor import push
from twinflow.core.config import PipelineConfig
from twinflow.core.model_card import TrainingData
from twinflow.core.packages import PACKAGES
from twinflow.model_store.layout import CANARY, STABLE, write_labels
from twinflow.pipelines.cli.flags import config_from_args
from twinflow.pipelines.cli.main import build_parser
from twinflow.pipelines.run.guard import (
    LAST_RUN_FILE,
    code_fingerprint,
    fingerprint_data,
    list_run_input,
    package_folders,
    run_fingerprint,
    unchanged_since,
)

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("circle", "square")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_image_folders(tmp_path / "data", CLASSES, train_per_class=6, test_per_class=2)


def _images(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def _fingerprint(folder: Path | str) -> str:
    return list_sources(str(folder)).fingerprint()


def _settle() -> None:
    """Let the files' change times age past the racy window, so the cache may keep them."""
    time.sleep(RACY_SECONDS + 0.2)


def _change_a_pixel(path: Path) -> None:
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)


def test_touching_copying_without_p_unzipping_and_a_trailing_slash_keep_the_fingerprint(
    data: Path, tmp_path: Path
) -> None:
    before = _fingerprint(data)
    times = {p: p.stat().st_mtime_ns for p in _images(data)}
    for path in _images(data):
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # touch
    assert all(p.stat().st_mtime_ns != times[p] for p in _images(data))
    assert _fingerprint(data) == before
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(data), str(copy)], check=True)  # no -p: new modification times
    assert _fingerprint(copy) == before
    archive = shutil.make_archive(str(tmp_path / "data"), "zip", data)
    shutil.unpack_archive(archive, tmp_path / "unzipped")
    assert _fingerprint(tmp_path / "unzipped") == before
    assert _fingerprint(f"{data}/") == before
    assert _fingerprint(f"{data}//./") == before


def test_a_changed_pixel_a_renamed_class_folder_and_a_renamed_file_change_it(data: Path) -> None:
    seen = {_fingerprint(data)}
    _change_a_pixel(_images(data / "train" / "circle")[0])
    seen.add(_fingerprint(data))
    (data / "train" / "square").rename(data / "train" / "box")
    (data / "test" / "square").rename(data / "test" / "box")
    seen.add(_fingerprint(data))
    first = _images(data / "train" / "circle")[0]
    first.rename(first.with_name("renamed.png"))
    seen.add(_fingerprint(data))
    assert len(seen) == 4


def test_the_hash_cache_reads_only_files_whose_stamp_changed(data: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "pipeline" / CACHE_FILE)
    images = _images(data)
    _settle()

    def fingerprint() -> tuple[str, FileHashes]:
        hashes = FileHashes(cache)
        value = list_sources(str(data)).fingerprint(hashes)
        hashes.save(str(data))
        return value, hashes

    cold, hashes = fingerprint()
    assert (hashes.read, hashes.reused) == (len(images), 0)
    warm, hashes = fingerprint()
    assert (warm, hashes.read, hashes.reused) == (cold, 0, len(images))

    os.utime(images[0])  # touched: read again, same fingerprint
    _settle()
    again, hashes = fingerprint()
    assert (again, hashes.read) == (cold, 1)

    # The same size and modification time, other bytes (a restored mtime): the change time gives it away.
    target = images[1]
    stat = target.stat()
    with open(target, "r+b") as handle:
        handle.seek(stat.st_size - 20)
        byte = handle.read(1)
        handle.seek(stat.st_size - 20)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    changed, hashes = fingerprint()
    assert changed != cold and hashes.read == 1

    _settle()
    Path(cache).write_text('{"format": 1, "entries": {"truncated')  # a corrupt cache is ignored, then rewritten
    recovered, hashes = fingerprint()
    assert (recovered, hashes.read) == (changed, len(images))
    assert len(json.loads(Path(cache).read_text())["entries"]) == len(images)


def test_a_file_changed_just_before_it_was_hashed_is_read_again(data: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / CACHE_FILE)
    _settle()
    _change_a_pixel(_images(data)[0])  # changed now: within its timestamp's granularity of the hashing
    for _ in range(2):
        hashes = FileHashes(cache)
        list_sources(str(data)).fingerprint(hashes)
        hashes.save(str(data))
    assert hashes.read == 1 and hashes.reused == len(_images(data)) - 1


def test_files_through_tensorflows_file_layer_fingerprint_like_the_same_files_on_disk(data: Path) -> None:
    import tensorflow as tf

    remote = f"ram://fingerprint-{os.getpid()}/data"
    for path in _images(data):
        target = f"{remote}/{path.relative_to(data).as_posix()}"
        tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
        tf.io.gfile.copy(str(path), target, overwrite=True)
    assert _fingerprint(remote) == _fingerprint(data)
    assert _fingerprint(remote + "/") == _fingerprint(data)


@pytest.mark.slow  # runs ImageExampleGen's Beam executor
def test_image_example_gen_records_the_fingerprint_of_what_it_read(data: Path, tmp_path: Path) -> None:
    from tfx.types import standard_artifacts

    from twinflow.components.image_example_gen.executor import Executor

    (data / "train" / "circle" / "broken.png").write_bytes(b"not a png")  # read, then left out as unusable
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    properties = {"input_base": f"{data}/", "eval_buckets": 1, "test_buckets": 1, "max_bad_images": 1.0}
    Executor().Do({}, {"examples": [examples]}, properties)
    assert examples.get_string_custom_property("input_fingerprint") == _fingerprint(data)


def test_the_code_fingerprint_covers_every_package_twinflow_installs(tmp_path: Path) -> None:
    top_level = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert set(PACKAGES) == top_level  # core.packages is the one list, and it lists every package folder
    assert package_folders() == {package: ROOT / package for package in PACKAGES}
    copy = {package: tmp_path / package for package in PACKAGES}
    for package, folder in copy.items():
        shutil.copytree(ROOT / package, folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint(copy)
    assert before == code_fingerprint()
    for package in PACKAGES:
        with open(copy[package] / "__init__.py", "a") as handle:
            handle.write("\n# changed\n")
        after = code_fingerprint(copy)
        assert after != before, package
        before = after


def _run_argv(root: Path, data_dir: str, *extra: str) -> list[str]:
    return [
        "run",
        "--data-dir",
        data_dir,
        "--schema",
        str(root / "schema.pbtxt"),
        "--framework",
        "keras",
        "--pipeline-root",
        str(root / "pipeline"),
        "--metadata-path",
        str(root / "metadata.sqlite"),
        "--serving-dir",
        str(root / "serving"),
        *extra,
    ]


def _config(argv: list[str]) -> PipelineConfig:
    """The config ``twinflow`` builds from ``argv``."""
    return config_from_args(build_parser().parse_args(argv))


def _inputs(config: PipelineConfig) -> str:
    """The run fingerprint, as the runner computes it before TFX starts."""
    listing = list_run_input(config).listing
    return run_fingerprint(config, fingerprint_data(config, listing), str(config.schema_path))


def _push(config: PipelineConfig, fingerprint: str | None, run_id: str, tmp_path: Path) -> int:
    """A model folder pushed by the pusher's own code, its card recording ``fingerprint`` and ``run_id``."""
    source = tmp_path / "models" / run_id
    source.mkdir(parents=True)
    (source / "saved_model.pb").write_text("x" * 100)
    (source / "model.json").write_text(make_card(class_names=CLASSES).model_dump_json())
    data = TrainingData(input_base=config.input_base, run_id=run_id)
    model_root = str(Path(config.serving_dir) / "keras")
    return push(str(source), model_root, {"accuracy": 0.9}, data=data, run_fingerprint=fingerprint).number


@pytest.fixture
def project(data: Path, tmp_path: Path) -> Path:
    from twinflow.pipelines.schema_draft import draft_schema

    draft_schema(data, tmp_path / "schema.pbtxt")
    return tmp_path


def test_a_run_whose_inputs_equal_the_served_versions_is_a_no_op(project: Path, data: Path) -> None:
    config = _config(_run_argv(project, str(data)))
    fingerprint = _inputs(config)
    assert unchanged_since(config, fingerprint) is None  # nothing served
    _push(config, "inputs of an older run", "run-1", project)
    assert unchanged_since(config, fingerprint) is None
    _push(config, fingerprint, "run-2", project)
    unchanged = unchanged_since(config, fingerprint)
    assert unchanged is not None and unchanged.run_id == "run-2"
    # Touched data, a trailing slash, 'both' spelled out: the same inputs.
    for path in _images(data):
        os.utime(path)
    same = _config(_run_argv(project, f"{data}/"))
    assert _inputs(same) == fingerprint
    # What shapes the model or its judgement is an input; where things are kept is not.
    seeded = _config(_run_argv(project, str(data), "--seed", "7"))
    assert _inputs(seeded) != fingerprint
    floor = _config(_run_argv(project, str(data), "--accuracy-floor", "0.5"))
    assert _inputs(floor) != fingerprint
    moved = _config(
        _run_argv(project, str(data), "--pipeline-root", str(project / "elsewhere"), "--keep-versions", "2")
    )
    assert _inputs(moved) == fingerprint and unchanged_since(moved, fingerprint) is not None
    _change_a_pixel(_images(data)[0])
    assert _inputs(config) != fingerprint
    assert unchanged_since(_config([*_run_argv(project, str(data)), "--no-cache"]), fingerprint) is None


def test_a_canary_with_the_same_inputs_counts_and_a_rollback_does_not(project: Path, data: Path) -> None:
    config = _config(_run_argv(project, str(data)))
    fingerprint = _inputs(config)
    stable = _push(config, "older inputs", "run-1", project)
    canary = _push(config, fingerprint, "run-2", project)
    model_root = str(Path(config.serving_dir) / "keras")
    write_labels(model_root, {STABLE: stable, CANARY: canary})
    assert unchanged_since(config, fingerprint) is not None
    write_labels(model_root, {STABLE: stable})
    assert unchanged_since(config, fingerprint) is None


def test_the_last_run_covers_a_framework_it_did_not_push_while_the_served_version_stays(
    project: Path, data: Path
) -> None:
    config = _config(_run_argv(project, str(data)))
    fingerprint = _inputs(config)
    served = _push(config, "older inputs", "run-1", project)
    Path(config.metadata_path).write_bytes(b"")  # the store the last run was recorded in
    last = {"fingerprint": fingerprint, "run_id": "run-2", "finished": "then", "report": "", "pushed": {"keras": None}}
    Path(config.pipeline_root).mkdir(parents=True, exist_ok=True)
    Path(config.pipeline_root, LAST_RUN_FILE).write_text(json.dumps({**last, "served": {"keras": served}}))
    unchanged = unchanged_since(config, fingerprint)
    assert unchanged is not None and unchanged.run_id == "run-2"
    _push(config, "a rollback or another root's push", "run-3", project)  # served changed since: judge again
    assert unchanged_since(config, fingerprint) is None


def _starts_a_run(argv: list[str], timeout: float = 120) -> tuple[bool, str]:
    """Whether ``twinflow argv`` goes on to run the pipeline (killed as soon as it says so), and what it said."""
    process = subprocess.Popen(
        [sys.executable, "-m", "twinflow.pipelines.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": ""},
    )
    said = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        said.append(line)
        if line.startswith("[run] ") and " images in " in line:  # the pipeline is starting
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return True, "".join(said)
        if time.monotonic() > deadline:
            break
    process.kill()
    process.wait(timeout=30)
    assert process.returncode == 0, "".join(said)
    return False, "".join(said)


def test_the_command_line_does_nothing_after_a_touch_or_a_copy_and_force_runs_anyway(project: Path, data: Path) -> None:
    copy = project / "copy"
    subprocess.run(["cp", "-r", str(data), str(copy)], check=True)  # no -p
    config = _config(_run_argv(project, str(data)))
    version = _push(config, _inputs(config), "run-1", project)

    for path in _images(data):
        os.utime(path)
    started, said = _starts_a_run(_run_argv(project, f"{copy}/"))
    assert not started, said
    assert "nothing changed since run run-1" in said and f"Served: keras version {version}" in said
    started, said = _starts_a_run(_run_argv(project, str(data), "--force"))
    assert started and "nothing changed" not in said, said
    _change_a_pixel(_images(copy)[0])
    started, said = _starts_a_run(_run_argv(project, str(copy)))
    assert started, said


def test_retrain_force_runs_when_no_span_is_new(project: Path, data: Path) -> None:
    root = project / "spans"
    shutil.copytree(data, root / "span-1")
    argv = ["retrain", "--data-root", str(root), *_run_argv(project, str(data))[3:]]  # schema, framework, locations
    pipeline_root = project / "pipeline"
    pipeline_root.mkdir()
    last = {"fingerprint": "", "run_id": "run-1", "finished": "then", "report": "", "pushed": {"keras": None}}
    (pipeline_root / LAST_RUN_FILE).write_text(json.dumps({**last, "latest_span": [1, 0]}))  # span 1 trained on
    started, said = _starts_a_run(argv)
    assert not started and "no new data" in said and "--force" in said, said
    started, said = _starts_a_run([*argv, "--force"])
    assert started and "no new data" not in said, said
