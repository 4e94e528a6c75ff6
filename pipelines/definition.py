"""``create_pipeline``: the one pipeline definition every runner wraps."""

from __future__ import annotations

import json

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.proto import trainer_pb2, transform_pb2
from tfx.types import channel_utils

from twinflow.components.data_gate.component import DataGate
from twinflow.components.drift_gate.component import DriftGate
from twinflow.components.finite_evaluator.component import FiniteEvaluator
from twinflow.components.finite_evaluator.promotion import NOTHING_SERVED
from twinflow.components.image_example_gen.component import ImageExampleGen
from twinflow.components.model_optimizer.component import ModelOptimizer
from twinflow.components.versioned_pusher.component import VersionedPusher
from twinflow.core import fs
from twinflow.core.config import PipelineConfig, TrainingConfig
from twinflow.core.contract import SERVING_DIR_KEY, TRAINING_CONFIG_KEY
from twinflow.core.registry import FrameworkPlugin, get_framework
from twinflow.core.repeats import node_id, repeat_seed
from twinflow.model_store.layout import served_version
from twinflow.pipelines.evaluation import build_eval_config
from twinflow.schemas import default_schema_path
from twinflow.trainers.user_model import module_sha256

PREPROCESSING_FN = "twinflow.trainers.preprocessing.preprocessing_fn"
EVAL_SPLIT = "test"


def _gathered(channels: list[tfx.dsl.Channel]) -> tfx.dsl.Channel:
    """One channel as it is; several (one per repeat) as their union, which the pusher chooses from."""
    return channels[0] if len(channels) == 1 else channel_utils.union(channels)


def _served_numbers(config: PipelineConfig) -> dict[str, int | None] | None:
    """The version each framework serves now, or None where the serving folder is unreadable here."""
    try:
        served = {name: served_version(fs.join(config.serving_dir, name)) for name in config.frameworks}
    except Exception:  # e.g. a cluster volume compiled from a workstation: the components read it at run time
        return None
    return {name: version.number if version else None for name, version in served.items()}


def _trainer_config(config: PipelineConfig, training: TrainingConfig) -> dict[str, str | dict]:
    """What a Trainer receives: its training config and, for a warm start from what is served (--weights served),
    the serving folder, and the served versions as part of its cache key (a new push means new starting weights)."""
    custom: dict[str, str | dict] = {TRAINING_CONFIG_KEY: training.to_dict()}
    if training.model_module:  # the module's code is part of what the Trainer's output depends on
        custom["model_module_sha256"] = module_sha256(training.model_module)
    if training.weights == "served" or training.weights.startswith("served:"):
        custom[SERVING_DIR_KEY] = str(config.serving_dir)
        custom["served_versions"] = _served_versions(config)
    return custom


def _served_versions(config: PipelineConfig) -> str:
    """What each framework serves now (part of the drift gate's cache key); empty where the folder is unreadable."""
    served = _served_numbers(config)
    return "" if served is None else json.dumps(served)


def served_version_key(config: PipelineConfig, name: str) -> str:
    """The version ``name`` serves now, as the Evaluator's cache key: its number, "none" when nothing is
    served, "" when unreadable here (the Evaluator reads the folder when it runs either way)."""
    served = _served_numbers(config)
    if served is None:
        return ""
    return NOTHING_SERVED if served[name] is None else str(served[name])


def _variants(
    config: PipelineConfig,
    plugin: FrameworkPlugin,
    trainers: list,
    evaluators: list,
    transform: tfx.components.Transform,
    example_gen: ImageExampleGen,
    parent_pusher: VersionedPusher,
    run_fingerprint: str = "",
) -> list:
    """Per optimized variant: ModelOptimizer → Evaluator (the same metrics, slices and floor; compared with
    its float parent on the same test examples by the same paired rule, with ``optimization.max_drop``)
    → Pusher as ``<fw>-<variant>``."""
    if config.optimization.variants and not plugin.optimize_fn:
        raise ValueError(
            f"framework {plugin.name!r} makes no optimized variants (no optimize_fn in twinflow.core.registry)"
        )
    settings = config.optimization
    nodes: list = []
    for variant in settings.variants:
        variant_plugin = plugin.variant(variant)
        name = variant_plugin.name
        optimizer = ModelOptimizer(
            model=_gathered([t.outputs["model"] for t in trainers]),
            model_blessing=_gathered([e.outputs["blessing"] for e in evaluators]),
            model_evaluation=_gathered([e.outputs["evaluation"] for e in evaluators]),
            transformed_examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            framework=plugin.name,
            variant=variant,
            optimize_fn=str(plugin.optimize_fn),
            settings=settings.model_dump_json(),
        ).with_id(node_id("Optimizer", name))
        evaluator = FiniteEvaluator(
            examples=example_gen.outputs["examples"],
            model=optimizer.outputs["variant_model"],
            eval_config=build_eval_config(config.evaluation, variant_plugin),
            example_splits=[EVAL_SPLIT],
            module_path=variant_plugin.evaluator_module,
            model_name=name,
            max_accuracy_drop=settings.max_drop,
            reference_model=optimizer.outputs["parent_model"],
        ).with_id(node_id("Evaluator", name))
        pusher = VersionedPusher(
            model=optimizer.outputs["variant_model"],
            model_blessing=evaluator.outputs["blessing"],
            model_evaluation=evaluator.outputs["evaluation"],
            serving_dir=str(config.serving_dir),
            model_name=name,
            examples=example_gen.outputs["examples"],
            keep_versions=config.keep_versions,
            canary=config.canary,
            parent_model_name=plugin.name,
            run_fingerprint=run_fingerprint,
        ).with_id(node_id("Pusher", name))
        pusher.add_upstream_node(parent_pusher)  # a variant is pushed only beside its served float parent
        nodes += [optimizer, evaluator, pusher]
    return nodes


