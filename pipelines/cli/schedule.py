"""``twinflow schedule``: retraining on a cron: a Kubeflow recurring run, or with ``--local`` ``retrain`` on this
machine at each tick, in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.pipelines.cli.endpoint import add_endpoint_flags, pipeline_root, report_created, run_values
from twinflow.pipelines.cli.flags import RETRAIN, SCHEDULE, add_config_flags, config_from_args, given_flags


def register(verbs: argparse._SubParsersAction) -> None:
    schedule = verbs.add_parser(
        SCHEDULE,
        allow_abbrev=False,
        help="upload a compiled spec and create a recurring run (scheduled retraining)",
        description="Create a KFP recurring run: at most one run at a time, no catch-up of missed ticks. "
        "Caching is off by default so every tick re-reads the data (the data URI does not change between ticks).",
    )
    add_endpoint_flags(schedule)
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
    schedule.set_defaults(handler=schedule_retraining)


def schedule_retraining(args: argparse.Namespace) -> int:
    if args.local:
        return schedule_local(args)
    local_only = given_flags(args, SCHEDULE, outside=True) + (["--ticks"] if args.ticks is not None else [])
    if local_only:
        raise ConfigError(
            f"{', '.join(local_only)}: for 'schedule --local' only; a Kubeflow recurring run takes these "
            "from the compiled spec (twinflow compile)"
        )
    from twinflow.pipelines.kubeflow.endpoint import schedule

    def go() -> Any:
        endpoint, config, params = run_values(args)
        return schedule(
            endpoint,
            args.spec,
            params,
            args.experiment,
            cron=args.cron,
            name=args.name,
            pipeline_root=pipeline_root(config),
            enable_caching=bool(args.enable_cache),
        )

    return report_created(args.verb, go)


def schedule_local(args: argparse.Namespace) -> int:
    """``schedule --local``: ``retrain`` with this config at each cron tick, in the foreground, one at a time."""
    import yaml

    from twinflow.pipelines.retraining.scheduler import run_schedule, schedule_folder

    config = config_from_args(args)
    if not config.data_root:
        raise ConfigError("schedule --local needs --data-root (or data_root in --config): the folder spans arrive in")
    folder = schedule_folder(config.pipeline_root)
    if problem := fs.unwritable_local_folder(folder):
        raise ConfigError(f"the schedule's folder {folder} cannot be written ({problem}); pass another --pipeline-root")
    os.makedirs(folder, exist_ok=True)
    config_file = os.path.join(folder, "config.yaml")
    with open(config_file, "w") as handle:
        handle.write("# Written by 'twinflow schedule --local': what every tick's retrain runs with.\n")
        yaml.safe_dump(config.model_dump(mode="json"), handle, sort_keys=False)
    command = [sys.executable, "-m", "twinflow.pipelines.cli", RETRAIN, "--config", config_file]
    return run_schedule(args.cron, command, config.metadata_path, os.path.join(folder, "logs"), max_ticks=args.ticks)
