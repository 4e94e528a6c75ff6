"""``twinflow serve | predict | manifests``: the pushed models behind TF Serving's and KServe's APIs.

Registered by ``pipelines.cli``. ``promote`` (moving the stable label to a canary) sits with
``rollback`` in ``pipelines.cli.retraining``.
"""

from __future__ import annotations

import argparse

from twinflow.pipelines.cli.flags import SERVE, add_config_flags, config_from_args


def add_serving_verbs(verbs: argparse._SubParsersAction) -> None:
    serve = verbs.add_parser(
        SERVE,
        allow_abbrev=False,
        help="serve every framework in the serving folder (TF Serving REST /v1 and KServe V2 /v2, one port)",
        description="Serves <serving_dir>/<framework>/<version>/ under the framework's name, following new "
        "pushes, rollbacks and labels without a restart. Binds 127.0.0.1 unless --host says otherwise.",
    )
    add_config_flags(serve, SERVE)
    serve.set_defaults(handler=_cmd_serve)

    predict = verbs.add_parser("predict", allow_abbrev=False, help="classify image files with a running server")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, GIF, BMP, WebP, TIFF)")
    predict.add_argument("--model", required=True, help="model name: the framework (keras, lightning)")
    predict.add_argument("--url", default=None, help="server address (default http://127.0.0.1:8501)")
    predict.add_argument("--top-k", type=int, default=3, help="classes shown per image (default 3)")
    which = predict.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="a specific version (default: the served one)")
    which.add_argument("--label", help="a version label: stable or canary")
    predict.add_argument(
        "--auth-token-file", help="send the first token in this file as 'Authorization: Bearer' (serve's file works)"
    )
    predict.set_defaults(handler=_cmd_predict)

    manifests = verbs.add_parser(
        "manifests", allow_abbrev=False, help="write KServe InferenceService YAML for the pushed models"
    )
    manifests.add_argument("--image", required=True, help="the twinflow serving image (docker build --target serving)")
    manifests.add_argument("--serving-uri", required=True, help="where the serving folder is (s3://, gs://, pvc://)")
    manifests.add_argument("--out", default="work/manifests", help="output folder (default work/manifests)")
    manifests.add_argument("--name", default="twinflow", help="InferenceService name prefix (default twinflow)")
    manifests.add_argument("--namespace", help="Kubernetes namespace (default: none written)")
    manifests.add_argument(
        "--tf-serving-version", default="2.16.1", help="TF Serving runtime version for the Keras model (default 2.16.1)"
    )
    manifests.set_defaults(handler=_cmd_manifests)


def _cmd_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # checked before TensorFlow loads, with the token file
    if config.serving.auth_token_file:
        from twinflow.serving.auth import TokenFile

        TokenFile(config.serving.auth_token_file)
    from twinflow.serving.app import serve

    return serve(config.serving_dir, config.serving, config.max_image_pixels)


def _cmd_predict(args: argparse.Namespace) -> int:
    from twinflow.serving.client import DEFAULT_URL, format_predictions, predict_files, read_token

    if args.top_k < 1:
        from twinflow.core.errors import ConfigError

        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    token = read_token(args.auth_token_file) if args.auth_token_file else None
    url = args.url or DEFAULT_URL
    predictions = predict_files(args.images, args.model, url, args.top_k, args.version, args.label, token=token)
    print(format_predictions(predictions))
    return 0


def _cmd_manifests(args: argparse.Namespace) -> int:
    from twinflow.core.errors import ConfigError
    from twinflow.serving.manifests import ManifestOptions, write_manifests

    try:
        options = ManifestOptions(
            image=args.image,
            serving_uri=args.serving_uri,
            name=args.name,
            namespace=args.namespace,
            tf_serving_runtime_version=args.tf_serving_version,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for path in write_manifests(options, args.out):
        print(f"wrote {path}")
    return 0