def _example_gen(config: PipelineConfig, data_fingerprint: str) -> ImageExampleGen:
    return ImageExampleGen(
        input_base=config.input_base,
        span_pattern=config.span_pattern if config.data_root else "",
        spans=config.spans,
        eval_buckets=config.eval_buckets,
        test_buckets=config.test_buckets,
        input_fingerprint=data_fingerprint,
        max_bad_images=config.max_bad_images,
        max_image_pixels=config.max_image_pixels,
    )


def _transform(
    config: PipelineConfig, example_gen: ImageExampleGen, schema_gen: tfx.components.ImportSchemaGen
) -> tfx.components.Transform:
    custom_config = {TRAINING_CONFIG_KEY: config.training.to_dict()}
    return tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"], transform=["train", "eval", "test"]),
        # StatisticsGen already describes the raw data; Transform's own TFDV passes (pre-transform
        # statistics again, post-transform statistics of every image_xf value) were read by nothing
        # and took about a third of its time on tiny data.
        disable_statistics=True,
    )


def create_data_pipeline(
    config: PipelineConfig, data_fingerprint: str = "", metadata_connection_config: object | None = None
) -> tfx.dsl.Pipeline:
    """The data stages alone (ExampleGen → statistics → Transform), built as the full pipeline builds them:
    what the training and scaling benchmarks measure and train on. With ``enable_cache`` a rerun on the
    same data reuses every output."""
    example_gen = _example_gen(config, data_fingerprint)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(config.schema_path or default_schema_path()))
    statistics_gen = _statistics_gen(example_gen, schema_gen)
    transform = _transform(config, example_gen, schema_gen)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_root),
        components=[example_gen, schema_gen, statistics_gen, transform],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )


def _statistics_gen(
    example_gen: ImageExampleGen, schema_gen: tfx.components.ImportSchemaGen
) -> tfx.components.StatisticsGen:
    return tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True, semantic_domain_stats_sample_rate=1.0),
    )


def create_pipeline(
    config: PipelineConfig,
    data_fingerprint: str = "",
    metadata_connection_config: object | None = None,
    run_fingerprint: str = "",
) -> tfx.dsl.Pipeline:
    """ExampleGen → statistics, schema, validation → data and drift gates → Transform → per framework:
    Trainer → Evaluator → Pusher (with ``repeats`` > 1: a Trainer and an Evaluator per seed, and one
    Pusher that chooses among them by eval-split accuracy; see twinflow.core.repeats).

    No resolvers, so every runner (open-source Kubeflow Pipelines too) runs the same graph: the
    drift gate compares the new statistics with those each served model was trained on (kept
    beside it by the pusher), and each Evaluator compares its model with the served version of
    its framework on the same test examples, both read from the serving folder.

    ``run_fingerprint`` (the local runner's: twinflow.pipelines.run.guard) is recorded in every pushed card.
    """
    example_gen = _example_gen(config, data_fingerprint)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(config.schema_path or default_schema_path()))
    statistics_gen = _statistics_gen(example_gen, schema_gen)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"])
    drift_gate = DriftGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        serving_dir=str(config.serving_dir),
        model_names=config.frameworks,
        accept_drift=config.accept_drift,
        served_versions=_served_versions(config),
    )
    drift_gate.add_upstream_node(data_gate)  # schema anomalies are reported before drift
    transform = _transform(config, example_gen, schema_gen)
    transform.add_upstream_node(data_gate)
    transform.add_upstream_node(drift_gate)
    components = [example_gen, schema_gen, statistics_gen, example_validator, data_gate, drift_gate, transform]

    for name in config.frameworks:
        plugin = get_framework(name)
        eval_config = build_eval_config(config.evaluation, plugin)
        served = served_version_key(config, name)  # each repeat is compared with the same served version
        trainers, evaluators = [], []
        for repeat in range(1, config.repeats + 1):
            training = config.training.model_copy(update={"seed": repeat_seed(config.training.seed, repeat)})
            trainer = tfx.components.Trainer(
                run_fn=plugin.run_fn,
                examples=transform.outputs["transformed_examples"],
                transform_graph=transform.outputs["transform_graph"],
                schema=schema_gen.outputs["schema"],
                train_args=trainer_pb2.TrainArgs(splits=["train"]),
                eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
                custom_config=_trainer_config(config, training),
            ).with_id(node_id("Trainer", name, repeat))
            evaluator = FiniteEvaluator(
                examples=example_gen.outputs["examples"],
                model=trainer.outputs["model"],
                eval_config=eval_config,
                example_splits=[EVAL_SPLIT],
                module_path=plugin.evaluator_module,
                serving_dir=str(config.serving_dir),
                model_name=name,
                served_version=served,
                max_accuracy_drop=config.evaluation.max_accuracy_drop,
            ).with_id(node_id("Evaluator", name, repeat))
            trainers.append(trainer)
            evaluators.append(evaluator)
        pusher = VersionedPusher(
            model=_gathered([t.outputs["model"] for t in trainers]),
            model_blessing=_gathered([e.outputs["blessing"] for e in evaluators]),
            model_evaluation=_gathered([e.outputs["evaluation"] for e in evaluators]),
            serving_dir=str(config.serving_dir),
            model_name=name,
            examples=example_gen.outputs["examples"],
            statistics=statistics_gen.outputs["statistics"],
            keep_versions=config.keep_versions,
            canary=config.canary,
            run_fingerprint=run_fingerprint,
        ).with_id(node_id("Pusher", name))
        components += [*trainers, *evaluators, pusher]
        components += _variants(config, plugin, trainers, evaluators, transform, example_gen, pusher, run_fingerprint)

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_root),
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
