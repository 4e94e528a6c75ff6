"""``model.json``: the one typed definition of what a served model folder says about itself.

Trainers write it beside the framework artifact; the pusher adds what it knows at push time;
the report, the server and the ONNX loader read it. Written and read only here, through
TensorFlow's file layer, as strict JSON (no NaN). ``schema_version`` changes when a field's
meaning does; a reader refuses versions it does not know.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twinflow.core import fs
from twinflow.core.config import TrainingConfig
from twinflow.core.errors import ModelCardError

MODEL_CARD_FILE = "model.json"
SCHEMA_VERSION = 1


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitMetrics(_Card):
    accuracy: float = Field(ge=0, le=1)
    loss: float = Field(ge=0)


class EpochMetrics(_Card):
    """One epoch as both trainers log it (validation on the eval split); a non-finite value is left out."""

    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class TrainingPhase(_Card):
    """One phase of fine-tuning a backbone (a twin CNN trains in one phase, everything at once)."""

    name: str  # "all layers", "head (backbone frozen)", "top 4 blocks"
    trainable_units: int = Field(ge=0, description="backbone units that trained (stem, 17 blocks, top: 0..19)")
    epochs: int = Field(ge=0, description="epochs the phase was given (early stopping may run fewer)")
    learning_rate: float = Field(gt=0)


class WeightsRecord(_Card):
    """Where the starting weights came from (``--weights``), identical in both twins."""

    source: str = Field(description="as given: none, imagenet, served, served:<framework>, or a path")
    kind: str = Field(description="seeded, keras_h5, keras_weights_h5, torch_state_dict, safetensors, onnx, ...")
    seed: int
    head: str = Field(description="'from the source', or 'new: <why>' (e.g. another class count)")
    file: str | None = None
    sha256: str | None = Field(None, description="of the bytes read (a folder: of its weight files)")
    framework: str | None = Field(None, description="whose layout the source was in: keras or torch")
    ported_to: list[str] = Field(default_factory=list)
    note: str | None = None


class TrainingSummary(_Card):
    config: TrainingConfig
    device: str
    epochs_run: int = Field(ge=0)
    seconds: float = Field(ge=0)
    images_per_second: float = Field(ge=0)
    first_epoch_images_per_second: float = Field(ge=0)
    # Mean seconds per epoch outside the training steps (validation, callbacks, checkpoints).
    overhead_seconds_per_epoch: float = Field(0.0, ge=0)
    # "memory": the Transform output was held in memory; "stream": it was over the memory budget and streamed.
    input_mode: Literal["memory", "stream"] = "memory"
    train: SplitMetrics
    eval: SplitMetrics
    history: list[EpochMetrics] = Field(default_factory=list)  # per epoch, for training curves
    phases: list[TrainingPhase] = Field(default_factory=list)


class TensorSpec(_Card):
    name: str
    dtype: str
    shape: list[int]


class InputContract(_Card):
    """What a caller sends: raw image bytes or tf.Examples; what the model itself reads after Transform."""

    raw: dict[str, str]
    transformed: TensorSpec


class OnnxGraph(_Card):
    input: str
    layout: Literal["NHWC"]
    output: str
    opset: int


class TrainingData(_Card):
    """The data behind a pushed model: which spans of which root, and the listing's fingerprint."""

    input_base: str
    spans: list[int] = Field(default_factory=list, description="span numbers (empty for a fixed folder)")
    version: int | None = None
    fingerprint: str = ""
    examples_uri: str | None = None
    run_id: str | None = None


class VariantInfo(_Card):
    """What an optimized variant is made of: its float parent, the method, and what was measured."""

    name: Literal["prune", "int8"]
    parent_framework: str
    parent_model: str = Field(description="the float parent's serving folder in the pipeline root")
    parent_version: int | None = Field(None, description="the parent's version in the serving folder (the pusher)")
    method: str
    sparsity: float | None = Field(None, ge=0, le=1, description="share of zero weights in conv and dense kernels")
    fine_tune_epochs: int | None = None
    calibration_images: int | None = None
    benchmark: dict[str, float] = Field(default_factory=dict, description="sizes and latencies, float vs variant")


