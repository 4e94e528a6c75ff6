"""``twinflow compile``: the same pipeline ``run`` runs, compiled to a Kubeflow Pipelines (KFP v2) spec.

Every Kubeflow verb builds its config through ``flags.py`` like ``twinflow run``: the same flags mean
the same config keys (``--data-dir`` is where the images are, for every verb).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from twinflow.core.config import KubeflowConfig, PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.core.repeats import node_id
from twinflow.pipelines.cli.flags import COMPILE, add_config_flags, config_from_args
from twinflow.pipelines.kubeflow.specfile import DEFAULT_SPEC

IMAGE_ENV = "TWINFLOW_IMAGE"


def register(verbs: argparse._SubParsersAction) -> None:
    compile_ = verbs.add_parser(
        COMPILE,
        allow_abbrev=False,
        help="compile the pipeline to a Kubeflow Pipelines (KFP v2) spec",
        description="Compile the same pipeline 'twinflow run' runs into a KFP v2 pipeline spec (YAML). "
        "Data location, schema, serving folder and training hyperparameters become run parameters; "
        "frameworks, thresholds, number of classes, image, resources and Beam args are fixed here.",
    )
    compile_.add_argument(
        "--output", type=Path, default=DEFAULT_SPEC, help=f"spec file to write (default {DEFAULT_SPEC})"
    )
    add_config_flags(compile_, COMPILE)
    compile_.set_defaults(handler=compile_pipeline)


def compile_pipeline(args: argparse.Namespace) -> int:
    from twinflow.pipelines.kubeflow.compiler import compile_spec, deployed, step_images
    from twinflow.pipelines.kubeflow.specfile import write_spec

    config = config_from_args(args)
    if not config.kubeflow.baseline:
        print(
            "twinflow compile: note: --no-baseline (kubeflow.baseline: false) is no longer needed and changes "
            "nothing: the spec has no resolver tasks, each Evaluator compares its model with the version served "
            "in the serving volume",
            file=sys.stderr,
        )
    if "data_dir" not in config.model_fields_set and not config.data_root:
        raise ConfigError(
            "compile needs --data-dir (a fixed folder) or --data-root (span folders arriving over time), "
            "or either in --config: where the cluster reads the images"
        )
    if config.training.model_module:
        _check_model_module(config.training.model_module)
    image = config.kubeflow.image or os.environ.get(IMAGE_ENV)
    if not image:
        raise ConfigError(f"pass --image (the image built from the Dockerfile) or set {IMAGE_ENV}")
    fingerprint = _data_fingerprint(config, config.kubeflow.data_fingerprint)
    kubeflow = config.kubeflow.model_copy(update={"image": image, "data_fingerprint": fingerprint})
    if kubeflow.trainer_gpus:
        _warn_gpus_for_cpu_images(args.verb, kubeflow, config.frameworks, step_images(kubeflow))
    spec, platform = compile_spec(deployed(config.model_copy(update={"kubeflow": kubeflow})))
    path = write_spec(args.output, spec, platform)
    print(f"pipeline spec written to {path} ({len(spec['root']['dag']['tasks'])} tasks, image {image})")
    for name, definition in sorted(spec["root"]["inputDefinitions"]["parameters"].items()):
        print(f"  parameter {name} = {definition['defaultValue']!r}")
    return 0


def _check_model_module(spec: str) -> None:
    """On Kubeflow the Trainer step imports ``--model-module`` inside its image: it must be an importable module
    (a TFX Trainer takes ``run_fn`` or ``module_file``, not both), installed in an image built FROM twinflow's."""
    from twinflow.trainers.user_model import load_user_module

    if spec.endswith(".py") or os.sep in spec:
        raise ConfigError(
            f"--model-module {spec}: a Kubeflow step cannot read a file from this machine; install the module in an "
            "image built FROM the twinflow image and pass it as package.module (docs: your own model)"
        )
    module = load_user_module(spec)
    print(
        f"twinflow compile: note: --model-module {spec} ({', '.join(module.frameworks)}) imports here; the Trainer "
        "image must contain it too",
        file=sys.stderr,
    )


# The image flag of each framework's Trainer and the Dockerfile build argument of its GPU image.
_GPU_IMAGES = {
    "keras": "--keras-trainer-image (an image built with TF_VARIANT=cuda)",
    "lightning": "--lightning-trainer-image (an image built with TORCH_VARIANT=cu128)",
}


def _warn_gpus_for_cpu_images(
    verb: str, kubeflow: KubeflowConfig, frameworks: tuple[str, ...], images: str | dict[str, str]
) -> None:
    """GPUs requested for Trainer steps that run the CPU image: the pods hold GPUs their framework cannot use."""
    own = images if isinstance(images, dict) else {}
    on_cpu_image = [name for name in frameworks if node_id("Trainer", name) not in own]
    if not on_cpu_image:
        return
    fixes = [_GPU_IMAGES[name] for name in on_cpu_image if name in _GPU_IMAGES]
    print(
        f"twinflow {verb}: warning: --trainer-gpus {kubeflow.trainer_gpus} requests GPUs for the "
        f"{', '.join(on_cpu_image)} Trainer step(s), which run the CPU image {kubeflow.image}"
        + (f"; pass {' and '.join(fixes)}" if fixes else ""),
        file=sys.stderr,
    )


def _data_fingerprint(config: PipelineConfig, fingerprint: str | None) -> str:
    """The data's cache key: from the config, else computed from the folder when it is local.

    Data in object storage is not listed at compile time: without --data-fingerprint its
    ImageExampleGen step is keyed on the location alone. With a data root the fingerprint stays
    empty: which spans a run reads is decided when its ImageExampleGen runs, and that step is
    compiled uncached.
    """
    from twinflow.components.image_example_gen.listing import list_input

    data_uri = config.input_base
    if "://" in data_uri or not Path(data_uri).is_dir():
        return fingerprint or ""
    listing, spans = list_input(data_uri, config.span_pattern if config.data_root else "", config.spans)
    if fingerprint is not None:
        return fingerprint
    return "" if spans else listing.fingerprint()
