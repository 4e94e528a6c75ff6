"""``twinflow <verb>``: the one command line. Each verb has ``--help``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pipelines  # noqa: F401  (selects tf-keras before TensorFlow loads)
from components.errors import DataAnomaliesError
from pipelines.config import FRAMEWORK_CHOICES, ConfigError, PipelineConfig, load_config
from pipelines.fashion_mnist import DataPreparationError
from pipelines.flags import RUN_FLAGS
from pipelines.kubeflow.cli import add_kubeflow_verbs


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file with config values (flags override it)")
    parser.add_argument("--framework", choices=FRAMEWORK_CHOICES, help="which trainer(s) to run")
    for flag, (_, kind, text) in RUN_FLAGS.items():
        parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--no-augment", action="store_true", help="turn training-time augmentation off")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component instead of using TFX's cache")
    parser.add_argument(
        "--beam-arg",
        action="append",
        dest="beam_args",
        metavar="ARG",
        help="Beam pipeline argument, repeatable, e.g. --beam-arg=--direct_num_workers=2",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = {key: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, (key, _, _) in RUN_FLAGS.items()}
    overrides["framework"] = args.framework
    if args.no_augment:
        overrides["training.augment"] = False
    if args.no_cache:
        overrides["enable_cache"] = False
    if args.beam_args:
        overrides["beam_args"] = args.beam_args
    return load_config(args.config, **overrides)


def _cmd_prepare_data(args: argparse.Namespace) -> int:
    from pipelines import fashion_mnist

    source = args.source
    if args.download and source is None:
        source = fashion_mnist.download_idx(args.output.parent / "fashion_mnist_idx")
    fashion_mnist.prepare(args.output, source=source, limit_per_class=args.limit)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.local_runner import run_local

    report = run_local(config_from_args(args))
    return 0 if all("train_accuracy" in row for row in report["frameworks"]) else 1


def _cmd_draft_schema(args: argparse.Namespace) -> int:
    from pipelines.schema_draft import draft_schema

    path = draft_schema(args.data_dir, args.out)
    print(f"draft schema written to {path}; review it, then pass it with --schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinflow", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    prepare = verbs.add_parser("prepare-data", help="write Fashion-MNIST as class folders of PNG files")
    prepare.add_argument("--output", type=Path, default=PipelineConfig().data_dir, help="output folder")
    prepare.add_argument("--source", type=Path, help="folder with the four IDX .gz files (default: Debian's)")
    prepare.add_argument("--limit", type=int, help="at most this many images per class and split")
    prepare.add_argument("--download", action="store_true", help="fetch the IDX files when online")
    prepare.set_defaults(handler=_cmd_prepare_data)

    run = verbs.add_parser("run", help="run the pipeline locally (LocalDagRunner)")
    _add_run_flags(run)
    run.set_defaults(handler=_cmd_run)

    draft = verbs.add_parser("draft-schema", help="infer a draft schema from image folders, to review and check in")
    draft.add_argument("--data-dir", type=Path, required=True, help="folder of class sub-folders of images")
    draft.add_argument("--out", type=Path, required=True, help="where to write the schema .pbtxt")
    draft.set_defaults(handler=_cmd_draft_schema)

    add_kubeflow_verbs(verbs)  # compile, submit, schedule
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Google client libraries warn about Python/grpc versions at import; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DataAnomaliesError as err:
        print(f"twinflow {args.verb}: stopped by data validation: {err}", file=sys.stderr)
        return 3
    except (ConfigError, DataPreparationError, FileNotFoundError, ValueError) as err:
        print(f"twinflow {args.verb}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
