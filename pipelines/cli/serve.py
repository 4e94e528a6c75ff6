"""``twinflow serve``: every framework in the serving folder behind TF Serving's REST API and KServe V2, one port."""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import SERVE, add_config_flags, config_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    serve = verbs.add_parser(
        SERVE,
        allow_abbrev=False,
        help="serve every framework in the serving folder (TF Serving REST /v1 and KServe V2 /v2, one port)",
        description="Serves <serving_dir>/<framework>/<version>/ under the framework's name, following new "
        "pushes, rollbacks and labels without a restart. Binds 127.0.0.1 unless --host says otherwise.",
    )
    add_config_flags(serve, SERVE)
    serve.set_defaults(handler=serve_models)


def serve_models(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # checked before TensorFlow loads, with the token file
    if config.serving.auth_token_file:
        from twinflow.serving.auth import TokenFile

        TokenFile(config.serving.auth_token_file)
    from twinflow.serving.connections import check_can_listen

    check_can_listen(config.serving.host, config.serving.port)  # before TensorFlow and any model load
    from twinflow.serving.app import serve

    return serve(config.serving_dir, config.serving, config.max_image_pixels)
