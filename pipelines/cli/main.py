"""``twinflow <verb>``: the one command line. Each verb has ``--help``.

Exit codes: 0 done; 1 the run finished but a framework was not trained, or Kubeflow refused;
2 bad config or input data; 3 stopped by data validation or the drift gate; 4 training diverged; 5 another
run holds the store or serving folder; 6 the model server could not be reached or refused; 130 interrupted
(Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence

from twinflow.core import fs
from twinflow.core.bootstrap import bootstrap
from twinflow.core.errors import DataAnomaliesError, DataDriftError, TwinflowError
from twinflow.pipelines.cli import (
    compile,
    draft_schema,
    history,
    lineage,
    manifests,
    predict,
    prepare_data,
    promote,
    prune_runs,
    report,
    retrain,
    rollback,
    run,
    schedule,
    serve,
    status,
    submit,
)

INTERRUPTED = 130

# Every verb, in the order ``twinflow --help`` lists them; each module registers its parser and handler.
VERBS = (
    prepare_data,
    run,
    draft_schema,
    retrain,
    rollback,
    promote,
    status,
    history,
    lineage,
    report,
    prune_runs,
    serve,
    predict,
    manifests,
    compile,
    submit,
    schedule,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinflow", description=__doc__, allow_abbrev=False)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.register(verbs)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Like ``parser.parse_args``, but an unknown flag is reported with the verb's usage, not the top level's."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        (verbs,) = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        verbs.choices[args.verb].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    bootstrap()
    # Google client libraries warn about Python/grpc versions at import; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(build_parser(), argv)
    try:
        return args.handler(args)
    except DataDriftError as err:
        print(f"twinflow {args.verb}: stopped by the drift gate: {err}", file=sys.stderr)
        return err.exit_code
    except DataAnomaliesError as err:
        print(f"twinflow {args.verb}: stopped by data validation: {err}", file=sys.stderr)
        return err.exit_code
    except TwinflowError as err:
        print(f"twinflow {args.verb}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"twinflow {args.verb}: interrupted", file=sys.stderr)
        return INTERRUPTED


def entry() -> None:
    """The ``twinflow`` console script."""
    try:
        code = main()
    except SystemExit as done:  # argparse's own exits (--help, usage errors)
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    fs.exit_now(code)
