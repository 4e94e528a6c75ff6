"""``twinflow retrain | rollback | promote | status | history | report | lineage | prune-runs``: runs over time.

Registered by ``twinflow.pipelines.cli``. ``retrain`` takes every flag of ``run`` plus the span flags;
``schedule --local`` (in ``twinflow.pipelines.cli.kubeflow``, beside the Kubeflow schedule) runs it on a cron.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from twinflow.core import fs
from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError, DataDriftError, TwinflowError
from twinflow.pipelines.cli.flags import FORCE_HELP, RETRAIN, RUN, add_config_flags, config_from_args
from twinflow.pipelines.retraining.scheduler import SUMMARY_ENV  # where a scheduled tick's retrain writes its summary
from twinflow.pipelines.run.retention import DEFAULT_KEEP_RUNS, DEFAULT_KEEP_TICK_DAYS


def add_retraining_verbs(verbs: argparse._SubParsersAction) -> None:
    retrain = verbs.add_parser(
        RETRAIN,
        allow_abbrev=False,
        help="run the pipeline once on the latest spans of --data-root; 'no new data' when nothing arrived",
        description="Train on the latest --spans span folders of --data-root (laid out as --span-pattern). "
        "Exits 0 without running anything when no span is newer than the last completed run's "
        "(--redo-span N runs the newest span again). "
        "The drift gate compares the new data with what each served model was trained on; "
        "a model is pushed only when blessed and not worse than the served one.",
    )
    add_config_flags(retrain, RETRAIN)
    retrain.add_argument(
        "--redo-span",
        type=int,
        metavar="N",
        help="train on span N (the newest) again, though a completed run used it up: e.g. after a config mistake "
        "left it without a push; refused when it pushed, unless --force. Recorded in the history",
    )
    retrain.add_argument("--verbose", action="store_true", help="show TensorFlow's, Beam's and TFX's own log too")
    retrain.add_argument(
        "--force",
        action="store_true",
        help=FORCE_HELP + "; also when no span is newer than the last run's; with --redo-span, redo a span that pushed",
    )
    retrain.set_defaults(handler=cmd_retrain)

    rollback = verbs.add_parser(
        "rollback",
        allow_abbrev=False,
        help="serve an earlier version again, re-published as the newest version number",
    )
    _add_serving_flags(rollback)
    rollback.add_argument("--framework", required=True, help="whose served model to roll back")
    rollback.add_argument("--to", type=int, help="the version to serve (default: the one before the served one)")
    rollback.set_defaults(handler=_cmd_rollback)

    promote = verbs.add_parser(
        "promote",
        allow_abbrev=False,
        help="move the 'stable' label to the 'canary' version (pushed with --canary); a running server follows",
    )
    _add_serving_flags(promote)
    promote.add_argument("--framework", required=True, help="whose canary to promote")
    promote.set_defaults(handler=_cmd_promote)

    status = verbs.add_parser("status", allow_abbrev=False, help="what each framework serves, from which data")
    _add_serving_flags(status, metadata=True)  # not read (the serving folder says it all), taken as history takes them
    status.add_argument("--framework", help="one framework (default: every one configured)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_status)

    history = verbs.add_parser(
        "history", allow_abbrev=False, help="one row per run: spans, drift, accuracy, decisions, what was served"
    )
    _add_serving_flags(history, metadata=True)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=_cmd_history)

    report = verbs.add_parser(
        "report", allow_abbrev=False, help="rebuild a run's report (report.md/json/html) from ML Metadata"
    )
    _add_serving_flags(report, metadata=True)
    report.add_argument("--run", help="the run id (default: the latest run)")
    report.add_argument(
        "--output",
        metavar="DIR",
        help="write the rebuilt report into DIR (created if missing) and nowhere else; "
        "default: the run's own folder, <pipeline-root>/reports/<run>/",
    )
    report.add_argument("--open", action="store_true", help="open report.html in a browser")
    report.set_defaults(handler=_cmd_report)

    prune = verbs.add_parser(
        "prune-runs",
        allow_abbrev=False,
        help="remove older runs' artifacts, reports and logs from the pipeline root; never what a served model needs",
        description="Keep whole the newest --keep-runs runs and every run that pushed a version still in the "
        "serving folder; of other runs keep the newest blessed model of each framework and the small records "
        "history reads (evaluations, blessings, drift reports, push records); remove the rest of their artifacts, "
        "their reports and logs, and schedule --local tick files older than --keep-tick-days. Removed artifacts "
        "are marked DELETED in ML Metadata, so no later run is answered from them by TFX's cache.",
    )
    _add_serving_flags(prune, metadata=True)
    prune.add_argument(
        "--keep-runs",
        dest="config:keep_runs",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"runs to keep whole, newest first (default: keep_runs in --config, else {DEFAULT_KEEP_RUNS})",
    )
    prune.add_argument(
        "--keep-tick-days",
        type=float,
        default=DEFAULT_KEEP_TICK_DAYS,
        metavar="D",
        help=f"schedule --local tick logs and summaries to keep, in days (default {DEFAULT_KEEP_TICK_DAYS:g})",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed and its size; remove nothing")
    prune.set_defaults(handler=_cmd_prune_runs)

    lineage = verbs.add_parser(
        "lineage", allow_abbrev=False, help="from a served version back to its trainer, transform, statistics, data"
    )
    _add_serving_flags(lineage, metadata=True)
    lineage.add_argument("--framework", required=True, help="the framework")
    lineage.add_argument("--version", type=int, help="the version (default: the served one)")
    lineage.add_argument("--json", action="store_true", help="print JSON")
    lineage.set_defaults(handler=_cmd_lineage)


def _add_serving_flags(parser: argparse.ArgumentParser, metadata: bool = False) -> None:
    """``--config`` and the location flags of ``run`` that a command reading the results needs."""
    parser.add_argument("--config", help="YAML file with config values (flags override it)")
    flags = [("--serving-dir", "serving folder"), ("--pipeline-root", "TFX root"), ("--pipeline-name", "pipeline")]
    if metadata:
        flags += [("--metadata-path", "SQLite ML Metadata"), ("--metadata-uri", "mysql://USER@HOST:PORT/DB")]
    for flag, help_text in flags:
        name = flag.removeprefix("--").replace("-", "_")
        parser.add_argument(
            flag, dest=f"config:{name}", metavar=name.upper(), default=argparse.SUPPRESS, help=help_text
        )


def _frameworks(config: PipelineConfig, one: str | None) -> tuple[str, ...]:
    if one is None:
        return config.frameworks
    from twinflow.core.registry import resolve_frameworks

    return resolve_frameworks(one)


def cmd_retrain(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not config.data_root:
        raise ConfigError(
            "retrain needs --data-root (or data_root in --config): a folder of span folders such as "
            f"DATA_ROOT/{config.span_pattern}/<class>/<images>; to train on one fixed folder use 'twinflow {RUN}'"
        )
    from twinflow.pipelines.run.local import run_local

    try:
        report = run_local(
            config, log=True, verbose=args.verbose, only_new_data=True, redo_span=args.redo_span, force=args.force
        )
    except DataDriftError as err:
        _write_summary({"outcome": "drift", "drift": "drift", "reason": str(err)})
        raise
    except TwinflowError as err:
        _write_summary({"outcome": "failed", "reason": str(err)})
        raise
    _write_summary(tick_summary(report))
    return 0 if report.get("no_new_data") or all("train_accuracy" in r for r in report["frameworks"]) else 1


def tick_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a scheduled tick logs in one line (the scheduler reads it from $TWINFLOW_TICK_SUMMARY)."""
    if report.get("no_new_data"):
        return {"outcome": "no new data", "spans": report.get("spans", [])}
    frameworks = {
        row["framework"]: {
            "test_accuracy": row.get("test_accuracy"),
            "pushed": row.get("pushed", False),
            "version": row.get("pushed_version"),
            "reason": row.get("push_reason") or row.get("status"),
        }
        for row in report["frameworks"]
    }
    return {
        "outcome": "unchanged" if report.get("unchanged_since") else "done",
        "spans": report.get("spans", []),
        "drift": report.get("drift", {}).get("verdict") if isinstance(report.get("drift"), dict) else None,
        "frameworks": frameworks,
    }


