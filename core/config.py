"""The one typed configuration every runner, component and trainer reads (pydantic models).

Values come from three layers, later ones winning: the defaults below, an optional YAML
file, and command-line flags (``twinflow.pipelines.cli.flags`` maps each flag to one key here). Values
are checked strictly: a YAML ``"2"`` is not an int and ``"false"`` is not a bool, and NaN or
infinite numbers are refused. Trainers receive the training part as a plain dict
(``TrainingConfig.model_dump``) through TFX ``custom_config``, so both frameworks see the
exact same hyperparameters.

Paths are strings, not ``pathlib.Path``: they may be ``gs://`` or ``s3://`` URIs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twinflow.core.architectures import BACKBONES, architecture_names, is_backbone
from twinflow.core.errors import ConfigError
from twinflow.core.registry import resolve_frameworks

DEFAULT_WORKDIR = "work"
AUGMENTATIONS = ("flip", "brightness")


class _Section(BaseModel):
    """Strict, frozen, no unknown keys, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False, validate_default=True)


def _comma_list(value: Any) -> Any:
    """'a,b' → ('a', 'b'); 'none' or '' → (); lists and tuples pass through."""
    if isinstance(value, str):
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        return () if parts in ((), ("none",)) else parts
    return value


class TrainingConfig(_Section):
    """Hyperparameters shared verbatim by every trainer (and by Transform: image size, channels)."""

    epochs: int = Field(10, gt=0, description="training epochs (early stopping may end sooner)")
    batch_size: int = Field(64, gt=0, description="batch size")
    learning_rate: float = Field(1e-3, gt=0, description="learning rate")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam or sgd")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "cosine", description="constant, or cosine: per epoch from the learning rate down to a tenth of it"
    )
    seed: int = Field(42, description="random seed")
    image_size: int = Field(28, ge=4, le=1024, description="images are resized to this square size")
    channels: Literal[1, 3] = Field(1, description="1 (grayscale) or 3 (RGB)")
    architecture: str = Field("twin_cnn_wide", description=f"model architecture: {', '.join(architecture_names())}")
    width_multiplier: float = Field(
        1.0, gt=0, le=2, description="a backbone's width (MobileNetV2's alpha: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)"
    )
    weights: str = Field(
        "none",
        min_length=1,
        description="starting weights, the same in both frameworks: none (seeded, identical), imagenet (published "
        "backbone weights), served (each framework's served version), served:<framework>, or a file or model folder",
    )
    fine_tune_blocks: int = Field(
        0, ge=0, le=19, description="backbone blocks (from the top) to unfreeze in a second phase; 0: head only"
    )
    fine_tune_epochs: int = Field(0, ge=0, description="epochs of the second phase (top blocks unfrozen)")
    fine_tune_lr_factor: float = Field(
        0.1, gt=0, le=1, description="the second phase's learning rate, as a share of --learning-rate"
    )
    model_module: str | None = Field(
        None,
        min_length=1,
        description="your own model: a .py file or package.module with build_keras(input_shape, num_classes) "
        "and/or build_torch(input_shape, num_classes) (instead of --architecture)",
    )
    augment: tuple[Literal["flip", "brightness"], ...] = Field(
        AUGMENTATIONS,
        strict=False,
        description="training-time augmentations, comma-separated: flip (horizontal), brightness; or none",
    )
    early_stopping_patience: int = Field(2, ge=0, description="epochs without a better eval loss before stopping")
    devices: int = Field(
        1,
        ge=1,
        description="devices per trainer, data-parallel: Lightning DDP processes (CPU or GPUs), "
        "Keras MirroredStrategy replicas (GPUs)",
    )
    strategy: Literal["auto", "ddp_spawn", "ddp_fork"] = Field(
        "auto", description="how Lightning starts its processes with --devices > 1 (auto: ddp_spawn)"
    )
    memory_budget_mb: float = Field(
        4096,
        gt=0,
        description="Transform output up to this size (MB, train and eval splits) is held in memory; "
        "above it the trainers stream batches from disk",
    )

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_list(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        if value not in architecture_names():
            raise ValueError(f"unknown architecture {value!r}; known: {', '.join(architecture_names())}")
        return value

    @model_validator(mode="after")
    def _backbone_fits(self) -> TrainingConfig:
        backbone = BACKBONES.get(self.architecture)
        if backbone and self.image_size < backbone.min_image_size:
            raise ValueError(
                f"image_size {self.image_size} is below the {backbone.min_image_size} px {self.architecture} takes"
            )
        if self.weights == "imagenet" and not backbone:
            raise ValueError(
                f"weights 'imagenet' are published for backbones ({', '.join(BACKBONES)}), not for {self.architecture}"
            )
        if self.model_module and (self.weights != "none" or self.fine_tune_blocks):
            raise ValueError(
                "--model-module models start from their own initialisation: --weights and "
                "--fine-tune-blocks are for twinflow's twins"
            )
        if self.fine_tune_blocks and not backbone:
            raise ValueError(f"fine_tune_blocks is for backbones ({', '.join(BACKBONES)}), not {self.architecture}")
        return self

    @property
    def backbone(self) -> bool:
        """Fed raw pixels (0..255) that the model's own first layer scales, instead of normalised images."""
        return is_backbone(self.architecture) and not self.model_module

    @field_validator("augment")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"augmentation listed twice: {value}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """What a trainer received through custom_config (JSON: lists for tuples)."""
        try:
            return cls.model_validate(dict(values), strict=False)
        except ValidationError as err:
            raise ConfigError(describe(err, "training")) from None


class EvaluationConfig(_Section):
    """The thresholds that decide whether a model is blessed (same for every framework)."""

    accuracy_floor: float = Field(0.80, ge=0, le=1, description="lowest test accuracy that can be blessed")
    max_accuracy_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="the test-accuracy drop vs the served version to rule out (0.01: 1 pp): push only when the "
        "paired confidence interval of new − served, on the same test images, lies above minus this",
    )


VARIANTS = ("prune", "int8")


class OptimizationConfig(_Section):
    """Optimized variants of each trained float model, judged by the same Evaluator as their parent.

    ``max_drop`` is a fraction like ``evaluation.max_accuracy_drop`` (0.005 = 0.5 percentage points).
    """

    variants: tuple[Literal["prune", "int8"], ...] = Field(
        (),
        strict=False,
        description="optimized variants to make of each framework's model, comma-separated: prune, int8; or none",
    )
    sparsity: float = Field(0.5, gt=0, lt=1, description="share of weights magnitude pruning sets to zero")
    fine_tune_epochs: int = Field(1, ge=1, description="epochs of fine-tuning after pruning (train split)")
    calibration_images: int = Field(512, ge=1, description="train-split images that calibrate int8 quantization")
    max_drop: float = Field(
        0.005,
        ge=0,
        le=1,
        description="largest test-accuracy drop vs the float parent a variant may have and be blessed (0.005: 0.5 pp)",
    )
    latency_iterations: int = Field(
        200, ge=1, description="timed batch-1 calls per model and thread count (batch 64: a tenth, at least 3)"
    )
    latency_threads: tuple[int, ...] = Field(
        (1, 2), strict=False, min_length=1, description="thread counts the latency benchmark times, comma-separated"
    )

    @field_validator("latency_threads", mode="before")
    @classmethod
    def _thread_list(cls, value: Any) -> Any:
        value = _comma_list(value)
        return (
            tuple(int(v) for v in value) if isinstance(value, tuple) and all(str(v).isdigit() for v in value) else value
        )

    @field_validator("latency_threads")
    @classmethod
    def _positive_threads(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"thread counts must be at least 1, got {value}")
        return value

    @field_validator("variants", mode="before")
    @classmethod
    def _variant_list(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("variants")
    @classmethod
    def _no_repeated_variant(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"variant listed twice: {value}")
        return value


class KubeflowConfig(_Section):
    """What ``twinflow compile`` fixes in the spec beyond the pipeline itself."""

    image: str | None = Field(None, description="container image built from the Dockerfile (default $TWINFLOW_IMAGE)")
    data_fingerprint: str | None = Field(None, description="cache key of the data: change it when the data changes")
    serving_pvc: str | None = Field(None, description="existing PersistentVolumeClaim mounted at the serving dir")
    baseline: bool = Field(
        True, description="no longer used: the spec has no resolver tasks (accepted, with a notice, for old configs)"
    )
    trainer_cpu: float = Field(2.0, gt=0, description="CPUs requested by each Trainer step")
    trainer_memory_gib: float = Field(8.0, gt=0, description="memory (GiB) requested by each Trainer step")
    trainer_gpus: int = Field(0, ge=0, description="NVIDIA GPUs requested by each Trainer step")
    keras_trainer_image: str | None = Field(
        None, description="image for the Keras Trainer step, e.g. built with TF_VARIANT=cuda (default: image)"
    )
    lightning_trainer_image: str | None = Field(
        None, description="image for the Lightning Trainer step, e.g. built with TORCH_VARIANT=cu128 (default: image)"
    )
    evaluator_cpu: float = Field(1.0, gt=0, description="CPUs requested by each Evaluator step")
    evaluator_memory_gib: float = Field(4.0, gt=0, description="memory (GiB) requested by each Evaluator step")


class ServingConfig(_Section):
    """``twinflow serve``: where it listens, how often it looks for new versions, and its request limits."""

    host: str = Field("127.0.0.1", min_length=1, description="address to bind (0.0.0.0 to serve other machines)")
    port: int = Field(8501, ge=0, le=65535, description="port for both APIs (TF Serving's REST port by default)")
    poll_seconds: float = Field(2.0, gt=0, description="how often the serving folder is checked for new versions")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest request body accepted (413 above)")
    max_instances: int = Field(256, gt=0, description="most images in one request (413 above)")
    max_request_pixels: int = Field(
        64_000_000,
        gt=0,
        description="most pixels all images of one request may hold, read from their headers (413 above)",
    )
    max_concurrent_requests: int = Field(64, gt=0, description="predictions in flight at once (429 above)")
    batch_window_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="longest a request waits for concurrent requests to the same model to join its model call "
        "(0: off); with none under way it waits for nothing",
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0, description="an idle connection (before its first request or between two) is closed after this"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="time for a request's line and headers, from its first byte (408 and closed after)"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, description="time for a request's body, from the end of its headers (408 and closed after)"
    )
    access_log_every: int = Field(
        0, ge=0, description="access-log one request in N (1: every request; 0: none, the default)"
    )
    auth_token_file: str | None = Field(
        None,
        description="require 'Authorization: Bearer <token>', tokens one per line in this local file, re-read "
        "when it changes (health endpoints exempt)",
    )


class PipelineConfig(_Section):
    """Where data comes from, where outputs land, which trainers run, and how."""

    pipeline_name: str = Field("twinflow", min_length=1, description="pipeline name in ML Metadata")
    data_dir: str = Field(
        f"{DEFAULT_WORKDIR}/data/fashion_mnist",
        min_length=1,
        description="images: a folder of class sub-folders (or train/ and test/ holding them); a path or URI",
    )
    pipeline_root: str = Field(f"{DEFAULT_WORKDIR}/pipeline", min_length=1, description="where TFX writes artifacts")
    metadata_path: str = Field(f"{DEFAULT_WORKDIR}/metadata.sqlite", min_length=1, description="SQLite ML Metadata")
    serving_dir: str = Field(
        f"{DEFAULT_WORKDIR}/serving",
        min_length=1,
        description="where blessed models are pushed: <dir>/<framework>/<v>/",
    )
    schema_path: str | None = Field(
        None, description="curated schema .pbtxt (default: schemas/fashion_mnist/schema.pbtxt)"
    )
    framework: str = Field("both", description="keras, lightning, both, all, or a comma-separated list")
    eval_buckets: int = Field(1, ge=1, le=8, description="hash buckets (of 10) that go to the eval split")
    test_buckets: int = Field(1, ge=1, le=8, description="hash buckets (of 10) held out as test without a test/ folder")
    max_bad_images: float = Field(
        0.0, ge=0, description="unusable image files to leave out instead of stopping: a count, or a fraction below 1"
    )
    max_image_pixels: int = Field(
        64_000_000, gt=0, description="larger images count as unusable (a decompression-bomb guard)"
    )
    data_root: str | None = Field(
        None,
        description="data arriving over time: a folder of span folders (see span_pattern); set, it replaces data_dir",
    )
    span_pattern: str = Field(
        "span-{SPAN}",
        min_length=1,
        description="span folders under data_root, in TFX's input-pattern syntax: {SPAN}, {VERSION}, {YYYY}{MM}{DD}",
    )
    spans: int = Field(1, ge=1, description="train on the latest N spans of data_root")
    accept_drift: bool = Field(False, description="let this run pass the drift gate (recorded in the history)")
    keep_versions: int = Field(5, ge=1, description="complete versions kept per framework in the serving folder")
    keep_runs: int | None = Field(
        None,
        ge=1,
        description="after each run, prune older runs from the pipeline root, keeping the newest N whole (and the "
        "runs of served versions; see twinflow prune-runs); none keeps every run",
    )
    canary: bool = Field(
        False,
        description="push a new version as the 'canary' label while 'stable' keeps serving (twinflow promote moves it)",
    )
    metadata_uri: str | None = Field(
        None,
        description="shared ML Metadata store mysql://USER@HOST:PORT/DB (password from "
        "$TWINFLOW_METADATA_PASSWORD or $TWINFLOW_METADATA_PASSWORD_FILE); default: the SQLite metadata_path",
    )
    repeats: int = Field(
        1,
        ge=1,
        le=20,
        description="train each framework this many times with seeds seed, seed+1, ...; all are evaluated, "
        "the report gives mean and sd, and only the best by eval-split accuracy may be pushed",
    )
    enable_cache: bool = Field(True, description="reuse TFX's cached component outputs")
    beam_args: tuple[str, ...] = Field(
        (),
        strict=False,
        description="Beam arguments; none runs Beam's in-memory DirectRunner. Any given makes TFX package "
        "itself for remote Beam workers at each Beam component (about 5 s and 52 MB of temporary files each)",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    optimization: OptimizationConfig = Field(default_factory=OptimizationConfig)
    kubeflow: KubeflowConfig = Field(default_factory=KubeflowConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    @field_validator("data_dir", "data_root", "pipeline_root", "metadata_path", "serving_dir", "schema_path")
    @classmethod
    def _normal_path(cls, value: str | None) -> str | None:
        """One spelling per place: ``data/``, ``./data`` and ``data`` are one folder (and one TFX cache key)."""
        if value is None:
            return None
        if "://" in value:
            scheme, _, rest = value.partition("://")
            return f"{scheme}://{rest.rstrip('/')}" if rest.rstrip("/") else value
        return os.path.normpath(value)

    @field_validator("framework")
    @classmethod
    def _known_frameworks(cls, value: str) -> str:
        resolve_frameworks(value)
        return value

    @field_validator("span_pattern")
    @classmethod
    def _span_pattern_is_tfx_syntax(cls, value: str) -> str:
        from twinflow.core.spans import compile_pattern

        compile_pattern(value)
        return value

    @field_validator("max_bad_images")
    @classmethod
    def _count_or_fraction(cls, value: float) -> float:
        if value >= 1 and not value.is_integer():
            raise ValueError("expected a count (a whole number) or a fraction below 1")
        return value

    @field_validator("metadata_uri")
    @classmethod
    def _mysql_uri(cls, value: str | None) -> str | None:
        if value is not None:
            from twinflow.core.metadata import parse_mysql_uri

            parse_mysql_uri(value)
        return value

    @model_validator(mode="after")
    def _buckets_leave_training_data(self) -> PipelineConfig:
        if self.eval_buckets + self.test_buckets > 9:
            raise ValueError("eval_buckets + test_buckets must leave at least one bucket (of 10) for training")
        return self

    @property
    def frameworks(self) -> tuple[str, ...]:
        return resolve_frameworks(self.framework)

    @property
    def input_base(self) -> str:
        """Where ImageExampleGen reads: the span root when data arrives in spans, else the fixed folder."""
        return self.data_root or self.data_dir


def describe(err: ValidationError, prefix: str = "") -> str:
    """pydantic's errors, one clause each: ``training.epochs: Input should be greater than 0 (got 0)``."""
    lines = []
    for item in err.errors():
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown key; known keys here: {', '.join(_known_keys(item['loc'][:-1], prefix))}"
        got = "" if item["type"] in ("missing", "extra_forbidden") or not item["loc"] else f" (got {item['input']!r})"
        lines.append(f"{location or 'config'}: {message}{got}")
    return "; ".join(lines)


def _known_keys(section: tuple[Any, ...], prefix: str) -> list[str]:
    model: type[BaseModel] = TrainingConfig if prefix == "training" else PipelineConfig
    for name in section:
        annotation = model.model_fields[str(name)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return sorted(model.model_fields)


def merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts merged key by key, ``changes`` winning."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a nested mapping; every problem is a ConfigError naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(
    yaml_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """``base`` (defaults), then the YAML file (if any), then ``overrides`` (nested, from flags); validated."""
    values: dict[str, Any] = dict(base or {})
    if yaml_path is not None:
        values = merge(values, read_yaml(yaml_path))
        _validate(values, f"config file {yaml_path}: ")  # name the file when the problem is in it
    return _validate(merge(values, overrides or {}))


def _validate(values: dict[str, Any], where: str = "") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(where + describe(err)) from None
