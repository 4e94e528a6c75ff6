"""Compile the one pipeline into a KFP v2 pipeline spec with TFX's KubeflowV2DagRunner.

Runners only wrap ``create_pipeline``: this module takes the pipeline object it returns,
turns the exec properties a run may change into TFX RuntimeParameters (KFP pipeline
parameters), and compiles it. Whatever changes the graph or a proto config (frameworks,
baseline resolver, number of classes, thresholds, image, Beam args) is fixed at compile time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base.base_component import BaseComponent

from components.image_example_gen.component import ImageExampleGen
from components.versioned_pusher.component import VersionedPusher
from pipelines.config import PipelineConfig
from pipelines.kubeflow.specfile import DEFAULT_SERVING_DIR, IMAGE_SCHEMA_FILE, TRAINING_CONFIG_PARAM
from pipelines.pipeline import create_pipeline


@dataclass(frozen=True)
class RuntimeBinding:
    """One KFP pipeline parameter and the exec property it feeds in every component of a type."""

    parameter: str
    component_types: tuple[type[BaseComponent], ...]
    exec_property: str
    description: str


BINDINGS: tuple[RuntimeBinding, ...] = (
    RuntimeBinding(
        "input_base",
        (ImageExampleGen,),
        "input_base",
        "folder of class sub-folders of images (gs:// URI or a path mounted in the container)",
    ),
    RuntimeBinding(
        "input_fingerprint",
        (ImageExampleGen,),
        "input_fingerprint",
        "any string that changes when the images do: part of ImageExampleGen's cache key",
    ),
    RuntimeBinding(
        "schema_file",
        (tfx.components.ImportSchemaGen,),
        "schema_file",
        "curated schema .pbtxt (a path in the image or a gs:// URI)",
    ),
    RuntimeBinding(
        "serving_dir",
        (VersionedPusher,),
        "serving_dir",
        "filesystem folder (a volume mounted in the Pusher's container) where blessed models are pushed",
    ),
    RuntimeBinding(
        TRAINING_CONFIG_PARAM,
        (tfx.components.Transform, tfx.components.Trainer),
        "custom_config",
        'JSON {"training": {...}}: the hyperparameters Transform and every trainer read',
    ),
)


@dataclass(frozen=True)
class Deployment:
    """Compile-time settings PipelineConfig does not hold; URIs stay strings (a Path would mangle gs://)."""

    image: str
    data_uri: str
    pipeline_root: str
    num_classes: int
    data_fingerprint: str = ""
    schema_file: str = IMAGE_SCHEMA_FILE
    serving_dir: str = DEFAULT_SERVING_DIR
    serving_pvc: str | None = None  # an existing PVC mounted at serving_dir in every Pusher
    baseline: bool = True  # False for open-source KFP, whose backend has no resolver executor


def bind_runtime_parameters(pipeline: tfx.dsl.Pipeline, defaults: Mapping[str, str]) -> dict[str, str]:
    """Replace bound exec properties by RuntimeParameters; returns each parameter's default.

    A parameter without an entry in ``defaults`` keeps the value create_pipeline gave it as
    its default. Every binding must match a component, so a renamed component fails here.
    """
    resolved: dict[str, str] = {}
    for binding in BINDINGS:
        matched = [c for c in pipeline.components if isinstance(c, binding.component_types)]
        if not matched:
            raise ValueError(f"runtime parameter {binding.parameter!r}: no {binding.component_types} in the pipeline")
        for component in matched:
            current = component.exec_properties.get(binding.exec_property)
            default = defaults.get(binding.parameter, current)
            if resolved.setdefault(binding.parameter, default) != default:
                raise ValueError(
                    f"runtime parameter {binding.parameter!r}: components disagree on its default "
                    f"({resolved[binding.parameter]!r} vs {default!r} in {component.id})"
                )
            parameter = tfx.dsl.experimental.RuntimeParameter(
                name=binding.parameter, ptype=str, default=default, description=binding.description
            )
            component.spec.PARAMETERS[binding.exec_property].type_check(binding.exec_property, parameter)
            component.exec_properties[binding.exec_property] = parameter
    return resolved


def build_pipeline(config: PipelineConfig, deployment: Deployment) -> tuple[tfx.dsl.Pipeline, dict[str, str]]:
    """The pipeline create_pipeline builds, with its runtime parameters bound."""
    pipeline = create_pipeline(
        config,
        num_classes=deployment.num_classes,
        data_fingerprint=deployment.data_fingerprint,
        baseline=deployment.baseline,
    )
    defaults = {
        "input_base": deployment.data_uri,
        "input_fingerprint": deployment.data_fingerprint,
        "schema_file": deployment.schema_file,
        "serving_dir": deployment.serving_dir,
    }
    return pipeline, bind_runtime_parameters(pipeline, defaults)


def compile_spec(config: PipelineConfig, deployment: Deployment) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pipeline spec, Kubernetes platform spec or None) as dicts, validated against the KFP protos."""
    pipeline, defaults = build_pipeline(config, deployment)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=deployment.image,
            use_pipeline_spec_2_1=True,  # the schema the open-source KFP 2.x backend reads
        ),
        output_dir=tempfile.gettempdir(),
    )
    spec: dict[str, Any] = runner.run(pipeline, write_out=False)["pipelineSpec"]
    _add_parameter_defaults(spec, defaults)
    if deployment.pipeline_root:
        spec["defaultPipelineRoot"] = deployment.pipeline_root
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    platform = _serving_volume(spec, deployment) if deployment.serving_pvc else None
    if platform is not None:
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _add_parameter_defaults(spec: dict[str, Any], defaults: Mapping[str, str]) -> None:
    """TFX declares root parameters without defaults; KFP would then demand every value."""
    descriptions = {b.parameter: b.description for b in BINDINGS}
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        definition.update(defaultValue=defaults[name], isOptional=True, description=descriptions[name])


def _serving_volume(spec: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """Mount the serving PVC in every Pusher (kfp-kubernetes' format; ``constant`` is read by KFP 2.0 onwards)."""
    executors = {
        spec["components"][task["componentRef"]["name"]]["executorLabel"]: {
            "pvcMount": [{"constant": deployment.serving_pvc, "mountPath": deployment.serving_dir}]
        }
        for name, task in spec["root"]["dag"]["tasks"].items()
        if name.startswith("Pusher_")
    }
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