def _write_summary(summary: dict[str, Any]) -> None:
    path = os.environ.get(SUMMARY_ENV)
    if path:
        fs.write_text(path, json.dumps(summary))


def _cmd_rollback(args: argparse.Namespace) -> int:
    from twinflow.model_store.operations import rollback

    config = config_from_args(args)
    version = rollback(config.serving_dir, args.framework, args.to)
    print(f"{args.framework}: now serving version {version.number} at {version.path}")
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from twinflow.model_store.operations import promote

    config = config_from_args(args)
    labels = promote(config.serving_dir, args.framework)
    print(f"{args.framework}: stable is now version {labels['stable']} (no canary)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from twinflow.model_store.operations import format_status, status

    config = config_from_args(args)
    rows = status(config.serving_dir, _frameworks(config, args.framework))
    print(json.dumps(rows, indent=1) if args.json else format_status(rows))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from twinflow.pipelines.retraining.history import format_history, history

    config = config_from_args(args)
    rows = history(config)
    print(json.dumps(rows, indent=1) if args.json else format_history(rows))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") == "1":  # core's default, not the user's: quieter here
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # CUDA plugin registration and tf.data notes are not the report
    from twinflow.pipelines.run.local import rebuild_report

    config = config_from_args(args)
    if args.output:
        _check_output_folder(args.output)
    out = rebuild_report(config, args.run, args.output)
    page = fs.join(out, "report.html")
    print(f"report written to {out}: {page}")
    if args.open:
        import webbrowser

        webbrowser.open(page if fs.is_remote(page) else "file://" + os.path.abspath(page))
    return 0


def _check_output_folder(folder: str) -> None:
    """``--output`` must be a folder or become one: say so before minutes of rebuilding, not after."""
    problem = fs.unwritable_local_folder(folder)
    if problem:
        raise ConfigError(f"--output {folder}: {problem}; pass a folder for the rebuilt report")


def _cmd_prune_runs(args: argparse.Namespace) -> int:
    from twinflow.pipelines.run.retention import format_plan, prune_runs

    config = config_from_args(args)
    keep = config.keep_runs or DEFAULT_KEEP_RUNS
    plan = prune_runs(config, keep, args.keep_tick_days, args.dry_run)
    print(format_plan(plan, keep, args.dry_run))
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from twinflow.pipelines.retraining.history import format_lineage, lineage

    config = config_from_args(args)
    chain = lineage(config, args.framework, args.version)
    print(json.dumps(chain, indent=1) if args.json else format_lineage(chain))
    return 0


def cmd_schedule_local(args: argparse.Namespace) -> int:
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
