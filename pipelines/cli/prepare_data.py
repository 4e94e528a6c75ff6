"""``twinflow prepare-data``: Fashion-MNIST written as class folders of PNG files (the default data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twinflow.core.config import PipelineConfig


def register(verbs: argparse._SubParsersAction) -> None:
    prepare = verbs.add_parser(
        "prepare-data", allow_abbrev=False, help="write Fashion-MNIST as class folders of PNG files"
    )
    prepare.add_argument("--output", type=Path, default=Path(PipelineConfig().data_dir), help="output folder")
    prepare.add_argument("--source", type=Path, help="folder with the four IDX .gz files (default: Debian's)")
    prepare.add_argument("--limit", type=int, help="at most this many images per class and split")
    prepare.add_argument("--download", action="store_true", help="fetch the IDX files when online")
    prepare.set_defaults(handler=prepare_data)


def prepare_data(args: argparse.Namespace) -> int:
    from twinflow.pipelines import fashion_mnist

    source = args.source
    if args.download and source is None:
        source = fashion_mnist.download_idx(args.output.parent / "fashion_mnist_idx")
    fashion_mnist.prepare(args.output, source=source, limit_per_class=args.limit)
    return 0
