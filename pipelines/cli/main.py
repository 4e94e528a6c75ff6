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
from pathlib import Path

from twinflow.core import fs
from twinflow.core.bootstrap import bootstrap
from twinflow.core.config import PipelineConfig
from twinflow.core.errors import DataAnomaliesError, DataDriftError, TwinflowError
from twinflow.pipelines.cli.flags import FORCE_HELP, RUN, add_config_flags, config_from_args
from twinflow.pipelines.cli.kubeflow import add_kubeflow_verbs
from twinflow.pipelines.cli.retraining import add_retraining_verbs
from twinflow.pipelines.cli.serving import add_serving_verbs

INTERRUPTED = 130


def _cmd_prepare_data(args: argparse.Namespace) -> int:
    from twinflow.pipelines import fashion_mnist

    source = args.source
    if args.download and source is None:
        source = fashion_mnist.download_idx(args.output.parent / "fashion_mnist_idx")
    fashion_mnist.prepare(args.output, source=source, limit_per_class=args.limit)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # checked before TensorFlow loads
    from twinflow.pipelines.run.local import run_local

    report = run_local(config, log=True, verbose=args.verbose, force=args.force)
    return 0 if all("train_accuracy" in row for row in report["frameworks"]) else 1


def _cmd_draft_schema(args: argparse.Namespace) -> int:
    from twinflow.pipelines.schema_draft import draft_schema

    path = draft_schema(args.data_dir, args.out, force=args.force)
    print(f"draft schema written to {path}; review it, then pass it with --schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinflow", description=__doc__, allow_abbrev=False)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    prepare = verbs.add_parser(
        "prepare-data", allow_abbrev=False, help="write Fashion-MNIST as class folders of PNG files"
    )
    prepare.add_argument("--output", type=Path, default=Path(PipelineConfig().data_dir), help="output folder")
    prepare.add_argument("--source", type=Path, help="folder with the four IDX .gz files (default: Debian's)")
    prepare.add_argument("--limit", type=int, help="at most this many images per class and split")
    prepare.add_argument("--download", action="store_true", help="fetch the IDX files when online")
    prepare.set_defaults(handler=_cmd_prepare_data)

    run = verbs.add_parser(RUN, allow_abbrev=False, help="run the pipeline locally (LocalDagRunner)")
    add_config_flags(run, RUN)
    run.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's, Beam's and TFX's own log on the terminal too"
    )
    run.add_argument("--force", action="store_true", help=FORCE_HELP)
    run.set_defaults(handler=_cmd_run)

    draft = verbs.add_parser(
        "draft-schema", allow_abbrev=False, help="infer a draft schema from image folders, to review and check in"
    )
    draft.add_argument("--data-dir", type=Path, required=True, help="folder of class sub-folders of images")
    draft.add_argument("--out", type=Path, required=True, help="where to write the schema .pbtxt")
    draft.add_argument("--force", action="store_true", help="replace an existing file at --out (a reviewed schema)")
    draft.set_defaults(handler=_cmd_draft_schema)

    add_retraining_verbs(verbs)  # retrain, rollback, promote, status, history, lineage
    add_serving_verbs(verbs)  # serve, predict, manifests
    add_kubeflow_verbs(verbs)  # compile, submit, schedule (and schedule --local)
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
