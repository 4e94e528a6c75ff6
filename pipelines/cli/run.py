"""``twinflow run``: the pipeline on this machine (TFX's LocalDagRunner), ending with the results report."""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import FORCE_HELP, RUN, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    run = verbs.add_parser(RUN, allow_abbrev=False, help="run the pipeline locally (LocalDagRunner)")
    add_config_flags(run, RUN)
    run.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's, Beam's and TFX's own log on the terminal too"
    )
    run.add_argument("--force", action="store_true", help=FORCE_HELP)
    run.set_defaults(handler=run_pipeline)


def run_pipeline(args: argparse.Namespace) -> int:
    """Exit 0 when every framework trained (nothing to do counts), 1 when one did not."""
    config = config_from_args(args)  # checked before TensorFlow loads
    from twinflow.pipelines.run.local import run_local

    report = run_local(config, log=True, verbose=args.verbose, force=args.force)
    return 0 if report.all_trained else 1
