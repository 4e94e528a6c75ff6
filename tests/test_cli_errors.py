"""Expected failures, as a user meets them in a terminal: one clear message, a documented exit code, no traceback."""

from __future__ import annotations

import shutil
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
    command = [sys.executable, "-m", "twinflow.pipelines.cli", *argv]
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
        "import sys; from twinflow.pipelines.cli.main import main; "
        "rc = main(['run', '--learning-rate', 'nan', '--architecture', 'resnet']); "
        "print(rc, 'tensorflow' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False", "False"]
    assert result.stderr.strip() == (
        "twinflow run: error: training.learning_rate: Input should be a finite number (got nan); "
        "training.architecture: unknown architecture 'resnet'; "
        "known: twin_cnn, twin_cnn_dropout, twin_cnn_wide, tiny_cnn, mobilenet_v2 (got 'resnet')"
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
    from twinflow.pipelines.schema_draft import draft_schema

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
        [sys.executable, "-m", "twinflow.pipelines.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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


def in_fresh_process(*argv: str) -> tuple[int, bool, str]:
    """``main(argv)`` in a new interpreter: (exit code, whether TensorFlow was loaded, stderr)."""
    code = (
        "import sys; from twinflow.pipelines.cli.main import main; rc = main(sys.argv[1:]); "
        "print(rc, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert result.stdout.split(), result.stderr
    rc, loaded = result.stdout.split()[-2:]
    return int(rc), loaded == "True", result.stderr


def one_line(stderr: str, verb: str) -> str:
    """The one error line a verb prints, checked to be alone and free of tracebacks and library noise."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"twinflow {verb}: error: "), stderr
    assert not any(noise in stderr for noise in NOISE)
    return lines[0].removeprefix(f"twinflow {verb}: error: ")


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a folder of two classes, its drafted schema)."""
    root = tmp_path_factory.mktemp("own")
    data = write_image_folders(root / "data", ("a", "b"), train_per_class=12, test_per_class=3)
    return data, _schema(root, data)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", "does not exist; pass --schema with a schema .pbtxt file"),
        ("not a schema", 'is not a TFX schema in protobuf text format: line 1:1 : Message type "tensorflow.metadata'),
        ("a folder", "is a folder; pass --schema with a schema .pbtxt file"),
    ],
)
def test_a_schema_that_cannot_be_read_is_named_in_one_line(
    own_data: tuple[Path, Path], tmp_path: Path, kind: str, expected: str
) -> None:
    schema = tmp_path / "schema.pbtxt"
    if kind == "not a schema":
        schema.write_text("garbage\n")
    elif kind == "a folder":
        schema.mkdir()
    result = twinflow(*_run_argv(tmp_path, own_data[0], "--schema", str(schema)))
    assert result.returncode == 2
    assert one_line(result.stderr, "run").startswith(f"schema {schema} {expected}")


@pytest.mark.parametrize(
    ("flag", "where", "expected"),
    [
        (
            "--pipeline-root",
            "under a file",
            "the pipeline root {path} is not writable ({file} is a file, not a folder)",
        ),
        (
            "--metadata-path",
            "under a file",
            "the metadata store {path} cannot be created ({file} is a file, not a folder)",
        ),
        ("--metadata-path", "a folder", "the metadata store {path} is a folder, not an SQLite file"),
        ("--metadata-path", "not SQLite", "the metadata store {path} is not an SQLite database"),
    ],
)
def test_a_pipeline_root_or_metadata_store_that_cannot_be_one_is_refused_before_tensorflow_loads(
    own_data: tuple[Path, Path], tmp_path: Path, flag: str, where: str, expected: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    path = {"under a file": blocker / "inside", "a folder": tmp_path / "store", "not SQLite": blocker}[where]
    if where == "a folder":
        path.mkdir()
    argv = _run_argv(tmp_path, own_data[0], "--schema", str(own_data[1]))
    argv[argv.index(flag) + 1] = str(path)
    rc, tensorflow_loaded, stderr = in_fresh_process(*argv)
    assert rc == 2 and not tensorflow_loaded
    assert one_line(stderr, "run").startswith(expected.format(path=path, file=blocker))
    assert not (tmp_path / "pipeline" / "logs").exists()


@pytest.mark.parametrize("verb", ["history", "report"])
@pytest.mark.parametrize("where", ["a folder", "not SQLite"])
def test_reading_verbs_name_a_metadata_path_that_is_no_store(tmp_path: Path, verb: str, where: str) -> None:
    path = tmp_path / "store"
    path.mkdir() if where == "a folder" else path.write_text("not a database")
    argv = [verb, "--metadata-path", str(path), "--serving-dir", str(tmp_path / "serving")]
    rc, tensorflow_loaded, stderr = in_fresh_process(*argv, "--pipeline-root", str(tmp_path / "pipeline"))
    assert rc == 2 and not tensorflow_loaded
    assert one_line(stderr, verb).startswith(f"the metadata store {path} is ")


def test_history_lineage_and_report_answer_from_ml_metadata_without_tensorflow(tmp_path: Path) -> None:
    """They once loaded TensorFlow (8-16 s, with its CUDA registration warnings) for what ML Metadata says alone."""
    where = ["--metadata-path", str(tmp_path / "m.sqlite"), "--serving-dir", str(tmp_path / "serving")]
    rc, tensorflow_loaded, stderr = in_fresh_process("history", *where)
    assert (rc, tensorflow_loaded, stderr) == (0, False, "")
    rc, tensorflow_loaded, stderr = in_fresh_process("report", *where, "--pipeline-root", str(tmp_path / "p"))
    assert rc == 2 and not tensorflow_loaded
    assert one_line(stderr, "report") == "no run of pipeline 'twinflow' is recorded in ML Metadata"
    rc, tensorflow_loaded, stderr = in_fresh_process("lineage", "--framework", "keras", *where)
    assert rc == 2 and not tensorflow_loaded
    assert one_line(stderr, "lineage").endswith("nothing is served (complete versions: none)")


def test_draft_schema_checks_out_and_keeps_a_reviewed_schema_without_force(
    own_data: tuple[Path, Path], tmp_path: Path
) -> None:
    data = str(own_data[0])
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    result = twinflow("draft-schema", "--data-dir", data, "--out", str(blocker / "schema.pbtxt"))
    assert result.returncode == 2
    assert one_line(result.stderr, "draft-schema") == (
        f"--out {blocker / 'schema.pbtxt'} cannot be written ({blocker} is a file, not a folder)"
    )
    result = twinflow("draft-schema", "--data-dir", data, "--out", str(tmp_path))
    assert result.returncode == 2 and one_line(result.stderr, "draft-schema").startswith(
        f"--out {tmp_path} is a folder"
    )

    reviewed = tmp_path / "schema.pbtxt"
    reviewed.write_text("# reviewed by hand\n")
    result = twinflow("draft-schema", "--data-dir", data, "--out", str(reviewed))
    assert result.returncode == 2 and "already exists (a reviewed schema?); pass --force" in result.stderr
    assert reviewed.read_text() == "# reviewed by hand\n"
    result = twinflow("draft-schema", "--data-dir", data, "--out", str(reviewed), "--force")
    assert result.returncode == 0, result.stderr
    assert reviewed.read_text().startswith("# Drafted by 'twinflow draft-schema'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "schema.pbtxt"]  # nothing half-written left


def test_a_folder_holding_only_test_is_not_one_class_named_test(tmp_path: Path) -> None:
    data = write_image_folders(tmp_path / "data", ("a", "b"), train_per_class=3, test_per_class=3)
    shutil.rmtree(data / "train")
    result = twinflow("draft-schema", "--data-dir", str(data), "--out", str(tmp_path / "schema.pbtxt"))
    assert result.returncode == 2
    assert one_line(result.stderr, "draft-schema") == (
        f"{data}: has a test/ folder but no train/ folder; put the training images in {data / 'train'}/<class>/ "
        "beside it (train and test are not class names)"
    )


def test_max_bad_images_above_one_is_a_whole_count(tmp_path: Path) -> None:
    result = twinflow(*_run_argv(tmp_path, tmp_path / "data", "--max-bad-images", "1.5"))
    assert result.returncode == 2
    assert one_line(result.stderr, "run") == (
        "max_bad_images: expected a count (a whole number) or a fraction below 1 (got 1.5)"
    )


def test_status_takes_the_location_flags_history_takes(tmp_path: Path) -> None:
    where = ["--serving-dir", str(tmp_path / "serving"), "--pipeline-root", str(tmp_path / "pipeline")]
    store = ["--metadata-path", str(tmp_path / "m.sqlite"), "--metadata-uri", "mysql://u@127.0.0.1:1/db"]
    result = twinflow("status", *where, *store)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["keras: nothing served", "lightning: nothing served"]


@pytest.mark.parametrize("verb", ["status", "run", "history"])
def test_an_unknown_flag_prints_the_verbs_usage(verb: str) -> None:
    result = twinflow(verb, "--bogus", "1")
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: twinflow {verb} [-h]")
    assert result.stderr.strip().splitlines()[-1] == f"twinflow {verb}: error: unrecognized arguments: --bogus 1"


def test_trainer_gpus_without_a_gpu_trainer_image_warn(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """GPUs requested for a Trainer step that runs the CPU image cannot be used by it."""
    from twinflow.pipelines.cli.main import main

    image, tf_gpu = "registry.example/twinflow:1", "registry.example/twinflow:1-tf-gpu"
    argv = ["compile", "--image", image, "--data-dir", "gs://bucket/d", "--framework", "both"]

    def stderr_of(*extra: str) -> str:
        assert main([*argv, "--output", str(tmp_path / "spec.yaml"), "--trainer-gpus", "1", *extra]) == 0
        return capsys.readouterr().err.strip()

    assert stderr_of() == (
        "twinflow compile: warning: --trainer-gpus 1 requests GPUs for the keras, lightning Trainer step(s), "
        f"which run the CPU image {image}; pass --keras-trainer-image (an image built with TF_VARIANT=cuda) and "
        "--lightning-trainer-image (an image built with TORCH_VARIANT=cu128)"
    )
    only_lightning = stderr_of("--keras-trainer-image", tf_gpu)
    assert "for the lightning Trainer step(s)" in only_lightning and "--keras-trainer-image" not in only_lightning
    assert stderr_of("--keras-trainer-image", tf_gpu, "--lightning-trainer-image", f"{image}-torch-gpu") == ""