class ModelCard(_Card):
    schema_version: Literal[1] = SCHEMA_VERSION
    framework: str
    format: Literal["saved_model", "onnx", "tflite"]
    artifact: str = Field(description="the framework artifact, relative to the model folder ('.' for a SavedModel)")
    signatures: list[str] = Field(default_factory=list)
    onnx: OnnxGraph | None = None
    transform_graph: str | None = Field(None, description="folder of the Transform graph, relative to the model")
    class_names: list[str] = Field(min_length=2)
    input_contract: InputContract
    architecture: str
    parameters: int = Field(gt=0)
    weights: WeightsRecord | None = Field(None, description="the starting weights (--weights)")
    model_module: dict[str, str] | None = Field(None, description="--model-module: spec and sha256 of the file")
    training: TrainingSummary
    size_bytes: int = Field(ge=0, description="bytes of the artifact files (see artifact_files)")
    variant: VariantInfo | None = Field(None, description="set on an optimized variant of a float model")
    # Written by the pusher.
    version: int | None = None
    source_model: str | None = None
    evaluation: dict[str, float] | None = None
    pushed_at: str | None = None
    data: TrainingData | None = Field(None, description="what the model was trained on (spans, fingerprint)")
    decision: str | None = Field(None, description="why this version was published (push, rollback)")
    run_fingerprint: str | None = Field(
        None,
        description="the inputs of the run that trained it: data by content, schema, config, code "
        "(a local run with the same inputs does nothing; see twinflow.pipelines.run.guard)",
    )
    rolled_back_from: int | None = Field(None, description="the version re-published by a rollback")


def card_path(model_dir: str) -> str:
    return fs.join(str(model_dir), MODEL_CARD_FILE)


def write_model_card(model_dir: str, card: ModelCard) -> None:
    io = fs.gfile()
    io.makedirs(str(model_dir))
    fs.write_text(card_path(model_dir), card.model_dump_json(indent=2) + "\n")


def read_model_card(model_dir: str) -> ModelCard:
    """The card of a model folder; a missing or malformed file is a ModelCardError naming it and the field."""
    path = card_path(model_dir)
    if not fs.exists(path):
        raise ModelCardError(f"{path}: no model card; is {model_dir} a twinflow model folder?")
    text = fs.read_text(path)
    try:
        return ModelCard.model_validate_json(text)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise ModelCardError(
            f"{path}: not a valid twinflow model card (schema version {SCHEMA_VERSION}): {problems}"
        ) from None


# A SavedModel's own files: what a push or a copy adds beside them (card, statistics, marker) is not the model.
SAVED_MODEL_PARTS = ("saved_model.pb", "keras_metadata.pb", "fingerprint.pb", "variables", "assets")


def artifact_files(model_dir: str, artifact: str) -> list[str]:
    """The files that hold the network as its runtime loads it: a SavedModel's own files (``artifact``
    '.', Transform embedded) or the one model file (``model.onnx``, ``model.tflite``).

    The one measure of a model's size: the card's ``size_bytes`` and the variants' benchmark (and so
    the report's results and variants tables) both count these files. The Transform graph copied
    beside an ONNX or TFLite file is the same for a float model and its variants, and left out.
    """
    if artifact == ".":
        own = [name for name in fs.list_files(model_dir) if name.split("/")[0] in SAVED_MODEL_PARTS]
        return [fs.join(model_dir, name) for name in own]
    return [fs.join(model_dir, artifact)]


def artifact_size(model_dir: str, artifact: str) -> int:
    """Bytes of :func:`artifact_files`."""
    io = fs.gfile()
    return sum(io.stat(path).length for path in artifact_files(model_dir, artifact))
