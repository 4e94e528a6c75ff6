"""Compile the one pipeline into a KFP v2 pipeline spec with TFX's KubeflowV2DagRunner.

Runners only wrap ``create_pipeline``: this module takes the pipeline object it returns,
turns the exec properties a run may change into TFX RuntimeParameters (KFP pipeline
parameters), and compiles it. Whatever changes the graph or a proto config (frameworks,
number of classes, thresholds, image, Beam args) is fixed at compile time. The spec has no
resolver tasks (open-source KFP cannot run them): each Evaluator reads the served version it
compares with from the serving volume, which it mounts like the Pushers and the DriftGate.
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
from tfx.orchestration.kubeflow.v2.pipeline_builder import DEFAULT_IMAGE_PATH_KEY

from twinflow.components.drift_gate.component import DriftGate
from twinflow.components.finite_evaluator.component import FiniteEvaluator
from twinflow.components.image_example_gen.component import ImageExampleGen
from twinflow.components.versioned_pusher.component import VersionedPusher
from twinflow.core.config import KubeflowConfig, PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.core.repeats import node_id
from twinflow.pipelines.definition import create_pipeline
from twinflow.pipelines.kubeflow.specfile import DEFAULT_SERVING_DIR, IMAGE_SCHEMA_FILE, TRAINING_CONFIG_PARAM

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
GPU_RESOURCE = "nvidia.com/gpu"


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
        (VersionedPusher, DriftGate, FiniteEvaluator),
        "serving_dir",
        "filesystem folder (a volume mounted in the Evaluators', Pushers' and DriftGate's containers) where "
        "blessed models are pushed, and the served models each Evaluator compares with and their drift "
        "baselines are read",
    ),
    RuntimeBinding(
        TRAINING_CONFIG_PARAM,
        (tfx.components.Transform, tfx.components.Trainer),
        "custom_config",
        'JSON {"training": {...}}: the hyperparameters Transform and every trainer read',
    ),
)


def deployed(config: PipelineConfig) -> PipelineConfig:
    """What values not given mean in a cluster: the image's curated schema, the serving volume's mount path."""
    given = config.model_fields_set
    return config.model_copy(
        update={
            "schema_path": config.schema_path if "schema_path" in given else IMAGE_SCHEMA_FILE,
            "serving_dir": config.serving_dir if "serving_dir" in given else DEFAULT_SERVING_DIR,
        }
    )


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


def build_pipeline(config: PipelineConfig) -> tuple[tfx.dsl.Pipeline, dict[str, str]]:
    """The pipeline create_pipeline builds, with its runtime parameters bound and its steps' resources set."""
    kubeflow = config.kubeflow
    fingerprint = kubeflow.data_fingerprint or ""
    pipeline = create_pipeline(config, data_fingerprint=fingerprint)
    for component in pipeline.components:
        resources = step_resources(component.id, kubeflow)
        if resources is not None:
            component.with_platform_config(resources)
        if isinstance(component, FiniteEvaluator):  # read where it runs: see _never_cache_evaluators
            component.exec_properties["served_version"] = ""
    defaults = {
        "input_base": config.input_base,
        "input_fingerprint": fingerprint,
        "schema_file": str(config.schema_path),
        "serving_dir": config.serving_dir,
    }
    return pipeline, bind_runtime_parameters(pipeline, defaults)


def step_resources(component_id: str, kubeflow: KubeflowConfig) -> ResourceSpec | None:
    """CPU and memory requests (memory also as the limit) for Trainer and Evaluator steps; GPUs for Trainers."""
    if component_id.startswith("Trainer_"):
        cpu, memory_gib, gpus = kubeflow.trainer_cpu, kubeflow.trainer_memory_gib, kubeflow.trainer_gpus
    elif component_id.startswith("Evaluator_"):
        cpu, memory_gib, gpus = kubeflow.evaluator_cpu, kubeflow.evaluator_memory_gib, 0
    else:
        return None
    memory_gb = memory_gib * 2**30 / 1e9  # the float fields count GB, as the KFP SDK's set_memory_request does
    spec = ResourceSpec(
        cpu_request=cpu,
        memory_request=memory_gb,
        memory_limit=memory_gb,
        resource_cpu_request=f"{cpu:g}",
        resource_memory_request=f"{memory_gib:g}Gi",
        resource_memory_limit=f"{memory_gib:g}Gi",
    )
    if gpus:
        spec.accelerator.CopyFrom(
            ResourceSpec.AcceleratorConfig(
                type=GPU_RESOURCE, count=gpus, resource_type=GPU_RESOURCE, resource_count=str(gpus)
            )
        )
    return spec


