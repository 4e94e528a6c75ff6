from pathlib import Path

import pytest

from pipelines.cli import build_parser, config_from_args
from pipelines.config import ConfigError, PipelineConfig, TrainingConfig, load_config


def test_defaults_are_valid_and_share_training_config() -> None:
    config = load_config()
    assert config.framework == "both"
    assert config.frameworks == ("keras", "lightning")
    assert config.training == TrainingConfig()
    assert load_config(framework="keras").frameworks == ("keras",)


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "framework: both\ndata_dir: /data/x\ntraining:\n  epochs: 7\n  learning_rate: 1\n"
        "evaluation:\n  accuracy_floor: 0.9\n"
    )
    config = load_config(path, **{"training.epochs": 3})
    assert config.framework == "both"
    assert config.data_dir == Path("/data/x")
    assert config.training.epochs == 3  # flag beats file
    assert config.training.learning_rate == 1.0  # int in YAML accepted as float
    assert config.evaluation.accuracy_floor == 0.9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("framework: tf\n", "framework must be one of"),
        ("training:\n  epochs: 0\n", "training.epochs must be > 0"),
        ("training:\n  epochs: three\n", "TrainingConfig.epochs must be int"),
        ("training:\n  nope: 1\n", "unknown key 'nope'"),
        ("bogus: 1\n", "unknown config key 'bogus'"),
        ("- a\n- b\n", "mapping at the top level"),
        ("a: [\n", "not valid YAML"),
        ("eval_buckets: 5\ntest_buckets: 5\n", "at least one bucket"),
    ],
)
def test_bad_yaml_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert message in str(err.value)


def test_missing_yaml_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_cli_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--framework",
            "both",
            "--epochs",
            "2",
            "--image-size",
            "32",
            "--channels",
            "3",
            "--no-augment",
            "--no-cache",
            "--beam-arg=--direct_num_workers=2",
            "--accuracy-floor",
            "0.7",
            "--data-dir",
            "/tmp/d",
        ]
    )
    config = config_from_args(args)
    assert config.frameworks == ("keras", "lightning")
    assert (config.training.epochs, config.training.image_size, config.training.channels) == (2, 32, 3)
    assert config.training.augment is False and config.enable_cache is False
    assert config.beam_args == ("--direct_num_workers=2",)
    assert config.evaluation.accuracy_floor == 0.7
    assert config.data_dir == Path("/tmp/d")
    assert isinstance(config, PipelineConfig)
