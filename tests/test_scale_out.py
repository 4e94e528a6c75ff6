"""Scale-out on existing engines: the data stages on Beam's multi-processing direct runner, Lightning DDP
in two processes on a CPU, Keras's tf.distribute choice."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow_transform as tft
from tfx import v1 as tfx

from tests.helpers import trainer_fn_args
from twinflow.core.config import PipelineConfig
from twinflow.core.model_card import read_model_card
from twinflow.pipelines.definition import create_data_pipeline
from twinflow.pipelines.run.guard import list_run_input
from twinflow.pipelines.run.local import host_argv_hidden
from twinflow.pipelines.run.record import read_run
from twinflow.pipelines.run.trainer_inputs import SPLITS, recorded_transform_output
from twinflow.trainers.keras import train as keras_train
from twinflow.trainers.lightning import train as lightning_train
from twinflow.trainers.lightning.train import STOPWATCH_FILE
from twinflow.trainers.transformed_data import READ_BATCH, read_within_budget, transformed_batches

MULTI_PROCESSING = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def _split_arrays(output: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    batches = transformed_batches(
        output["files"][split], output["data_accessor"], tft.TFTransformOutput(output["transform_graph"]), READ_BATCH
    )
    images, labels = read_within_budget(batches, float("inf"))
    order = np.lexsort([*images.reshape(len(images), -1).T[::-1], labels])
    return images[order], labels[order]


@pytest.mark.e2e
def test_data_stages_on_beams_multi_processing_runner_match_the_in_memory_run(
    keras_run: tuple[PipelineConfig, dict], tmp_path: Path
) -> None:
    in_memory_config, _ = keras_run
    config = in_memory_config.model_copy(
        update={
            "pipeline_name": "twinflow-multi-processing",
            "pipeline_root": str(tmp_path / "pipeline"),
            "metadata_path": str(tmp_path / "metadata.sqlite"),
            "beam_args": MULTI_PROCESSING,
        }
    )
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    fingerprint = list_run_input(config).listing.fingerprint()
    with host_argv_hidden():  # pytest's own flags are not Beam's
        tfx.orchestration.LocalDagRunner().run(create_data_pipeline(config, fingerprint, metadata))

    nodes = read_run(metadata, config.pipeline_name).nodes
    assert {nodes[n].state for n in ("ImageExampleGen", "StatisticsGen", "Transform")} == {"COMPLETE"}
    in_memory_metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(in_memory_config.metadata_path)
    expected = recorded_transform_output(in_memory_metadata, in_memory_config.pipeline_name)
    got = recorded_transform_output(metadata, config.pipeline_name)
    for split in SPLITS:
        expected_images, expected_labels = _split_arrays(expected, split)
        got_images, got_labels = _split_arrays(got, split)
        np.testing.assert_array_equal(got_labels, expected_labels)  # the same examples in every split
        np.testing.assert_allclose(got_images, expected_images, atol=1e-5)  # and the same normalization


def test_lightning_trains_data_parallel_in_two_spawned_processes(
    transform_outputs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn_args = trainer_fn_args(transform_outputs, tmp_path, epochs=3, devices=2, strategy="ddp_spawn")
    lightning_train.run_fn(fn_args)
    assert "on 2 × CPU (ddp_spawn)" in capsys.readouterr().out
    assert (Path(fn_args.model_run_dir) / "logs" / STOPWATCH_FILE).is_file()  # written by rank 0 of the two
    training = read_model_card(fn_args.serving_model_dir).training
    assert training.config.devices == 2 and training.epochs_run == 3
    assert training.eval.accuracy > 0.5 and training.images_per_second > 0  # 3 easy classes: chance is a third


def test_keras_on_more_devices_than_gpus_trains_on_one_and_says_so(
    transform_outputs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn_args = trainer_fn_args(transform_outputs, tmp_path, epochs=2, devices=2)
    keras_train.run_fn(fn_args)
    assert "--devices 2: 0 GPUs visible, so one device trains" in capsys.readouterr().out
    assert read_model_card(fn_args.serving_model_dir).training.epochs_run == 2
