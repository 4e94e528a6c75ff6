"""``twinflow report``: rebuild a run's report (report.md, report.json, report.html) from ML Metadata."""

from __future__ import annotations

import argparse
import os

from twinflow.core import fs
from twinflow.core.errors import ConfigError
from twinflow.pipelines.cli.flags import REPORT, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    report = verbs.add_parser(
        REPORT, allow_abbrev=False, help="rebuild a run's report (report.md/json/html) from ML Metadata"
    )
    add_config_flags(report, REPORT)
    report.add_argument("--run", help="the run id (default: the latest run)")
    report.add_argument(
        "--output",
        metavar="DIR",
        help="write the rebuilt report into DIR (created if missing) and nowhere else; "
        "default: the run's own folder, <pipeline-root>/reports/<run>/",
    )
    report.add_argument("--open", action="store_true", help="open report.html in a browser")
    report.set_defaults(handler=rebuild)


def rebuild(args: argparse.Namespace) -> int:
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") == "1":  # bootstrap's default, not the user's: quieter here
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # CUDA plugin registration and tf.data notes are not the report
    from twinflow.pipelines.run.local import rebuild_report

    config = config_from_args(args)
    if args.output and (problem := fs.unwritable_local_folder(args.output)):  # before minutes of rebuilding
        raise ConfigError(f"--output {args.output}: {problem}; pass a folder for the rebuilt report")
    out = rebuild_report(config, args.run, args.output)
    page = fs.join(out, "report.html")
    print(f"report written to {out}: {page}")
    if args.open:
        import webbrowser

        webbrowser.open(page if fs.is_remote(page) else "file://" + os.path.abspath(page))
    return 0
