"""The compiled spec as a file: write and read it, and turn run flags into its parameter values.

Kept free of TFX and TensorFlow imports so that ``twinflow submit`` and ``schedule`` start fast.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from twinflow.core.config import PipelineConfig, TrainingConfig
from twinflow.core.contract import TRAINING_CONFIG_KEY
from twinflow.core.errors import ConfigError

DEFAULT_SPEC = Path("work/kubeflow/pipeline.yaml")  # where compile writes and submit, schedule read

SPEC_SUFFIXES = (".yaml", ".yml")
# Where the Dockerfile puts things (tests/test_dockerfile.py keeps the two in step).
IMAGE_SCHEMA_DIR = "/opt/twinflow/schemas"
IMAGE_SCHEMA_FILE = f"{IMAGE_SCHEMA_DIR}/fashion_mnist/schema.pbtxt"
DEFAULT_SERVING_DIR = "/mnt/serving"
TRAINING_CONFIG_PARAM = "training_config"


def write_spec(path: Path, spec: dict[str, Any], platform: dict[str, Any] | None = None) -> Path:
    """YAML as the KFP SDK writes it: the pipeline spec, then the platform spec as a second document."""
    if path.suffix not in SPEC_SUFFIXES:
        raise ConfigError(f"{path}: a KFP pipeline spec is written as YAML; use a {' or '.join(SPEC_SUFFIXES)} name")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n# Compiled by twinflow compile\n"
    documents = [spec] if platform is None else [spec, platform]
    path.write_text(header + yaml.safe_dump_all(documents, sort_keys=True))
    return path


def read_spec(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pipeline spec, platform spec or None) from a compiled YAML file."""
    if not Path(path).is_file():
        raise ConfigError(f"pipeline spec {path} does not exist; write it with 'twinflow compile --output {path}'")
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not documents or "root" not in documents[0]:
        raise ConfigError(f"{path} is not a KFP pipeline spec (no 'root' in its first YAML document)")
    return documents[0], (documents[1] if len(documents) > 1 else None)


def parameter_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline parameters a run may set, with the defaults compiled into the spec."""
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: definition.get("defaultValue") for name, definition in parameters.items()}


def training_config_json(training: TrainingConfig) -> str:
    """The ``training_config`` value for a training section (same shape create_pipeline passes)."""
    return json.dumps({TRAINING_CONFIG_KEY: training.to_dict()}, sort_keys=True)


def compiled_training(spec: Mapping[str, Any], override: str | None = None) -> dict[str, Any]:
    """The training section compiled into the spec (or given as a raw ``training_config`` value)."""
    raw = override or parameter_defaults(spec).get(TRAINING_CONFIG_PARAM) or "{}"
    try:
        section = json.loads(raw).get(TRAINING_CONFIG_KEY, {})
    except (ValueError, AttributeError) as err:
        raise ConfigError(f"{TRAINING_CONFIG_PARAM} must be JSON {{{TRAINING_CONFIG_KEY!r}: {{...}}}}: {err}") from None
    if not isinstance(section, dict):
        raise ConfigError(f"{TRAINING_CONFIG_PARAM}: {TRAINING_CONFIG_KEY!r} must be a mapping, got {section!r}")
    return section


def run_parameters(spec: Mapping[str, Any], config: PipelineConfig, extra: Mapping[str, str]) -> dict[str, str]:
    """Parameter values for one run: the config values that were given, its training section, and ``extra``.

    ``config`` was built on the spec's compiled training section, so its training part is
    always complete; it is sent only when it differs from the compiled one. Unknown parameter
    names fail here, before anything reaches the cluster.
    """
    defaults = parameter_defaults(spec)
    given = config.model_fields_set
    params = {name: value for name, value in extra.items() if name != TRAINING_CONFIG_PARAM}
    for key, parameter in (("data_dir", "input_base"), ("schema_path", "schema_file"), ("serving_dir", "serving_dir")):
        if key in given and getattr(config, key) is not None:
            params[parameter] = str(getattr(config, key))
    if config.kubeflow.data_fingerprint is not None:
        params["input_fingerprint"] = config.kubeflow.data_fingerprint
    if TRAINING_CONFIG_PARAM in extra or config.training != TrainingConfig.from_dict(compiled_training(spec)):
        params[TRAINING_CONFIG_PARAM] = training_config_json(config.training)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"the spec has no parameter(s) {unknown}; it takes {sorted(defaults)}")
    return params


def resolver_tasks(spec: Mapping[str, Any]) -> list[str]:
    """Tasks run by a resolver executor, which the open-source KFP backend does not implement."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return sorted(
        name
        for name, task in spec["root"]["dag"]["tasks"].items()
        if "resolver" in executors.get(spec["components"][task["componentRef"]["name"]]["executorLabel"], {})
    )


def code_paths(spec: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(executor classes, functions, modules) the spec names for its containers to import."""
    executors = []
    for body in spec.get("deploymentSpec", {}).get("executors", {}).values():
        args = body.get("container", {}).get("args", [])
        if "--executor_class_path" in args:
            executors.append(args[args.index("--executor_class_path") + 1])
    constants = {
        (name, value["runtimeValue"]["constant"])
        for task in spec["root"]["dag"]["tasks"].values()
        for name, value in task.get("inputs", {}).get("parameters", {}).items()
        if value.get("runtimeValue", {}).get("constant")
    }
    functions = sorted(v for name, v in constants if name in ("run_fn", "preprocessing_fn"))
    modules = sorted(v for name, v in constants if name == "module_path")
    return executors, functions, modules


def missing_code(spec: Mapping[str, Any]) -> list[str]:
    """The modules the spec's steps would import that this twinflow does not have: a spec compiled by another
    version (before 0.2 twinflow's code lived in top-level packages, ``trainers.keras_trainer.run_fn``)."""
    executors, functions, modules = code_paths(spec)
    wanted = sorted({path.rpartition(".")[0] for path in [*executors, *functions]} | set(modules))
    return [module for module in wanted if not _findable(module)]


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or one that refuses its bare name
        return False
