"""``twinflow retrain``: one run on the newest spans of a data root, or 'no new data' when nothing arrived.

``schedule --local`` runs it at each cron tick and reads the one-line summary it leaves in
``$TWINFLOW_TICK_SUMMARY`` (:func:`tick_summary`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from twinflow.core import fs
from twinflow.core.errors import ConfigError, DataDriftError, TwinflowError
from twinflow.pipelines.cli.flags import FORCE_HELP, RETRAIN, RUN, add_config_flags, config_from_args
from twinflow.pipelines.retraining.scheduler import SUMMARY_ENV  # where a scheduled tick's retrain writes its summary

if TYPE_CHECKING:
    from twinflow.pipelines.report.model import Report


def register(verbs: argparse._SubParsersAction) -> None:
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
    retrain.set_defaults(handler=retrain_once)


def retrain_once(args: argparse.Namespace) -> int:
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
    return 0 if report.no_new_data or report.all_trained else 1


def tick_summary(report: Report) -> dict[str, Any]:
    """What a scheduled tick logs in one line (the scheduler reads it from $TWINFLOW_TICK_SUMMARY)."""
    if report.no_new_data:
        return {"outcome": "no new data", "spans": report.spans or []}
    frameworks = {
        row.framework: {
            "test_accuracy": row.test_accuracy,
            "pushed": row.pushed,
            "version": row.pushed_version,
            "reason": row.push_reason or (None if row.trained else row.status),
        }
        for row in report.frameworks
    }
    return {
        "outcome": "unchanged" if report.unchanged_since else "done",
        "spans": report.spans or [],
        "drift": report.drift.get("verdict") if report.drift else None,
        "frameworks": frameworks,
    }


def _write_summary(summary: dict[str, Any]) -> None:
    path = os.environ.get(SUMMARY_ENV)
    if path:
        fs.write_text(path, json.dumps(summary))
