"""What TFX hands a Trainer's ``run_fn``, rebuilt from a recorded run: for benchmarks and tests that call a
trainer directly on real Transform output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinflow.core.config import TrainingConfig
from twinflow.core.contract import TRAINING_CONFIG_KEY
from twinflow.pipelines.run.record import read_run

SPLITS = ("train", "eval", "test")


def recorded_transform_output(metadata: Any, pipeline_name: str, run_id: str | None = None) -> dict[str, Any]:
    """The Transform output of a run (the latest without ``run_id``): split file patterns, graph dir, data accessor."""
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.types import artifact_utils, standard_artifacts

    transform = read_run(metadata, pipeline_name, run_id).nodes["Transform"]
    examples = standard_artifacts.Examples()
    examples.uri = transform.output("transformed_examples").uri
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=tfxio_utils.get_record_batch_factory_from_artifact([examples], []),
        data_view_decode_fn=None,
    )
    return {
        "transform_graph": transform.output("transform_graph").uri,
        "examples_uri": examples.uri,
        "files": {split: [artifact_utils.get_split_uri([examples], split) + "/*"] for split in SPLITS},
        "data_accessor": accessor,
    }


def trainer_fn_args(transform_output: dict[str, Any], training: TrainingConfig, workdir: Path) -> Any:
    """The FnArgs TFX's Trainer would give a run_fn for ``transform_output`` and ``training``."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    return FnArgs(
        working_dir=str(workdir / "working"),
        train_files=transform_output["files"]["train"],
        eval_files=transform_output["files"]["eval"],
        transform_graph_path=transform_output["transform_graph"],
        transform_output=transform_output["transform_graph"],
        data_accessor=transform_output["data_accessor"],
        serving_model_dir=str(workdir / "serving"),
        model_run_dir=str(workdir / "model_run"),
        custom_config={TRAINING_CONFIG_KEY: training.to_dict()},
    )
