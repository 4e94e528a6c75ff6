"""``twinflow promote``: move the ``stable`` label to the ``canary`` version; a running server follows."""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import PROMOTE, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    promote = verbs.add_parser(
        PROMOTE,
        allow_abbrev=False,
        help="move the 'stable' label to the 'canary' version (pushed with --canary); a running server follows",
    )
    add_config_flags(promote, PROMOTE)
    promote.add_argument("--framework", required=True, help="whose canary to promote")
    promote.set_defaults(handler=promote_canary)


def promote_canary(args: argparse.Namespace) -> int:
    from twinflow.model_store.operations import promote

    config = config_from_args(args)
    labels = promote(config.serving_dir, args.framework)
    print(f"{args.framework}: stable is now version {labels['stable']} (no canary)")
    return 0
