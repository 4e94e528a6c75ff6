"""``twinflow status``: what each framework serves, from which data (read from the serving folder alone)."""

from __future__ import annotations

import argparse
import json

from twinflow.pipelines.cli.flags import STATUS, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    status = verbs.add_parser(STATUS, allow_abbrev=False, help="what each framework serves, from which data")
    add_config_flags(status, STATUS)  # the store flags too: not read, taken as history takes them
    status.add_argument("--framework", help="one framework (default: every one configured)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> int:
    from twinflow.core.registry import resolve_frameworks
    from twinflow.model_store.operations import format_status, status

    config = config_from_args(args)
    frameworks = resolve_frameworks(args.framework) if args.framework else config.frameworks
    rows = status(config.serving_dir, frameworks)
    print(json.dumps(rows, indent=1) if args.json else format_status(rows))
    return 0
