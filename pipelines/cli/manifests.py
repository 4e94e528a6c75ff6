"""``twinflow manifests``: KServe InferenceService YAML for the pushed models."""

from __future__ import annotations

import argparse

from twinflow.core.errors import ConfigError


def register(verbs: argparse._SubParsersAction) -> None:
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
    manifests.set_defaults(handler=write_kserve_manifests)


def write_kserve_manifests(args: argparse.Namespace) -> int:
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
