"""The one flag → config path: every verb builds its config here.

Each config flag names one key of :class:`twinflow.core.config.PipelineConfig` and the verbs that take
it; its type, choices and help come from the config model itself. Flags not given are left
out of the overrides, so YAML values and defaults show through. Parsers never match a flag
by prefix (``--optimize`` is not ``--optimizer``).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from twinflow.core.config import PipelineConfig, load_config
from twinflow.core.registry import framework_choices

RUN, RETRAIN, COMPILE, SUBMIT, SCHEDULE = "run", "retrain", "compile", "submit", "schedule"
SERVE = "serve"
ROLLBACK, PROMOTE, STATUS, HISTORY, LINEAGE, REPORT, PRUNE_RUNS = (
    "rollback",
    "promote",
    "status",
    "history",
    "lineage",
    "report",
    "prune-runs",
)
STORE_VERBS = frozenset({STATUS, HISTORY, LINEAGE, REPORT, PRUNE_RUNS})  # verbs that read results (ML Metadata)
RESULT_VERBS = STORE_VERBS | {ROLLBACK, PROMOTE}  # verbs that read (or change) what runs left behind
ALL_VERBS = frozenset({RUN, RETRAIN, COMPILE, SUBMIT, SCHEDULE})
LOCAL_VERBS = frozenset({RUN, RETRAIN})  # verbs that run the pipeline on this machine
PIPELINE_VERBS = frozenset({RUN, RETRAIN, COMPILE})  # verbs that build the pipeline graph itself
SPAN_VERBS = frozenset({RETRAIN, COMPILE})  # verbs that read data arriving in spans
KUBEFLOW_RUN_VERBS = frozenset({SUBMIT, SCHEDULE})
_DEST_PREFIX = "config:"
FORCE_HELP = (
    "run even when nothing changed (same data by content, config, schema and code as the served versions), "
    "every component again: TFX's cached outputs are not reused"
)


@dataclass(frozen=True)
class ConfigFlag:
    """A command-line flag feeding one config key (dotted for sections: ``training.epochs``)."""

    flag: str
    key: str
    verbs: frozenset[str]
    constant: bool | None = None  # a switch storing this value (e.g. --no-cache stores False)
    repeat: bool = False  # may be given several times (a list)
    help: str | None = None  # instead of the key's description (a switch that turns a key off says what it does)

    @property
    def dest(self) -> str:
        return _DEST_PREFIX + self.key


def _section_flags(
    section: str,
    verbs: frozenset[str],
    switches: dict[str, tuple[str, str]] | None = None,
    skip: tuple[str, ...] = (),
) -> list[ConfigFlag]:
    """A flag per field of a config section, named after it; ``switches`` name flags (and their help) that
    clear a boolean."""
    switches = switches or {}
    return [
        ConfigFlag(switches[name][0], f"{section}.{name}", verbs, constant=False, help=switches[name][1])
        if name in switches
        else ConfigFlag("--" + name.replace("_", "-"), f"{section}.{name}", verbs)
        for name in _field_model(section).model_fields
        if name not in skip
    ]


def _field_model(section: str) -> type[BaseModel]:
    annotation = PipelineConfig.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


CONFIG_FLAGS: tuple[ConfigFlag, ...] = (
    ConfigFlag("--data-dir", "data_dir", ALL_VERBS),
    ConfigFlag("--schema", "schema_path", ALL_VERBS),
    ConfigFlag("--serving-dir", "serving_dir", ALL_VERBS | RESULT_VERBS | {SERVE}),
    ConfigFlag("--pipeline-root", "pipeline_root", ALL_VERBS | RESULT_VERBS),
    ConfigFlag("--data-root", "data_root", SPAN_VERBS),
    ConfigFlag("--span-pattern", "span_pattern", SPAN_VERBS),
    ConfigFlag("--spans", "spans", SPAN_VERBS),
    ConfigFlag("--metadata-path", "metadata_path", LOCAL_VERBS | STORE_VERBS),
    ConfigFlag("--metadata-uri", "metadata_uri", LOCAL_VERBS | STORE_VERBS),
    ConfigFlag("--accept-drift", "accept_drift", LOCAL_VERBS, constant=True),
    ConfigFlag("--keep-versions", "keep_versions", PIPELINE_VERBS),
    ConfigFlag("--keep-runs", "keep_runs", LOCAL_VERBS | {PRUNE_RUNS}),
    ConfigFlag("--canary", "canary", PIPELINE_VERBS, constant=True),
    ConfigFlag("--repeats", "repeats", LOCAL_VERBS),
    ConfigFlag("--optimize", "optimization.variants", LOCAL_VERBS),
    ConfigFlag("--max-optimization-drop", "optimization.max_drop", LOCAL_VERBS),
    ConfigFlag("--sparsity", "optimization.sparsity", LOCAL_VERBS),
    ConfigFlag("--pipeline-name", "pipeline_name", PIPELINE_VERBS | RESULT_VERBS),
    ConfigFlag("--framework", "framework", PIPELINE_VERBS),
    ConfigFlag("--eval-buckets", "eval_buckets", PIPELINE_VERBS),
    ConfigFlag("--test-buckets", "test_buckets", PIPELINE_VERBS),
    ConfigFlag("--max-bad-images", "max_bad_images", PIPELINE_VERBS),
    ConfigFlag("--max-image-pixels", "max_image_pixels", PIPELINE_VERBS | {SERVE}),
    ConfigFlag(
        "--no-cache",
        "enable_cache",
        frozenset({RUN, RETRAIN, COMPILE, SUBMIT}),
        constant=False,
        help="run every component again: reuse none of TFX's cached component outputs (enable_cache: false)",
    ),
    ConfigFlag("--beam-arg", "beam_args", PIPELINE_VERBS, repeat=True),
    *_section_flags("training", ALL_VERBS),
    *_section_flags("evaluation", PIPELINE_VERBS),
    ConfigFlag("--data-fingerprint", "kubeflow.data_fingerprint", frozenset({COMPILE, SUBMIT, SCHEDULE})),
    *_section_flags("serving", frozenset({SERVE})),
    *_section_flags(
        "kubeflow",
        frozenset({COMPILE}),
        switches={
            "baseline": (
                "--no-baseline",
                "no longer needed (the spec has no resolver tasks); accepted for old scripts, with a notice "
                "(kubeflow.baseline: false)",
            )
        },
        skip=("data_fingerprint",),
    ),
)


def _field(key: str) -> Any:
    section, _, name = key.rpartition(".")
    model = _field_model(section) if section else PipelineConfig
    return model.model_fields[name]


def _argument_type(annotation: Any) -> tuple[Any, list[Any] | None]:
    """(argparse type, choices) for a config field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return type(args[0]), list(args)
    if origin in (tuple, list):
        return str, None  # comma-separated, parsed by the model
    if args and origin is not None:  # Optional[X]
        return _argument_type(args[0])
    return (annotation if annotation in (int, float, str) else str), None


