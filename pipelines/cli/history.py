"""``twinflow history``: one row per run (spans, drift, accuracy, decisions, what was served), without TensorFlow."""

from __future__ import annotations

import argparse
import json

from twinflow.pipelines.cli.flags import HISTORY, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    history = verbs.add_parser(
        HISTORY, allow_abbrev=False, help="one row per run: spans, drift, accuracy, decisions, what was served"
    )
    add_config_flags(history, HISTORY)
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=show_history)


def show_history(args: argparse.Namespace) -> int:
    from twinflow.pipelines.retraining.history import format_history, history

    config = config_from_args(args)
    rows = history(config)
    print(json.dumps(rows, indent=1) if args.json else format_history(rows))
    return 0
