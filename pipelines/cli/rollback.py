"""``twinflow rollback``: serve an earlier version again, re-published as the newest version number."""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import ROLLBACK, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    rollback = verbs.add_parser(
        ROLLBACK, allow_abbrev=False, help="serve an earlier version again, re-published as the newest version number"
    )
    add_config_flags(rollback, ROLLBACK)
    rollback.add_argument("--framework", required=True, help="whose served model to roll back")
    rollback.add_argument("--to", type=int, help="the version to serve (default: the one before the served one)")
    rollback.set_defaults(handler=roll_back)


def roll_back(args: argparse.Namespace) -> int:
    from twinflow.model_store.operations import rollback

    config = config_from_args(args)
    version = rollback(config.serving_dir, args.framework, args.to)
    print(f"{args.framework}: now serving version {version.number} at {version.path}")
    return 0
