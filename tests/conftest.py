"""Shared fixtures: small generated image folders (tests never need the real dataset)."""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from tests.helpers import tiny_config, trainer_fn_args
from tests.image_data import write_image_folders
from twinflow.core.bootstrap import bootstrap

bootstrap()  # the test session is an entry point: process-wide settings before any test loads a framework

if TYPE_CHECKING:
    from tfx.components.trainer.fn_args_utils import FnArgs

    from twinflow.core.config import PipelineConfig

# Fixtures that run a real pipeline or trainer: a test using one is end to end (skipped by make test-fast).
E2E_FIXTURES = {"keras_run", "transform_outputs", "lightning_trained", "both_run", "data_module", "model_server"}
BOTH_RUN_FLOOR = 0.5  # 3 easy classes, chance is 1/3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After s3:// use, leave with pytest's status before tensorflow-io aborts the teardown (core.fs.exit_now)."""
    from twinflow.core import fs

    if fs.touches_s3():
        atexit.register(os._exit, int(exitstatus))


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for this session; yields the bucket's URI."""
    from tests.s3_server import BUCKET, moto_server
    from twinflow.core import fs

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log"):
        fs.touches_s3(f"s3://{BUCKET}")
        yield f"s3://{BUCKET}"


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ with 3 learnable classes of 28x28 grayscale PNGs (60 + 15 per class)."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    write_image_folders(root, classes=("circle", "square", "stripes"), train_per_class=60, test_per_class=15)
    return root


@pytest.fixture
def rgb_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "rgb.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(path, "JPEG")
    return path


@pytest.fixture(scope="session")
def keras_run(tmp_path_factory: pytest.TempPathFactory, tiny_folders: Path) -> tuple[PipelineConfig, dict]:
    """One real LocalDagRunner run of the Keras pipeline on tiny_folders: (config, report.json's content)."""
    from twinflow.pipelines.run.local import run_local

    config = tiny_config(tmp_path_factory.mktemp("keras_run"), tiny_folders)
    return config, run_local(config).to_json()


@pytest.fixture(scope="session")
def transform_outputs(keras_run: tuple[PipelineConfig, dict]) -> dict:
    """The real Transform output of ``keras_run``, as run_fn sees it: files, graph dir, data accessor."""
    from tfx import v1 as tfx

    from twinflow.pipelines.run.trainer_inputs import recorded_transform_output

    config, _ = keras_run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    return {"config": config, **recorded_transform_output(metadata, config.pipeline_name)}


@pytest.fixture(scope="session")
def lightning_trained(tmp_path_factory: pytest.TempPathFactory, transform_outputs: dict) -> FnArgs:
    """The Lightning run_fn run once on the real Transform output: its FnArgs (serving and run dirs)."""
    from twinflow.trainers.lightning.train import run_fn

    fn_args = trainer_fn_args(transform_outputs, tmp_path_factory.mktemp("lightning_trained"), epochs=6)
    run_fn(fn_args)
    return fn_args


@pytest.fixture(scope="session")
def both_run(tmp_path_factory: pytest.TempPathFactory, tiny_folders: Path) -> tuple[PipelineConfig, dict]:
    """One real run of both frameworks on tiny_folders, both pushed: (config, report.json's content); for e2e and
    server tests."""
    from twinflow.pipelines.run.local import run_local

    config = tiny_config(
        tmp_path_factory.mktemp("both_run"),
        tiny_folders,
        framework="both",
        **{"training.epochs": 6, "evaluation.accuracy_floor": BOTH_RUN_FLOOR},
    )
    return config, run_local(config).to_json()
