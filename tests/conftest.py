"""Shared fixtures: small generated image folders (tests never need the real dataset)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

import pipelines  # noqa: F401  (selects tf-keras before any test imports TensorFlow)
from tests.image_data import write_image_folders

if TYPE_CHECKING:
    from tfx.components.trainer.fn_args_utils import FnArgs

    from pipelines.config import PipelineConfig


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


def tiny_config(root: Path, data_dir: Path, **overrides: object) -> PipelineConfig:
    """A fast, valid PipelineConfig writing everything under ``root``.

    Unless a schema is given, one is drafted from ``data_dir`` (as a user would with
    ``twinflow draft-schema``).
    """
    from pipelines.config import load_config
    from pipelines.schema_draft import draft_schema

    values: dict[str, object] = {
        "data_dir": data_dir,
        "framework": "keras",
        "pipeline_root": root / "pipeline",
        "metadata_path": root / "metadata.sqlite",
        "serving_dir": root / "serving",
        "training.architecture": "tiny_cnn",
        "training.epochs": 4,
        "training.batch_size": 16,
        "evaluation.accuracy_floor": 0.6,
    }
    values.update(overrides)
    if "schema_path" not in values:
        values["schema_path"] = draft_schema(data_dir, root / "schema.pbtxt")
    return load_config(**values)


@pytest.fixture(scope="session")
def keras_run(tmp_path_factory: pytest.TempPathFactory, tiny_folders: Path) -> tuple[PipelineConfig, dict]:
    """One real LocalDagRunner run of the Keras pipeline on tiny_folders: (config, report)."""
    from pipelines.local_runner import run_local

    config = tiny_config(tmp_path_factory.mktemp("keras_run"), tiny_folders)
    return config, run_local(config)


@pytest.fixture(scope="session")
def transform_outputs(keras_run: tuple[PipelineConfig, dict]) -> dict:
    """The real Transform output of ``keras_run``, as run_fn sees it: files, graph dir, data accessor."""
    from tfx import v1 as tfx
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils, standard_artifacts

    from pipelines.run_record import latest_run

    config, _ = keras_run
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(config.metadata_path))
    transform = latest_run(metadata, config.pipeline_name).nodes["Transform"]
    examples = standard_artifacts.Examples()
    examples.uri = transform.output("transformed_examples").uri
    examples.split_names = artifact_utils.encode_split_names(["train", "eval", "test"])
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
        data_view_decode_fn=None,
    )
    return {
        "config": config,
        "transform_graph": transform.output("transform_graph").uri,
        "files": {s: [artifact_utils.get_split_uri([examples], s) + "/*"] for s in ("train", "eval", "test")},
        "data_accessor": accessor,
    }


def lightning_fn_args(transform_outputs: dict, workdir: Path, **training: object) -> FnArgs:
    """The FnArgs TFX's Trainer would give lightning_trainer.run_fn for ``transform_outputs``."""
    import dataclasses

    from tfx.components.trainer.fn_args_utils import FnArgs

    from trainers.common import TRAINING_CONFIG_KEY

    config = dataclasses.replace(transform_outputs["config"].training, **training)
    return FnArgs(
        working_dir=str(workdir / "working"),
        train_files=transform_outputs["files"]["train"],
        eval_files=transform_outputs["files"]["eval"],
        transform_graph_path=transform_outputs["transform_graph"],
        transform_output=transform_outputs["transform_graph"],
        data_accessor=transform_outputs["data_accessor"],
        serving_model_dir=str(workdir / "serving"),
        model_run_dir=str(workdir / "model_run"),
        custom_config={TRAINING_CONFIG_KEY: config.to_dict()},
    )


@pytest.fixture(scope="session")
def lightning_trained(tmp_path_factory: pytest.TempPathFactory, transform_outputs: dict) -> FnArgs:
    """lightning_trainer.run_fn run once on the real Transform output: its FnArgs (serving and run dirs)."""
    from trainers.lightning_trainer import run_fn

    fn_args = lightning_fn_args(transform_outputs, tmp_path_factory.mktemp("lightning_trained"), epochs=6)
    run_fn(fn_args)
    return fn_args
