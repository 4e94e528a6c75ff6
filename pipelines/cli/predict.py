"""``twinflow predict``: classify image files with a running model server."""

from __future__ import annotations

import argparse

from twinflow.core.errors import ConfigError


def register(verbs: argparse._SubParsersAction) -> None:
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
    predict.set_defaults(handler=predict_images)


def predict_images(args: argparse.Namespace) -> int:
    from twinflow.serving.client import DEFAULT_URL, format_predictions, predict_files, read_token

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    token = read_token(args.auth_token_file) if args.auth_token_file else None
    url = args.url or DEFAULT_URL
    predictions = predict_files(args.images, args.model, url, args.top_k, args.version, args.label, token=token)
    print(format_predictions(predictions))
    return 0
