"""Expected failures, as a user meets them in a terminal: one clear message, a documented exit code, no traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.image_data import write_image_folders

NOISE = ("Traceback", "cuda_dnn", "Unable to register", "IteratorGetNext", "property_predicate", "DeprecationWarning")


def twinflow(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``twinflow`` in its own process, as a user runs it."""
    command = [sys.executable, "-m", "pipelines.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _run_argv(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--data-dir",
        str(data),
        "--pipeline-root",
        str(tmp_path / "pipeline"),
        "--metadata-path",
        str(tmp_path / "metadata.sqlite"),
        "--serving-dir",
        str(tmp_path / "serving"),
        *extra,
    ]


def test_a_bad_config_value_is_refused_before_tensorflow_loads(tmp_path: Path) -> None:
    code = (
        "import sys; from pipelines.cli import main; "
        "rc = main(['run', '--learning-rate', 'nan', '--architecture', 'resnet']); "
        "print(rc, 'tensorflow' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False", "False"]
    assert result.stderr.strip() == (
        "twinflow run: error: training.learning_rate: Input should be a finite number (got nan); "
        "training.architecture: unknown architecture 'resnet'; "
        "known: twin_cnn, twin_cnn_dropout, twin_cnn_wide, tiny_cnn (got 'resnet')"
    )


def test_a_missing_folder_and_a_folder_that_is_a_file_are_named(tmp_path: Path) -> None:
    result = twinflow(*_run_argv(tmp_path, tmp_path / "absent"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"twinflow run: error: input folder {tmp_path / 'absent'} does not exist"
    (tmp_path / "a.png").write_bytes(b"x")
    result = twinflow(*_run_argv(tmp_path, tmp_path / "a.png"))
    assert result.returncode == 2 and "is a file, not a folder of class sub-folders" in result.stderr


def test_a_serving_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "data", ("a", "b"), train_per_class=12, test_per_class=3)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the serving folder's parent should be")
    argv = _run_argv(tmp_path, data)
    argv[argv.index("--serving-dir") + 1] = str(blocker / "serving")
    result = twinflow(*argv, "--schema", str(_schema(tmp_path, data)))
    assert result.returncode == 2
    assert f"the serving folder {blocker / 'serving'} is not writable" in result.stderr
    assert not (tmp_path / "pipeline").exists()


def _schema(tmp_path: Path, data: Path) -> Path:
    from pipelines.schema_draft import draft_schema

    return draft_schema(data, tmp_path / "schema.pbtxt")


def test_own_folders_without_a_schema_get_the_draft_schema_command(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "flowers", ("daisy", "rose"), train_per_class=12, test_per_class=3)
    result = twinflow(*_run_argv(tmp_path, data))
    assert result.returncode == 2
    assert "classes not in the schema: ['daisy', 'rose']" in result.stderr
    assert f"twinflow draft-schema --data-dir {data} --out schemas/flowers/schema.pbtxt" in result.stderr
    assert not any(noise in result.stderr for noise in NOISE)


def test_draft_schema_refuses_a_single_class(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "one", ("only",), train_per_class=5)
    result = twinflow("draft-schema", "--data-dir", str(data), "--out", str(tmp_path / "s.pbtxt"))
    assert result.returncode == 2
    assert "a classifier needs at least 2 classes (class folders); found only 'only'" in result.stderr
    assert not (tmp_path / "s.pbtxt").exists()


@pytest.mark.e2e
def test_a_folder_of_junk_gives_one_message_and_no_noise(tmp_path: Path) -> None:
    """TensorFlow and Beam run (ImageExampleGen), yet the terminal shows only twinflow's lines."""
    data = write_image_folders(tmp_path / "data", ("a", "b"), train_per_class=12, test_per_class=3)
    (data / "train" / "a" / "empty.png").write_bytes(b"")
    (data / "train" / "b" / "text.jpg").write_text("hello")
    result = twinflow(*_run_argv(tmp_path, data, "--schema", str(_schema(tmp_path, data))))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("twinflow run: error: 2 of 32 files cannot be used as images")
    assert "empty.png (0 bytes): the file is empty" in result.stderr
    assert not any(noise in result.stderr + result.stdout for noise in NOISE), result.stdout
    log = next((tmp_path / "pipeline" / "logs").glob("*.log")).read_text()
    assert "Traceback" in log and "ImageFolderError" in log  # the full story is in the log


@pytest.mark.e2e
def test_ctrl_c_stops_the_run_with_exit_130_and_no_traceback(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "data", ("a", "b"), train_per_class=30, test_per_class=5)
    argv = _run_argv(tmp_path, data, "--schema", str(_schema(tmp_path, data)), "--framework", "keras")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    assert process.stdout is not None
    for line in process.stdout:  # wait until TFX is under way
        if "ImageExampleGen: complete" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "twinflow run: interrupted"
    assert "Traceback" not in stderr
    assert not list((tmp_path / "serving").glob("*/[0-9]*"))
