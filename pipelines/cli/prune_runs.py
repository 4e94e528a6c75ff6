"""``twinflow prune-runs``: remove older runs' artifacts, reports and logs; never what a served model needs."""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import PRUNE_RUNS, add_config_flags, config_from_args
from twinflow.pipelines.run.retention import DEFAULT_KEEP_RUNS, DEFAULT_KEEP_TICK_DAYS


def register(verbs: argparse._SubParsersAction) -> None:
    prune = verbs.add_parser(
        PRUNE_RUNS,
        allow_abbrev=False,
        help="remove older runs' artifacts, reports and logs from the pipeline root; never what a served model needs",
        description="Keep whole the newest --keep-runs runs and every run that pushed a version still in the "
        "serving folder; of other runs keep the newest blessed model of each framework and the small records "
        "history reads (evaluations, blessings, drift reports, push records); remove the rest of their artifacts, "
        "their reports and logs, and schedule --local tick files older than --keep-tick-days. Removed artifacts "
        "are marked DELETED in ML Metadata, so no later run is answered from them by TFX's cache. "
        f"Without --keep-runs (or keep_runs in --config) {DEFAULT_KEEP_RUNS} runs are kept.",
    )
    add_config_flags(prune, PRUNE_RUNS)
    prune.add_argument(
        "--keep-tick-days",
        type=float,
        default=DEFAULT_KEEP_TICK_DAYS,
        metavar="D",
        help=f"schedule --local tick logs and summaries to keep, in days (default {DEFAULT_KEEP_TICK_DAYS:g})",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed and its size; remove nothing")
    prune.set_defaults(handler=prune_old_runs)


def prune_old_runs(args: argparse.Namespace) -> int:
    from twinflow.pipelines.run.retention import format_plan, prune_runs

    config = config_from_args(args)
    keep = config.keep_runs or DEFAULT_KEEP_RUNS
    plan = prune_runs(config, keep, args.keep_tick_days, args.dry_run)
    print(format_plan(plan, keep, args.dry_run))
    return 0
