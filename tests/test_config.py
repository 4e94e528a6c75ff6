"""The one typed config: strict values, one-line errors, and one flag → config path for every verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kubeflow_specs import IMAGE, compile_to
from twinflow.core.config import ConfigError, PipelineConfig, TrainingConfig, load_config
from twinflow.core.errors import ConfigError as CoreConfigError
from twinflow.core.registry import framework_choices
from twinflow.pipelines.cli.flags import CONFIG_FLAGS, config_from_args
from twinflow.pipelines.cli.main import build_parser, main
from twinflow.pipelines.kubeflow.specfile import compiled_training, parameter_defaults, read_spec, run_parameters


def test_defaults_are_valid_and_share_training_config() -> None:
    config = load_config()
    assert config.framework == "both"
    assert config.frameworks == ("keras", "lightning")
    assert config.training == TrainingConfig()
    assert config.training.augment == ("flip", "brightness")
    assert load_config(overrides={"framework": "keras"}).frameworks == ("keras",)
    assert load_config(overrides={"framework": "lightning,keras"}).frameworks == ("lightning", "keras")
    assert ConfigError is CoreConfigError


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "framework: both\ndata_dir: gs://bucket/x\ntraining:\n  epochs: 7\n  learning_rate: 1\n  augment: none\n"
        "evaluation:\n  accuracy_floor: 0.9\n"
    )
    config = load_config(path, {"training": {"epochs": 3}})
    assert config.framework == "both"
    assert config.data_dir == "gs://bucket/x"  # a URI stays a URI
    assert config.training.epochs == 3  # flag beats file
    assert config.training.learning_rate == 1.0  # int in YAML accepted as float
    assert config.training.augment == ()
    assert config.evaluation.accuracy_floor == 0.9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('eval_buckets: "2"\n', "eval_buckets: Input should be a valid integer (got '2')"),
        ('enable_cache: "false"\n', "enable_cache: Input should be a valid boolean (got 'false')"),
        ("framework: tf\n", "framework: unknown framework(s) ['tf']"),
        ("training:\n  epochs: 0\n", "training.epochs: Input should be greater than 0 (got 0)"),
        ("training:\n  epochs: three\n", "training.epochs: Input should be a valid integer (got 'three')"),
        ("training:\n  learning_rate: .nan\n", "training.learning_rate: Input should be a finite number"),
        ("training:\n  architecture: resnet\n", "training.architecture: unknown architecture 'resnet'"),
        ("training:\n  augment: [flip, rotate]\n", "training.augment.1: Input should be 'flip' or 'brightness'"),
        ("training:\n  channels: 2\n", "training.channels: Input should be 1 or 3 (got 2)"),
        ("training:\n  nope: 1\n", "training.nope: unknown key; known keys here: architecture, augment"),
        ("bogus: 1\n", "bogus: unknown key; known keys here: accept_drift, beam_args"),
        ("training: 3\n", "training: Input should be a valid dictionary"),
        ("- a\n- b\n", "mapping at the top level"),
        ("a: [\n", "not valid YAML"),
        ("eval_buckets: 5\ntest_buckets: 5\n", "at least one bucket"),
        ("max_bad_images: 1.5\n", "max_bad_images: expected a count (a whole number) or a fraction below 1 (got 1.5)"),
    ],
)
def test_bad_yaml_gives_one_line_naming_the_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value) or "not valid YAML" in message  # YAML's own message shows the line


@pytest.mark.parametrize("value", [0, 0.01, 0.999, 1, 3, 3.0])
def test_max_bad_images_is_a_count_or_a_fraction_below_one(value: float) -> None:
    assert load_config(overrides={"max_bad_images": value}).max_bad_images == value


def test_a_switch_that_turns_a_key_off_says_what_the_switch_does(capsys: pytest.CaptureFixture) -> None:
    """--no-cache's help once read "reuse TFX's cached component outputs": the key's description, not the flag's."""
    switches = [flag for flag in CONFIG_FLAGS if flag.constant is False]
    assert {flag.flag for flag in switches} >= {"--no-cache", "--no-baseline"}
    for flag in switches:
        section, _, name = flag.key.rpartition(".")
        model = PipelineConfig.model_fields[section].annotation if section else PipelineConfig
        assert flag.help and flag.help != model.model_fields[name].description, flag.flag
        assert f"{flag.key}: false" in flag.help, flag.flag
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-cache run every component again: reuse none of TFX's cached component outputs" in help_text


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
            "--augment",
            "flip",
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
    assert config.training.augment == ("flip",) and config.enable_cache is False
    assert config.beam_args == ("--direct_num_workers=2",)
    assert config.evaluation.accuracy_floor == 0.7
    assert config.data_dir == "/tmp/d"
    assert isinstance(config, PipelineConfig)


