"""Helpers the tests share: configs for tiny runs, FnArgs for trainers, reading serving folders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tfx.components.trainer.fn_args_utils import FnArgs

    from twinflow.core.config import PipelineConfig
    from twinflow.core.model_card import ModelCard


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"training.epochs": 3} → {"training": {"epochs": 3}}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return out


def tiny_config(root: Path, data_dir: Path, **overrides: object) -> PipelineConfig:
    """A fast, valid PipelineConfig writing everything under ``root`` (dotted keys for sections).

    Unless a schema is given, one is drafted from ``data_dir`` (as a user would with
    ``twinflow draft-schema``).
    """
    from twinflow.core.config import load_config
    from twinflow.pipelines.schema_draft import draft_schema

    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "framework": "keras",
        "pipeline_root": str(root / "pipeline"),
        "metadata_path": str(root / "metadata.sqlite"),
        "serving_dir": str(root / "serving"),
        "training.architecture": "tiny_cnn",
        "training.epochs": 4,
        "training.lr_schedule": "constant",  # the tiny recipe the tests' thresholds were set with
        "training.batch_size": 16,
        "evaluation.accuracy_floor": 0.6,
    }
    values.update(overrides)
    if "schema_path" not in values:
        values["schema_path"] = str(draft_schema(data_dir, root / "schema.pbtxt"))
    values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    return load_config(overrides=nested(values))


def trainer_fn_args(transform_outputs: dict, workdir: Path, **training: object) -> FnArgs:
    """The FnArgs TFX's Trainer would give a run_fn for ``transform_outputs``."""
    from twinflow.pipelines.run.trainer_inputs import trainer_fn_args as fn_args

    return fn_args(transform_outputs, transform_outputs["config"].training.model_copy(update=training), workdir)


def pushed_versions(serving_dir: str | Path, framework: str) -> list[Path]:
    """Complete versions of one framework, oldest first (as every twinflow reader sees them)."""
    from twinflow.model_store.layout import complete_versions

    return [Path(v.path) for v in complete_versions(str(Path(serving_dir) / framework))]


def make_card(framework: str = "keras", class_names: Sequence[str] = ("a", "b"), image_size: int = 8) -> ModelCard:
    """A valid model card with made-up training figures, for tests that build model folders by hand."""
    from twinflow.core.config import TrainingConfig
    from twinflow.core.model_card import InputContract, ModelCard, SplitMetrics, TensorSpec, TrainingSummary

    metrics = SplitMetrics(accuracy=0.9, loss=0.3)
    return ModelCard(
        framework=framework,
        format="saved_model",
        artifact=".",
        class_names=list(class_names),
        input_contract=InputContract(
            raw={}, transformed=TensorSpec(name="image_xf", dtype="float32", shape=[image_size, image_size, 1])
        ),
        architecture="tiny_cnn",
        parameters=10,
        training=TrainingSummary(
            config=TrainingConfig(),
            device="CPU",
            epochs_run=1,
            seconds=1.0,
            images_per_second=1.0,
            first_epoch_images_per_second=1.0,
            train=metrics,
            eval=metrics,
        ),
        size_bytes=200,
    )
