"""The compiled KFP v2 spec: it parses, has the pipeline's graph, image, runtime parameters and importable code."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.utils import import_utils

from tests.kubeflow_specs import IMAGE, compile_to, edges, executor
from twinflow.components.image_example_gen.listing import list_sources
from twinflow.pipelines.cli.main import main
from twinflow.pipelines.kubeflow.specfile import IMAGE_SCHEMA_FILE, code_paths, read_spec, resolver_tasks

KERAS_TASKS = {
    "ImageExampleGen",
    "ImportSchemaGen",
    "StatisticsGen",
    "ExampleValidator",
    "DataGate",
    "DriftGate",
    "Transform",
    "Trainer_keras",
    "Evaluator_keras",
    "Pusher_keras",
}
KERAS_EDGES = {
    ("ImageExampleGen", "StatisticsGen"),
    ("ImportSchemaGen", "StatisticsGen"),
    ("StatisticsGen", "ExampleValidator"),
    ("ImportSchemaGen", "ExampleValidator"),
    ("ExampleValidator", "DataGate"),
    ("DataGate", "Transform"),
    ("StatisticsGen", "DriftGate"),
    ("ImportSchemaGen", "DriftGate"),
    ("DataGate", "DriftGate"),
    ("DriftGate", "Transform"),
    ("ImageExampleGen", "Transform"),
    ("ImportSchemaGen", "Transform"),
    ("Transform", "Trainer_keras"),
    ("ImportSchemaGen", "Trainer_keras"),
    ("Trainer_keras", "Evaluator_keras"),
    ("ImageExampleGen", "Evaluator_keras"),
    ("Trainer_keras", "Pusher_keras"),
    ("Evaluator_keras", "Pusher_keras"),
    ("ImageExampleGen", "Pusher_keras"),
    ("StatisticsGen", "Pusher_keras"),
}
PARAMETERS = {"input_base", "input_fingerprint", "schema_file", "serving_dir", "training_config"}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_to(tmp_path_factory.mktemp("kfp") / "pipeline.yaml", **{"kubeflow.serving_pvc": "twinflow-models"})


@pytest.fixture(scope="module")
def spec(spec_file: Path) -> dict[str, Any]:
    return read_spec(spec_file)[0]


def test_spec_parses_with_the_kfp_protos(spec_file: Path) -> None:
    documents = list(yaml.safe_load_all(spec_file.read_text()))
    pipeline_spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    platform_spec = json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec())
    assert pipeline_spec.schema_version == "2.1.0"
    assert pipeline_spec.pipeline_info.name == "twinflow"
    assert pipeline_spec.default_pipeline_root == "gs://bucket/twinflow"
    assert "kubernetes" in platform_spec.platforms


def test_spec_has_every_task_and_dependency_and_no_resolver(spec: dict[str, Any]) -> None:
    assert set(spec["root"]["dag"]["tasks"]) == KERAS_TASKS
    assert edges(spec) == KERAS_EDGES
    assert resolver_tasks(spec) == [] and all("resolver" not in e for e in spec["deploymentSpec"]["executors"].values())
    # The Evaluator compares with the served version it reads from the serving volume, not a resolved baseline.
    evaluator = spec["root"]["dag"]["tasks"]["Evaluator_keras"]
    assert set(evaluator["inputs"]["artifacts"]) == {"examples", "model"}
    parameters = evaluator["inputs"]["parameters"]
    assert parameters["model_name"]["runtimeValue"]["constant"] == "keras"
    assert parameters["max_accuracy_drop"]["runtimeValue"]["constant"] == 0.01
    assert parameters["served_version"]["runtimeValue"]["constant"] == ""  # not known when compiling
    # So its cache key cannot hold the served version: it always runs, and judges against what is served then.
    assert evaluator["cachingOptions"] == {"enableCache": False}


def test_every_container_runs_the_configured_image_through_tfx_entrypoint(spec: dict[str, Any]) -> None:
    kinds: dict[str, str] = {}
    for name in spec["root"]["dag"]["tasks"]:
        body = executor(spec, name)
        kinds[name] = next(iter(body))
        if "container" in body:
            assert body["container"]["image"] == IMAGE
            assert (
                body["container"]["command"][-1] == "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
            )
            assert "{{$}}" in body["container"]["args"]
    assert {n for n, kind in kinds.items() if kind == "container"} == KERAS_TASKS


def test_runtime_parameters_have_defaults_and_feed_the_right_exec_properties(spec: dict[str, Any]) -> None:
    definitions = spec["root"]["inputDefinitions"]["parameters"]
    assert set(definitions) == PARAMETERS
    assert all(d["parameterType"] == "STRING" and d["isOptional"] and d["description"] for d in definitions.values())
    assert definitions["input_base"]["defaultValue"] == "gs://bucket/data/fashion_mnist"
    assert definitions["input_fingerprint"]["defaultValue"] == "v1"
    assert definitions["schema_file"]["defaultValue"] == IMAGE_SCHEMA_FILE
    assert definitions["serving_dir"]["defaultValue"] == "/mnt/serving"
    training = json.loads(definitions["training_config"]["defaultValue"])["training"]
    assert training["architecture"] == "tiny_cnn" and training["epochs"] == 1

    tasks = spec["root"]["dag"]["tasks"]
    expected = {
        ("ImageExampleGen", "input_base"): "input_base",
        ("ImageExampleGen", "input_fingerprint"): "input_fingerprint",
        ("ImportSchemaGen", "schema_file"): "schema_file",
        ("Transform", "custom_config"): "training_config",
        ("Trainer_keras", "custom_config"): "training_config",
        ("Pusher_keras", "serving_dir"): "serving_dir",
        ("DriftGate", "serving_dir"): "serving_dir",
        ("Evaluator_keras", "serving_dir"): "serving_dir",
    }
    bound = {
        (task, name): value["componentInputParameter"]
        for task, body in tasks.items()
        for name, value in body.get("inputs", {}).get("parameters", {}).items()
        if "componentInputParameter" in value
    }
    assert bound == expected


def test_serving_volume_is_mounted_in_every_pusher_evaluator_and_the_drift_gate(
    spec_file: Path, spec: dict[str, Any]
) -> None:
    platform = read_spec(spec_file)[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labels = [
        spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
        # The Evaluator reads the served version it compares with, the drift gate the served models' baselines.
        for task in ("Pusher_keras", "Evaluator_keras", "DriftGate")
    ]
    mount = {"pvcMount": [{"constant": "twinflow-models", "mountPath": "/mnt/serving"}]}
    assert executors == dict.fromkeys(labels, mount)


def test_trainer_and_evaluator_steps_request_cpu_and_memory_and_trainers_gpus_when_asked(tmp_path: Path) -> None:
    plain = read_spec(compile_to(tmp_path / "cpu.yaml"))[0]
    resources = {name: executor(plain, name)["container"].get("resources") for name in KERAS_TASKS}
    assert resources.pop("Trainer_keras") == {
        "cpuRequest": 2.0,
        "memoryRequest": pytest.approx(8 * 2**30 / 1e9),
        "memoryLimit": pytest.approx(8 * 2**30 / 1e9),
        "resourceCpuRequest": "2",
        "resourceMemoryRequest": "8Gi",
        "resourceMemoryLimit": "8Gi",
    }
    assert resources.pop("Evaluator_keras")["resourceMemoryRequest"] == "4Gi"
    assert all(value is None for value in resources.values())  # light steps take the cluster's defaults

    gpu = read_spec(compile_to(tmp_path / "gpu.yaml", **{"kubeflow.trainer_gpus": 2, "kubeflow.trainer_cpu": 4}))[0]
    trainer = executor(gpu, "Trainer_keras")["container"]["resources"]
    assert trainer["accelerator"] == {
        "type": "nvidia.com/gpu",
        "count": "2",
        "resourceType": "nvidia.com/gpu",
        "resourceCount": "2",
    }
    assert trainer["resourceCpuRequest"] == "4"
    assert "accelerator" not in executor(gpu, "Evaluator_keras")["container"]["resources"]


def assert_importable(spec: dict[str, Any]) -> None:
    executors, functions, modules = code_paths(spec)
    for path in [*executors, *functions]:
        module, _, name = path.rpartition(".")
        assert callable(import_utils.import_func_from_module(module, name)), path
    for module in modules:  # TFMA hooks an Evaluator loads through module_path
        imported = importlib.import_module(module)
        assert callable(imported.custom_eval_shared_model) and callable(imported.custom_extractors), module


def test_each_framework_trainer_can_run_in_its_own_gpu_image(tmp_path: Path) -> None:
    """TensorFlow's and torch's CUDA builds need different cuDNN majors, so each Trainer may have its own image."""
    tf_gpu, torch_gpu = "registry.example/twinflow:1-tf-gpu", "registry.example/twinflow:1-torch-gpu"
    given = {"kubeflow.keras_trainer_image": tf_gpu, "kubeflow.lightning_trainer_image": torch_gpu}
    spec = read_spec(compile_to(tmp_path / "gpu-images.yaml", framework="both", **given))[0]
    images = {
        name: body["container"]["image"]
        for name in spec["root"]["dag"]["tasks"]
        if "container" in (body := executor(spec, name))
    }
    assert images.pop("Trainer_keras") == tf_gpu
    assert images.pop("Trainer_lightning") == torch_gpu
    assert set(images.values()) == {IMAGE}  # every other step, Evaluators included, keeps the CPU image

    only_keras = read_spec(
        compile_to(tmp_path / "tf-gpu.yaml", framework="both", **{"kubeflow.keras_trainer_image": tf_gpu})
    )[0]
    assert executor(only_keras, "Trainer_keras")["container"]["image"] == tf_gpu
    assert executor(only_keras, "Trainer_lightning")["container"]["image"] == IMAGE


def test_every_executor_and_module_path_in_the_spec_imports(spec: dict[str, Any]) -> None:
    executors, functions, _ = code_paths(spec)
    assert "twinflow.components.image_example_gen.executor.Executor" in executors
    assert "twinflow.components.versioned_pusher.executor.Executor" in executors
    assert functions == ["twinflow.trainers.keras.train.run_fn", "twinflow.trainers.preprocessing.preprocessing_fn"]
    assert_importable(spec)


def test_both_frameworks_get_twin_branches_from_one_transform(tmp_path: Path) -> None:
    spec = read_spec(compile_to(tmp_path / "both.yaml", framework="both"))[0]
    twins = {task.replace("keras", "lightning") for task in KERAS_TASKS}
    assert set(spec["root"]["dag"]["tasks"]) == KERAS_TASKS | twins
    assert edges(spec) == KERAS_EDGES | {
        (a.replace("keras", "lightning"), b.replace("keras", "lightning")) for a, b in KERAS_EDGES
    }
    assert_importable(spec)
    trainer = spec["root"]["dag"]["tasks"]["Trainer_lightning"]["inputs"]["parameters"]
    assert trainer["custom_config"] == {"componentInputParameter": "training_config"}


def test_no_baseline_is_accepted_with_a_notice_and_changes_nothing(
    tiny_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["compile", "--image", IMAGE, "--data-dir", str(tiny_folders), "--data-fingerprint", "v1"]
    assert main([*argv, "--output", str(tmp_path / "plain.yaml")]) == 0
    assert "no-baseline" not in capsys.readouterr().err
    assert main([*argv, "--no-baseline", "--output", str(tmp_path / "old.yaml")]) == 0
    assert "--no-baseline (kubeflow.baseline: false) is no longer needed" in capsys.readouterr().err
    assert read_spec(tmp_path / "old.yaml") == read_spec(tmp_path / "plain.yaml")


def test_compile_cli_reads_the_fingerprint_from_a_local_folder(tiny_folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    argv = ["compile", "--image", IMAGE, "--data-dir", str(tiny_folders), "--output", str(out), "--epochs", "2"]
    assert main(argv) == 0
    spec = read_spec(out)[0]
    definitions = spec["root"]["inputDefinitions"]["parameters"]
    assert definitions["input_base"]["defaultValue"] == str(tiny_folders)
    assert definitions["input_fingerprint"]["defaultValue"] == list_sources(str(tiny_folders)).fingerprint()
    assert json.loads(definitions["training_config"]["defaultValue"])["training"]["epochs"] == 2
    eval_config = spec["root"]["dag"]["tasks"]["Evaluator_keras"]["inputs"]["parameters"]["eval_config"]
    (metrics_spec,) = json.loads(eval_config["runtimeValue"]["constant"])["metrics_specs"]
    # Per-class precision and recall are read from the confusion matrix: no per-class binarized metrics.
    assert "binarize" not in metrics_spec
    assert "MultiClassConfusionMatrixPlot" in {metric["class_name"] for metric in metrics_spec["metrics"]}


def test_compile_cli_needs_no_class_count_for_object_storage(tmp_path: Path) -> None:
    out = tmp_path / "s.yaml"
    argv = ["compile", "--image", IMAGE, "--data-dir", "gs://bucket/images", "--output", str(out)]
    assert main(argv) == 0
    definitions = read_spec(out)[0]["root"]["inputDefinitions"]["parameters"]
    assert definitions["input_base"]["defaultValue"] == "gs://bucket/images"
    assert definitions["input_fingerprint"]["defaultValue"] == ""  # not listed at compile time
    with pytest.raises(SystemExit) as refused:  # the flag is gone: refused by argparse, not ignored
        main([*argv, "--num-classes", "10"])
    assert refused.value.code == 2


def test_spans_compile_with_the_span_lookup_never_answered_from_cache(tmp_path: Path) -> None:
    """A data root compiles: ImageExampleGen picks the latest spans when it runs, and is never answered from cache."""
    from tests.image_data import write_image_folders

    for span in (1, 2):
        write_image_folders(tmp_path / "incoming" / f"span-{span}", ["circle", "square"], 2, seed=span)
    out = tmp_path / "spec.yaml"
    argv = ["compile", "--image", IMAGE, "--data-root", str(tmp_path / "incoming"), "--spans", "2"]
    assert main([*argv, "--output", str(out)]) == 0
    spec = read_spec(out)[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ImageExampleGen"]["cachingOptions"] == {"enableCache": False}
    assert all(  # Evaluators judge against the version served when they run: never cached either
        body.get("cachingOptions", {}).get("enableCache", True) == (not name.startswith("Evaluator_"))
        for name, body in tasks.items()
        if name != "ImageExampleGen"
    )
    parameters = tasks["ImageExampleGen"]["inputs"]["parameters"]
    assert parameters["span_pattern"]["runtimeValue"]["constant"] == "span-{SPAN}"
    assert parameters["spans"]["runtimeValue"]["constant"] == 2
    definitions = spec["root"]["inputDefinitions"]["parameters"]
    assert definitions["input_base"]["defaultValue"] == str(tmp_path / "incoming")
    assert definitions["input_fingerprint"]["defaultValue"] == ""  # the spans are looked up at run time
    assert resolver_tasks(spec) == [] and "DriftGate" in tasks