def test_flags_fill_only_what_was_given_so_yaml_shows_through(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 9\n  seed: 7\n")
    config = config_from_args(build_parser().parse_args(["run", "--config", str(path), "--seed", "1"]))
    assert (config.training.epochs, config.training.seed) == (9, 1)


def test_every_config_flag_names_a_real_key_and_each_flag_is_unique() -> None:
    assert len({f.flag for f in CONFIG_FLAGS}) == len(CONFIG_FLAGS)
    for flag in CONFIG_FLAGS:
        section, _, name = flag.key.rpartition(".")
        model = PipelineConfig.model_fields[section].annotation if section else PipelineConfig
        assert name in model.model_fields, flag.key


@pytest.mark.parametrize("verb", ["run", "compile", "submit", "schedule"])
def test_no_verb_takes_a_flag_by_its_prefix(verb: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([verb, "--learning", "0.1", *(["--cron", "0 3 * * *"] * (verb == "schedule"))])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --learning" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["run", "compile", "submit", "schedule"])
def test_every_verb_refuses_a_bad_value_with_the_same_one_line_error(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = compile_to(tmp_path / "spec.yaml")
    extra = {
        "run": [],
        "compile": [
            "--image",
            IMAGE,
            "--data-dir",
            "gs://b/d",
            "--output",
            str(tmp_path / "o.yaml"),
        ],
        "submit": ["--spec", str(spec), "--host", "http://127.0.0.1:9"],
        "schedule": ["--spec", str(spec), "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 1"],
    }[verb]
    assert main([verb, *extra, "--learning-rate", "nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"twinflow {verb}: error: training.learning_rate: Input should be a finite number (got nan)"
    assert not (tmp_path / "o.yaml").exists()


def test_compile_builds_its_config_through_the_one_path(tmp_path: Path) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text("training:\n  epochs: 3\nkubeflow:\n  trainer_gpus: 1\n")
    out = tmp_path / "spec.yaml"
    argv = ["compile", "--config", str(config_file), "--image", IMAGE, "--data-dir", "gs://b/d"]
    assert main([*argv, "--augment", "none", "--output", str(out)]) == 0
    spec = read_spec(out)[0]
    training = json.loads(parameter_defaults(spec)["training_config"])["training"]
    assert (training["epochs"], training["augment"]) == (3, [])
    resources = spec["deploymentSpec"]["executors"]
    trainer = next(body for name, body in resources.items() if "Trainer" in name)
    assert trainer["container"]["resources"]["accelerator"]["resourceCount"] == "1"


@pytest.mark.parametrize("verb", ["submit", "schedule"])
def test_submit_and_schedule_build_their_config_on_the_compiled_training(verb: str, tmp_path: Path) -> None:
    spec_path = compile_to(tmp_path / "spec.yaml")
    spec = read_spec(spec_path)[0]
    extra = ["--cron", "0 3 * * 1"] if verb == "schedule" else []
    args = build_parser().parse_args(
        [verb, "--spec", str(spec_path), *extra, "--epochs", "6", "--data-dir", "gs://b/new", "--augment", "flip"]
    )
    config = config_from_args(args, base={"training": compiled_training(spec)})
    params = run_parameters(spec, config, {})
    assert params["input_base"] == "gs://b/new"
    assert "schema_file" not in params and "serving_dir" not in params  # not given: compiled defaults stay
    training = json.loads(params["training_config"])["training"]
    assert training == {**compiled_training(spec), "epochs": 6, "augment": ["flip"]}


def test_framework_choices_come_from_the_registry_alone(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"{', '.join(framework_choices())}, or a comma-separated list" in help_text