def step_images(kubeflow: KubeflowConfig) -> str | dict[str, str]:
    """The image of every step, or TFX's per-step map when a framework's Trainer has its own.

    One image cannot hold TensorFlow's and torch's CUDA libraries (TF 2.16 needs cuDNN 8.9,
    torch's CUDA wheels cuDNN 9), so a GPU deployment gives each Trainer the image built for
    its framework's GPU build; every other step keeps the CPU image.
    """
    trainer_images = {"keras": kubeflow.keras_trainer_image, "lightning": kubeflow.lightning_trainer_image}
    own = {node_id("Trainer", framework): image for framework, image in trainer_images.items() if image}
    if not own:
        return kubeflow.image
    return {DEFAULT_IMAGE_PATH_KEY: kubeflow.image, **own}


def compile_spec(config: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(pipeline spec, Kubernetes platform spec or None) as dicts, validated against the KFP protos.

    ``config`` is taken as given: pass it through :func:`deployed` for the cluster's defaults.
    """
    if not config.kubeflow.image:
        raise ConfigError("no container image: pass --image (the image built from the Dockerfile)")
    if config.repeats > 1:  # one training-config parameter feeds every Trainer: the repeats would share a seed
        raise ConfigError(
            f"repeats: {config.repeats} is for local runs (twinflow run --repeats); a Kubeflow spec trains each "
            "framework once. Set repeats to 1 for compile"
        )
    if config.optimization.variants:  # the optimizer steps need tfmot in the image, which nothing tests yet
        raise ConfigError(
            f"optimization.variants: {list(config.optimization.variants)} is for local runs (twinflow run "
            "--optimize); a Kubeflow spec makes no variants. Set optimization.variants to none for compile"
        )
    pipeline, defaults = build_pipeline(config)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=step_images(config.kubeflow),
            use_pipeline_spec_2_1=True,  # the schema the open-source KFP 2.x backend reads
        ),
        output_dir=tempfile.gettempdir(),
    )
    spec: dict[str, Any] = runner.run(pipeline, write_out=False)["pipelineSpec"]
    _add_parameter_defaults(spec, defaults)
    if config.data_root:
        _never_cache_span_lookup(spec)
    _never_cache_evaluators(spec)
    if "pipeline_root" in config.model_fields_set:
        spec["defaultPipelineRoot"] = config.pipeline_root
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    platform = _serving_volume(spec, config) if config.kubeflow.serving_pvc else None
    if platform is not None:
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    return spec, platform


def _never_cache_span_lookup(spec: dict[str, Any]) -> None:
    """ImageExampleGen picks the latest spans when it runs; Kubeflow's cache check comes before that.

    TFX's own span lookup is a pre-cache-check hook that open-source Kubeflow never runs, so
    with the step cached a recurring run would be answered with the spans of its first run.
    Uncached, the step always looks; its new output then changes every downstream cache key.
    """
    spec["root"]["dag"]["tasks"]["ImageExampleGen"]["cachingOptions"] = {"enableCache": False}


def _never_cache_evaluators(spec: dict[str, Any]) -> None:
    """Each Evaluator judges its model against the version served when it runs, which the cache key cannot hold.

    Locally the served version is an exec property read when the pipeline is built; a compiled
    spec cannot know it (the serving volume is the cluster's). A cached Evaluator would hand on a
    verdict against whatever was served when it first ran, so Evaluators always run; the
    Pusher also refuses a blessing judged against another version than the one it finds served.
    """
    for name, task in spec["root"]["dag"]["tasks"].items():
        if name.startswith("Evaluator_"):
            task["cachingOptions"] = {"enableCache": False}


def _add_parameter_defaults(spec: dict[str, Any], defaults: Mapping[str, str]) -> None:
    """TFX declares root parameters without defaults; KFP would then demand every value."""
    descriptions = {b.parameter: b.description for b in BINDINGS}
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        definition.update(defaultValue=defaults[name], isOptional=True, description=descriptions[name])


def _serving_volume(spec: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """Mount the serving PVC in every Evaluator and Pusher, and the DriftGate.

    kfp-kubernetes' format; ``constant`` is read by KFP 2.0 onwards.
    """
    executors = {
        spec["components"][task["componentRef"]["name"]]["executorLabel"]: {
            "pvcMount": [{"constant": config.kubeflow.serving_pvc, "mountPath": config.serving_dir}]
        }
        for name, task in spec["root"]["dag"]["tasks"].items()
        if name.startswith(("Evaluator_", "Pusher_")) or name == "DriftGate"
    }
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
