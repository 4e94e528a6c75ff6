"""``twinflow compile | submit | schedule``: the Kubeflow Pipelines verbs, registered by pipelines.cli."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.config import FRAMEWORK_CHOICES
from pipelines.flags import RUN_FLAGS, TRAINING_FLAGS

DEFAULT_SPEC = Path("work/kubeflow/pipeline.yaml")
IMAGE_ENV = "TWINFLOW_IMAGE"


def add_kubeflow_verbs(verbs: argparse._SubParsersAction) -> None:
    """Register compile, submit and schedule on the ``twinflow`` parser."""
    compile_ = verbs.add_parser(
        "compile",
        help="compile the pipeline to a Kubeflow Pipelines (KFP v2) spec",
        description="Compile the same pipeline 'twinflow run' runs into a KFP v2 pipeline spec (YAML). "
        "Data location, schema, serving folder and training hyperparameters become run parameters; "
        "frameworks, thresholds, number of classes, image and Beam args are fixed here.",
    )
    _add_compile_flags(compile_)
    compile_.set_defaults(handler=_cmd_compile)

    submit = verbs.add_parser("submit", help="upload a compiled spec and start a run on Kubeflow Pipelines")
    _add_endpoint_flags(submit)
    _add_run_parameter_flags(submit)
    submit.add_argument("--run-name", help="run name (default: <pipeline>-<timestamp>)")
    submit.add_argument("--no-cache", action="store_true", help="re-run every step instead of using KFP's cache")
    submit.set_defaults(handler=_cmd_submit)

    schedule = verbs.add_parser(
        "schedule",
        help="upload a compiled spec and create a recurring run (scheduled retraining)",
        description="Create a KFP recurring run: at most one run at a time, no catch-up of missed ticks. "
        "Caching is off by default so every tick re-reads the data (the data URI does not change between ticks).",
    )
    _add_endpoint_flags(schedule)
    _add_run_parameter_flags(schedule)
    schedule.add_argument("--cron", required=True, help="cron expression, 5 fields ('0 3 * * 1') or 6 (seconds first)")
    schedule.add_argument("--name", help="recurring run name (default: <pipeline>-retrain)")
    schedule.add_argument("--enable-cache", action="store_true", help="let scheduled runs reuse cached steps")
    schedule.set_defaults(handler=_cmd_schedule)


def _add_compile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_SPEC, help=f"spec file to write (default {DEFAULT_SPEC})"
    )
    parser.add_argument("--image", default=os.environ.get(IMAGE_ENV), help=f"container image (default ${IMAGE_ENV})")
    parser.add_argument(
        "--data-dir", required=True, help="images: gs:// URI or a path in the container (default of input_base)"
    )
    parser.add_argument("--pipeline-root", help="default artifact root, e.g. gs://bucket/twinflow (a run may override)")
    parser.add_argument("--serving-dir", help="default serving folder in the Pusher's container (default /mnt/serving)")
    parser.add_argument("--serving-pvc", help="existing PersistentVolumeClaim to mount at --serving-dir in the Pusher")
    parser.add_argument("--schema", help="schema .pbtxt: a path in the image or a gs:// URI (default: the image's)")
    parser.add_argument("--num-classes", type=int, help="number of classes (required unless --data-dir is local)")
    parser.add_argument("--data-fingerprint", help="default cache key of the data (computed when --data-dir is local)")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the latest-blessed-model resolver: open-source KFP cannot run resolver tasks",
    )
    parser.add_argument("--config", type=Path, help="YAML file with config values (flags override it)")
    parser.add_argument("--framework", choices=FRAMEWORK_CHOICES, help="which trainer(s): changes the graph")
    for flag, (key, kind, text) in RUN_FLAGS.items():
        if key.startswith(("training.", "evaluation.")) or key == "pipeline_name":
            parser.add_argument(flag, type=kind, dest=key.replace(".", "__"), metavar=_metavar(flag), help=text)
    parser.add_argument("--no-augment", action="store_true", help="turn training-time augmentation off")
    parser.add_argument("--no-cache", action="store_true", help="compile with KFP caching off for every step")
    parser.add_argument(
        "--beam-arg", action="append", dest="beam_args", metavar="ARG", help="Beam argument, repeatable"
    )


def _add_endpoint_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help=f"compiled spec (default {DEFAULT_SPEC})")
    parser.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080 (default $KFP_HOST)")
    parser.add_argument("--namespace", help="Kubernetes namespace on multi-user KFP (default $KFP_NAMESPACE)")
    parser.add_argument("--token", help="bearer token (prefer $KFP_TOKEN or --token-file: flags show in ps)")
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token")
    parser.add_argument("--experiment", default="twinflow", help="KFP experiment (created when missing)")
    parser.add_argument("--pipeline-root", help="artifact root for this run (default: the spec's, then KFP's)")


def _add_run_parameter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", dest="input_base", metavar="DATA_DIR", help="images for this run (parameter input_base)"
    )
    parser.add_argument(
        "--data-fingerprint", dest="input_fingerprint", metavar="FINGERPRINT", help="cache key of the data"
    )
    parser.add_argument("--schema", dest="schema_file", metavar="SCHEMA", help="schema .pbtxt for this run")
    parser.add_argument("--serving-dir", dest="serving_dir", help="serving folder for this run")
    for flag, (key, kind, text) in TRAINING_FLAGS.items():
        parser.add_argument(flag, type=kind, dest=f"training__{key}", metavar=_metavar(flag), help=text)
    parser.add_argument("--no-augment", action="store_true", help="turn training-time augmentation off")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="any spec parameter")


def _metavar(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_").upper()


def _cmd_compile(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.kubeflow.compiler import Deployment, compile_spec
    from pipelines.kubeflow.specfile import DEFAULT_SERVING_DIR, IMAGE_SCHEMA_FILE, write_spec

    if not args.image:
        raise ValueError(f"pass --image (the image built from the Dockerfile) or set {IMAGE_ENV}")
    overrides: dict[str, Any] = {
        key.replace("__", "."): value
        for key, value in vars(args).items()
        if key.startswith(("training__", "evaluation__")) or key == "pipeline_name"
    }
    overrides.update(framework=args.framework, beam_args=args.beam_args)
    if args.no_augment:
        overrides["training.augment"] = False
    if args.no_cache:
        overrides["enable_cache"] = False
    config = load_config(args.config, **overrides)
    num_classes, fingerprint = _data_facts(args.data_dir, args.num_classes, args.data_fingerprint)
    deployment = Deployment(
        image=args.image,
        data_uri=args.data_dir,
        pipeline_root=args.pipeline_root or "",
        num_classes=num_classes,
        data_fingerprint=fingerprint,
        schema_file=args.schema or IMAGE_SCHEMA_FILE,
        serving_dir=args.serving_dir or DEFAULT_SERVING_DIR,
        serving_pvc=args.serving_pvc,
        baseline=not args.no_baseline,
    )
    spec, platform = compile_spec(config, deployment)
    path = write_spec(args.output, spec, platform)
    print(f"pipeline spec written to {path} ({len(spec['root']['dag']['tasks'])} tasks, image {args.image})")
    for name, definition in sorted(spec["root"]["inputDefinitions"]["parameters"].items()):
        print(f"  parameter {name} = {definition['defaultValue']!r}")
    return 0


def _data_facts(data_uri: str, num_classes: int | None, fingerprint: str | None) -> tuple[int, str]:
    """Class count and fingerprint: from flags, else from the folder when it is local."""
    from pipelines.pipeline import count_classes, input_fingerprint

    local = "://" not in data_uri and Path(data_uri).is_dir()
    if num_classes is None:
        if not local:
            raise ValueError(
                f"cannot count classes in {data_uri} (not a local folder): pass --num-classes "
                "(and --data-fingerprint to key the cache on the data's version)"
            )
        num_classes = count_classes(data_uri)
    if fingerprint is None:
        fingerprint = input_fingerprint(data_uri) if local else ""
    return num_classes, fingerprint


def _run_values(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """(endpoint, parameter values) from the flags; validated against the spec before any request."""
    from pipelines.kubeflow.endpoint import Endpoint
    from pipelines.kubeflow.specfile import read_spec, resolver_tasks, run_parameters

    spec, _ = read_spec(args.spec)
    if resolver_tasks(spec):
        print(
            f"twinflow {args.verb}: note: {args.spec} has resolver tasks {resolver_tasks(spec)}, which open-source "
            "Kubeflow Pipelines cannot run; for it, compile with --no-baseline",
            file=sys.stderr,
        )
    values: dict[str, str | None] = {k: getattr(args, k) for k in ("input_base", "input_fingerprint", "schema_file")}
    values["serving_dir"] = args.serving_dir
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        values[name] = value
    training = {
        k[len("training__") :]: v for k, v in vars(args).items() if k.startswith("training__") and v is not None
    }
    if args.no_augment:
        training["augment"] = False
    params = run_parameters(spec, values, training)
    return Endpoint.resolve(args.host, args.namespace, args.token, args.token_file), params


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipelines.kubeflow.endpoint import submit

    def go() -> Any:
        endpoint, params = _run_values(args)
        caching = False if args.no_cache else None
        return submit(
            endpoint, args.spec, params, args.experiment, args.run_name, args.pipeline_root, enable_caching=caching
        )

    return _report(args.verb, go)


def _cmd_schedule(args: argparse.Namespace) -> int:
    from pipelines.kubeflow.endpoint import schedule

    def go() -> Any:
        endpoint, params = _run_values(args)
        return schedule(
            endpoint,
            args.spec,
            params,
            args.experiment,
            cron=args.cron,
            name=args.name,
            pipeline_root=args.pipeline_root,
            enable_caching=bool(args.enable_cache),
        )

    return _report(args.verb, go)


def _report(verb: str, action: Callable[[], Any]) -> int:
    """Run the request; a KubeflowError (host, status, message) is printed, not raised."""
    from pipelines.kubeflow.endpoint import KubeflowError

    try:
        result = action()
    except KubeflowError as err:
        print(f"twinflow {verb}: error: {err}", file=sys.stderr)
        return 1
    print(f"pipeline {result.pipeline_id} version {result.version_id}, experiment {result.experiment_id}")
    print(f"{'run' if verb == 'submit' else 'recurring run'} {result.run_id}: {result.url}")
    return 0
