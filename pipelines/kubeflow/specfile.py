"""The compiled spec as a file: write and read it, and turn run flags into its parameter values.

Kept free of TFX and TensorFlow imports so that ``twinflow submit`` and ``schedule`` start fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import ConfigError, TrainingConfig
from trainers.common import TRAINING_CONFIG_KEY

SPEC_SUFFIXES = (".yaml", ".yml")
# Where the Dockerfile puts things (tests/test_dockerfile.py keeps the two in step).
IMAGE_SCHEMA_DIR = "/opt/twinflow/schemas"
IMAGE_SCHEMA_FILE = f"{IMAGE_SCHEMA_DIR}/fashion_mnist/schema.pbtxt"
DEFAULT_SERVING_DIR = "/mnt/serving"
TRAINING_CONFIG_PARAM = "training_config"


def write_spec(path: Path, spec: dict[str, Any], platform: dict[str, Any] | None = None) -> Path:
    """YAML as the KFP SDK writes it: the pipeline spec, then the platform spec as a second document."""
    if path.suffix not in SPEC_SUFFIXES:
        raise ValueError(f"{path}: a KFP pipeline spec is written as YAML; use a {' or '.join(SPEC_SUFFIXES)} name")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n# Compiled by twinflow compile\n"
    documents = [spec] if platform is None else [spec, platform]
    path.write_text(header + yaml.safe_dump_all(documents, sort_keys=True))
    return path


def read_spec(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pipeline spec, platform spec or None) from a compiled YAML file."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"pipeline spec {path} does not exist; write it with 'twinflow compile --output {path}'"
        )
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not documents or "root" not in documents[0]:
        raise ValueError(f"{path} is not a KFP pipeline spec (no 'root' in its first YAML document)")
    return documents[0], (documents[1] if len(documents) > 1 else None)


def parameter_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline parameters a run may set, with the defaults compiled into the spec."""
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: definition.get("defaultValue") for name, definition in parameters.items()}


def training_config_json(values: Mapping[str, Any]) -> str:
    """The ``training_config`` value for a training section (same shape create_pipeline passes)."""
    return json.dumps({TRAINING_CONFIG_KEY: dict(values)}, sort_keys=True)


def run_parameters(
    spec: Mapping[str, Any], values: Mapping[str, str | None], training: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Parameter values for one run: those given, with ``training`` merged into the compiled training config.

    Unknown names and invalid training values fail here, before anything reaches the cluster.
    """
    defaults = parameter_defaults(spec)
    params = {name: value for name, value in values.items() if value is not None}
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"the spec has no parameter(s) {unknown}; it takes {sorted(defaults)}")
    if training or TRAINING_CONFIG_PARAM in params:
        raw = params.get(TRAINING_CONFIG_PARAM) or defaults.get(TRAINING_CONFIG_PARAM) or "{}"
        try:
            section = json.loads(raw).get(TRAINING_CONFIG_KEY, {})
        except (ValueError, AttributeError) as err:
            raise ConfigError(
                f"{TRAINING_CONFIG_PARAM} must be JSON {{{TRAINING_CONFIG_KEY!r}: {{...}}}}: {err}"
            ) from None
        merged = TrainingConfig.from_dict({**section, **(training or {})})
        merged.validate()
        params[TRAINING_CONFIG_PARAM] = training_config_json(merged.to_dict())
    return params


def resolver_tasks(spec: Mapping[str, Any]) -> list[str]:
    """Tasks run by a resolver executor, which the open-source KFP backend does not implement."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    return sorted(
        name
        for name, task in spec["root"]["dag"]["tasks"].items()
        if "resolver" in executors.get(spec["components"][task["componentRef"]["name"]]["executorLabel"], {})
    )
