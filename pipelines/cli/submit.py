"""``twinflow submit``: upload a compiled spec and start a run on Kubeflow Pipelines."""

from __future__ import annotations

import argparse
from typing import Any

from twinflow.pipelines.cli.endpoint import add_endpoint_flags, pipeline_root, report_created, run_values
from twinflow.pipelines.cli.flags import SUBMIT, add_config_flags


def register(verbs: argparse._SubParsersAction) -> None:
    submit = verbs.add_parser(
        SUBMIT, allow_abbrev=False, help="upload a compiled spec and start a run on Kubeflow Pipelines"
    )
    add_endpoint_flags(submit)
    add_config_flags(submit, SUBMIT)
    submit.add_argument("--run-name", help="run name (default: <pipeline>-<timestamp>)")
    submit.set_defaults(handler=submit_run)


def submit_run(args: argparse.Namespace) -> int:
    from twinflow.pipelines.kubeflow.endpoint import submit

    def go() -> Any:
        endpoint, config, params = run_values(args)
        caching = None if config.enable_cache else False  # None: as compiled
        return submit(
            endpoint, args.spec, params, args.experiment, args.run_name, pipeline_root(config), enable_caching=caching
        )

    return report_created(args.verb, go)