def add_config_flags(parser: argparse.ArgumentParser, verb: str, *also: str) -> None:
    """``--config FILE.yaml`` and every config flag ``verb`` (or any verb in ``also``) takes."""
    parser.add_argument("--config", type=Path, help="YAML file with config values (flags override it)")
    for flag in CONFIG_FLAGS:
        if not flag.verbs & {verb, *also}:
            continue
        field = _field(flag.key)
        help_text = flag.help or field.description or flag.key
        if flag.constant is not None:
            action = "store_true" if flag.constant else "store_false"
            parser.add_argument(flag.flag, dest=flag.dest, action=action, default=argparse.SUPPRESS, help=help_text)
            continue
        kind, choices = _argument_type(field.annotation)
        if flag.key == "framework":
            help_text = f"{', '.join(framework_choices())}, or a comma-separated list (default {field.default})"
        parser.add_argument(
            flag.flag,
            dest=flag.dest,
            type=kind,
            choices=choices,
            action="append" if flag.repeat else "store",
            default=argparse.SUPPRESS,
            metavar=flag.flag.lstrip("-").replace("-", "_").upper(),
            help=help_text,
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config values given as flags, as a nested mapping (``{"training": {"epochs": 3}}``)."""
    overrides: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith(_DEST_PREFIX):
            continue
        *sections, name = dest.removeprefix(_DEST_PREFIX).split(".")
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return overrides


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults (or ``base``), then ``--config``, then flags: the config every verb builds."""
    return load_config(getattr(args, "config", None), config_overrides(args), base)


def flags_for(verb: str) -> Iterable[str]:
    return (flag.flag for flag in CONFIG_FLAGS if verb in flag.verbs)


def given_flags(args: argparse.Namespace, verb: str, *, outside: bool = False) -> list[str]:
    """The config flags given on the command line that ``verb`` takes (``outside``: that it does not take)."""
    given = {dest for dest in vars(args) if dest.startswith(_DEST_PREFIX)}
    return [f.flag for f in CONFIG_FLAGS if f.dest in given and (verb in f.verbs) != outside]
