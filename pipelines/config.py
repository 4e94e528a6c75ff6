"""The one typed configuration every runner, component and trainer reads.

Values come from three layers, later ones winning: the defaults below, an optional
YAML file, and command-line flags. Trainers receive the training part as a plain dict
(``TrainingConfig.to_dict``) through TFX ``custom_config`` so both frameworks see the
exact same hyperparameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FRAMEWORK_CHOICES = ("keras", "lightning", "both")
DEFAULT_WORKDIR = Path("work")


class ConfigError(ValueError):
    """A configuration value or file is unusable; the message names which and why."""


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters shared verbatim by every trainer."""

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    seed: int = 42
    image_size: int = 28
    channels: int = 1
    architecture: str = "twin_cnn"
    augment: bool = True
    early_stopping_patience: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def validate(self) -> None:
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "image_size": self.image_size,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"training.{name} must be > 0, got {value!r}")
        if self.channels not in (1, 3):
            raise ConfigError(f"training.channels must be 1 or 3, got {self.channels!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"training.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


@dataclass(frozen=True)
class EvaluationConfig:
    """The thresholds that decide whether a model is blessed (same for every framework)."""

    accuracy_floor: float = 0.80
    max_accuracy_drop: float = 0.01

    def validate(self) -> None:
        if not 0.0 <= self.accuracy_floor <= 1.0:
            raise ConfigError(f"evaluation.accuracy_floor must be in [0, 1], got {self.accuracy_floor!r}")
        if self.max_accuracy_drop < 0:
            raise ConfigError(f"evaluation.max_accuracy_drop must be >= 0, got {self.max_accuracy_drop!r}")


@dataclass(frozen=True)
class PipelineConfig:
    """Where data comes from, where outputs land, and which trainers run."""

    pipeline_name: str = "twinflow"
    data_dir: Path = DEFAULT_WORKDIR / "data" / "fashion_mnist"
    pipeline_root: Path = DEFAULT_WORKDIR / "pipeline"
    metadata_path: Path = DEFAULT_WORKDIR / "metadata.sqlite"
    serving_dir: Path = DEFAULT_WORKDIR / "serving"
    schema_path: Path | None = None  # None: the curated Fashion-MNIST schema in schemas/
    framework: str = "both"  # the side-by-side comparison is what twinflow exists to produce
    eval_buckets: int = 1  # hash buckets (of 10) that go to the eval split
    test_buckets: int = 1  # used only when the source has no test/ folder
    enable_cache: bool = True
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def validate(self) -> None:
        if self.framework not in FRAMEWORK_CHOICES:
            raise ConfigError(f"framework must be one of {FRAMEWORK_CHOICES}, got {self.framework!r}")
        if not 1 <= self.eval_buckets <= 8 or not 1 <= self.test_buckets <= 8:
            raise ConfigError("eval_buckets and test_buckets must each be between 1 and 8 (of 10 buckets)")
        if self.eval_buckets + self.test_buckets > 9:
            raise ConfigError("eval_buckets + test_buckets must leave at least one bucket (of 10) for training")
        self.training.validate()
        self.evaluation.validate()

    @property
    def frameworks(self) -> tuple[str, ...]:
        return ("keras", "lightning") if self.framework == "both" else (self.framework,)

    def replace(self, **changes: Any) -> PipelineConfig:
        """Return a copy with top-level fields and/or ``training.x`` / ``evaluation.x`` changed."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {"training": {}, "evaluation": {}}
        for key, value in changes.items():
            section, _, name = key.partition(".")
            if name:
                if section not in nested:
                    raise ConfigError(f"unknown config section {section!r} in {key!r}")
                nested[section][name] = value
            else:
                top[key] = value
        config = dataclasses.replace(self, **_coerce_top(top))
        if nested["training"]:
            config = dataclasses.replace(config, training=_replace_section(config.training, nested["training"]))
        if nested["evaluation"]:
            config = dataclasses.replace(config, evaluation=_replace_section(config.evaluation, nested["evaluation"]))
        return config


_PATH_FIELDS = {"data_dir", "pipeline_root", "metadata_path", "serving_dir", "schema_path"}


def _coerce_top(values: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(PipelineConfig)} - {"training", "evaluation"}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key {key!r}; known keys: {sorted(known)}")
        if key in _PATH_FIELDS and value is not None:
            value = Path(value)
        if key == "beam_args":
            value = tuple(value)
        out[key] = value
    return out


def _replace_section(section: Any, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {key!r} in section {type(section).__name__}; known: {sorted(fields)}")
        expected = type(getattr(section, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, expected):
            raise ConfigError(
                f"{type(section).__name__}.{key} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
    return dataclasses.replace(section, **values)


def load_config(yaml_path: Path | None = None, **overrides: Any) -> PipelineConfig:
    """Defaults, then the YAML file (if any), then overrides; validated."""
    config = PipelineConfig()
    if yaml_path is not None:
        config = config.replace(**_flatten(_read_yaml(yaml_path), yaml_path))
    config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    config.validate()
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("training", "evaluation"):
            if not isinstance(value, dict):
                raise ConfigError(f"config file {path}: '{key}' must be a mapping")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat
