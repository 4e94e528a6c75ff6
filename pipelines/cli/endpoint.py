"""What ``submit`` and ``schedule`` share: the Kubeflow Pipelines endpoint's flags, the run's parameter values
from the flags and the spec, and the one-line answer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.pipelines.cli.flags import SUBMIT, config_from_args
from twinflow.pipelines.kubeflow.specfile import DEFAULT_SPEC


def add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help=f"compiled spec (default {DEFAULT_SPEC})")
    parser.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080 (default $KFP_HOST)")
    parser.add_argument("--namespace", help="Kubernetes namespace on multi-user KFP (default $KFP_NAMESPACE)")
    parser.add_argument("--token", help="bearer token (prefer $KFP_TOKEN or --token-file: flags show in ps)")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument("--experiment", default="twinflow", help="KFP experiment (created when missing)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="any spec parameter")


def run_values(args: argparse.Namespace) -> tuple[Any, PipelineConfig, dict[str, str]]:
    """(endpoint, config, parameter values) from the flags; validated against the spec before any request."""
    from twinflow.pipelines.kubeflow.endpoint import Endpoint
    from twinflow.pipelines.kubeflow.specfile import (
        TRAINING_CONFIG_PARAM,
        compiled_training,
        missing_code,
        read_spec,
        resolver_tasks,
        run_parameters,
    )

    spec, _ = read_spec(args.spec)
    if missing := missing_code(spec):
        raise ConfigError(
            f"{args.spec} was compiled by another twinflow version: its steps import {', '.join(missing[:3])}"
            f"{', …' if len(missing) > 3 else ''}, which this version does not have; compile it again with "
            "'twinflow compile' (and build and push the image of this version)"
        )
    extra: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        extra[name] = value
    base = {"training": compiled_training(spec, extra.get(TRAINING_CONFIG_PARAM))}
    config = config_from_args(args, base=base)
    params = run_parameters(spec, config, extra)
    if resolver_tasks(spec):
        print(
            f"twinflow {args.verb}: note: {args.spec} has resolver tasks {resolver_tasks(spec)}, which open-source "
            "Kubeflow Pipelines cannot run; compile it again with 'twinflow compile' (specs it writes have none)",
            file=sys.stderr,
        )
    return Endpoint.resolve(args.host, args.namespace, args.token, args.token_file), config, params


def pipeline_root(config: PipelineConfig) -> str | None:
    return config.pipeline_root if "pipeline_root" in config.model_fields_set else None


def report_created(verb: str, action: Callable[[], Any]) -> int:
    """Run the request and print what the server created (errors reach the CLI as KubeflowError)."""
    result = action()
    print(f"pipeline {result.pipeline_id} version {result.version_id}, experiment {result.experiment_id}")
    print(f"{'run' if verb == SUBMIT else 'recurring run'} {result.run_id}: {result.url}")
    return 0
