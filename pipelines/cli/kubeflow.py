"""``twinflow compile | submit | schedule``: the Kubeflow Pipelines verbs, registered by twinflow.pipelines.cli.

All three build their config through ``twinflow.pipelines.cli.flags`` like ``twinflow run``: the same
flags mean the same config keys (``--data-dir`` is where the images are, for every verb).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twinflow.core.config import KubeflowConfig, PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.core.repeats import node_id
from twinflow.pipelines.cli.flags import (
    COMPILE,
    RETRAIN,
    SCHEDULE,
    SUBMIT,
    add_config_flags,
    config_from_args,
    given_flags,
)

DEFAULT_SPEC = Path("work/kubeflow/pipeline.yaml")
IMAGE_ENV = "TWINFLOW_IMAGE"


def add_kubeflow_verbs(verbs: argparse._SubParsersAction) -> None:
    """Register compile, submit and schedule on the ``twinflow`` parser."""
    compile_ = verbs.add_parser(
        COMPILE,
        allow_abbrev=False,
        help="compile the pipeline to a Kubeflow Pipelines (KFP v2) spec",
        description="Compile the same pipeline 'twinflow run' runs into a KFP v2 pipeline spec (YAML). "
        "Data location, schema, serving folder and training hyperparameters become run parameters; "
        "frameworks, thresholds, number of classes, image, resources and Beam args are fixed here.",
    )
    compile_.add_argument(
        "--output", type=Path, default=DEFAULT_SPEC, help=f"spec file to write (default {DEFAULT_SPEC})"
    )
    add_config_flags(compile_, COMPILE)
    compile_.set_defaults(handler=_cmd_compile)

    submit = verbs.add_parser(
        SUBMIT, allow_abbrev=False, help="upload a compiled spec and start a run on Kubeflow Pipelines"
    )
    _add_endpoint_flags(submit)
    add_config_flags(submit, SUBMIT)
    submit.add_argument("--run-name", help="run name (default: <pipeline>-<timestamp>)")
    submit.set_defaults(handler=_cmd_submit)

    schedule = verbs.add_parser(
        SCHEDULE,
        allow_abbrev=False,
        help="upload a compiled spec and create a recurring run (scheduled retraining)",
        description="Create a KFP recurring run: at most one run at a time, no catch-up of missed ticks. "
        "Caching is off by default so every tick re-reads the data (the data URI does not change between ticks).",
    )
    _add_endpoint_flags(schedule)
    add_config_flags(schedule, SCHEDULE, RETRAIN)
    schedule.add_argument(
        "--local",
        action="store_true",
        help="run 'twinflow retrain' on this machine at each tick, in the foreground (Ctrl-C or SIGTERM stops it), "
        "instead of creating a Kubeflow recurring run; takes every flag of retrain",
    )
    schedule.add_argument("--ticks", type=int, help="with --local: stop after this many ticks")
    schedule.add_argument("--cron", required=True, help="cron expression, 5 fields ('0 3 * * 1') or 6 (seconds first)")
    schedule.add_argument("--name", help="recurring run name (default: <pipeline>-retrain)")
    schedule.add_argument("--enable-cache", action="store_true", help="let scheduled runs reuse cached steps")
    schedule.set_defaults(handler=_cmd_schedule)


def _add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help=f"compiled spec (default {DEFAULT_SPEC})")
    parser.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080 (default $KFP_HOST)")
    parser.add_argument("--namespace", help="Kubernetes namespace on multi-user KFP (default $KFP_NAMESPACE)")
    parser.add_argument("--token", help="bearer token (prefer $KFP_TOKEN or --token-file: flags show in ps)")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument("--experiment", default="twinflow", help="KFP experiment (created when missing)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="any spec parameter")


def _cmd_compile(args: argparse.Namespace) -> int:
    from twinflow.pipelines.kubeflow.compiler import compile_spec, deployed, step_images
    from twinflow.pipelines.kubeflow.specfile import write_spec

    config = config_from_args(args)
    if not config.kubeflow.baseline:
        print(
            "twinflow compile: note: --no-baseline (kubeflow.baseline: false) is no longer needed and changes "
            "nothing: the spec has no resolver tasks, each Evaluator compares its model with the version served "
            "in the serving volume",
            file=sys.stderr,
        )
    if "data_dir" not in config.model_fields_set and not config.data_root:
        raise ConfigError(
            "compile needs --data-dir (a fixed folder) or --data-root (span folders arriving over time), "
            "or either in --config: where the cluster reads the images"
        )
    image = config.kubeflow.image or os.environ.get(IMAGE_ENV)
    if not image:
        raise ConfigError(f"pass --image (the image built from the Dockerfile) or set {IMAGE_ENV}")
    fingerprint = _data_fingerprint(config, config.kubeflow.data_fingerprint)
    kubeflow = config.kubeflow.model_copy(update={"image": image, "data_fingerprint": fingerprint})
    if kubeflow.trainer_gpus:
        _warn_gpus_for_cpu_images(args.verb, kubeflow, config.frameworks, step_images(kubeflow))
    spec, platform = compile_spec(deployed(config.model_copy(update={"kubeflow": kubeflow})))
    path = write_spec(args.output, spec, platform)
    print(f"pipeline spec written to {path} ({len(spec['root']['dag']['tasks'])} tasks, image {image})")
    for name, definition in sorted(spec["root"]["inputDefinitions"]["parameters"].items()):
        print(f"  parameter {name} = {definition['defaultValue']!r}")
    return 0


# The image flag of each framework's Trainer and the Dockerfile build argument of its GPU image.
_GPU_IMAGES = {
    "keras": "--keras-trainer-image (an image built with TF_VARIANT=cuda)",
    "lightning": "--lightning-trainer-image (an image built with TORCH_VARIANT=cu128)",
}


def _warn_gpus_for_cpu_images(
    verb: str, kubeflow: KubeflowConfig, frameworks: tuple[str, ...], images: str | dict[str, str]
) -> None:
    """GPUs requested for Trainer steps that run the CPU image: the pods hold GPUs their framework cannot use."""
    own = images if isinstance(images, dict) else {}
    on_cpu_image = [name for name in frameworks if node_id("Trainer", name) not in own]
    if not on_cpu_image:
        return
    fixes = [_GPU_IMAGES[name] for name in on_cpu_image if name in _GPU_IMAGES]
    print(
        f"twinflow {verb}: warning: --trainer-gpus {kubeflow.trainer_gpus} requests GPUs for the "
        f"{', '.join(on_cpu_image)} Trainer step(s), which run the CPU image {kubeflow.image}"
        + (f"; pass {' and '.join(fixes)}" if fixes else ""),
        file=sys.stderr,
    )


def _data_fingerprint(config: PipelineConfig, fingerprint: str | None) -> str:
    """The data's cache key: from the config, else computed from the folder when it is local.

    Data in object storage is not listed at compile time: without --data-fingerprint its
    ImageExampleGen step is keyed on the location alone. With a data root the fingerprint stays
    empty: which spans a run reads is decided when its ImageExampleGen runs, and that step is
    compiled uncached.
    """
    from twinflow.components.image_example_gen.listing import list_input

    data_uri = config.input_base
    if "://" in data_uri or not Path(data_uri).is_dir():
        return fingerprint or ""
    listing, spans = list_input(data_uri, config.span_pattern if config.data_root else "", config.spans)
    if fingerprint is not None:
        return fingerprint
    return "" if spans else listing.fingerprint()


def _run_values(args: argparse.Namespace) -> tuple[Any, PipelineConfig, dict[str, str]]:
    """(endpoint, config, parameter values) from the flags; validated against the spec before any request."""
    from twinflow.pipelines.kubeflow.endpoint import Endpoint
    from twinflow.pipelines.kubeflow.specfile import (
        TRAINING_CONFIG_PARAM,
        compiled_training,
        read_spec,
        resolver_tasks,
        run_parameters,
    )

    spec, _ = read_spec(args.spec)
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


def _pipeline_root(config: PipelineConfig) -> str | None:
    return config.pipeline_root if "pipeline_root" in config.model_fields_set else None


def _cmd_submit(args: argparse.Namespace) -> int:
    from twinflow.pipelines.kubeflow.endpoint import submit

    def go() -> Any:
        endpoint, config, params = _run_values(args)
        caching = None if config.enable_cache else False  # None: as compiled
        return submit(
            endpoint, args.spec, params, args.experiment, args.run_name, _pipeline_root(config), enable_caching=caching
        )

    return _report(args.verb, go)


def _cmd_schedule(args: argparse.Namespace) -> int:
    if args.local:
        from twinflow.pipelines.cli.retraining import cmd_schedule_local

        return cmd_schedule_local(args)
    local_only = given_flags(args, SCHEDULE, outside=True) + (["--ticks"] if args.ticks is not None else [])
    if local_only:
        raise ConfigError(
            f"{', '.join(local_only)}: for 'schedule --local' only; a Kubeflow recurring run takes these "
            "from the compiled spec (twinflow compile)"
        )
    from twinflow.pipelines.kubeflow.endpoint import schedule

    def go() -> Any:
        endpoint, config, params = _run_values(args)
        return schedule(
            endpoint,
            args.spec,
            params,
            args.experiment,
            cron=args.cron,
            name=args.name,
            pipeline_root=_pipeline_root(config),
            enable_caching=bool(args.enable_cache),
        )

    return _report(args.verb, go)


def _report(verb: str, action: Callable[[], Any]) -> int:
    """Run the request and print what the server created (errors reach the CLI as KubeflowError)."""
    result = action()
    print(f"pipeline {result.pipeline_id} version {result.version_id}, experiment {result.experiment_id}")
    print(f"{'run' if verb == SUBMIT else 'recurring run'} {result.run_id}: {result.url}")
    return 0
