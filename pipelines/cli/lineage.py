"""``twinflow lineage``: from a served version back to its trainer, transform, statistics and data."""

from __future__ import annotations

import argparse
import json

from twinflow.pipelines.cli.flags import LINEAGE, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    lineage = verbs.add_parser(
        LINEAGE, allow_abbrev=False, help="from a served version back to its trainer, transform, statistics, data"
    )
    add_config_flags(lineage, LINEAGE)
    lineage.add_argument("--framework", required=True, help="the framework")
    lineage.add_argument("--version", type=int, help="the version (default: the served one)")
    lineage.add_argument("--json", action="store_true", help="print JSON")
    lineage.set_defaults(handler=show_lineage)


def show_lineage(args: argparse.Namespace) -> int:
    from twinflow.pipelines.retraining.history import format_lineage, lineage

    config = config_from_args(args)
    chain = lineage(config, args.framework, args.version)
    print(json.dumps(chain, indent=1) if args.json else format_lineage(chain))
    return 0
