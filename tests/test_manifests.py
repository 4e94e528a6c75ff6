"""KServe manifests: what KServe and kubectl read back, and the bad inputs refused before any file is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from twinflow.serving.manifests import MODEL_DIR, ManifestOptions, inference_services, write_manifests

ROOT = Path(__file__).parents[1]
IMAGE = "registry.example/twinflow-serving:0.1.0"
URI = "s3://models/twinflow/serving"


def options(**overrides: Any) -> ManifestOptions:
    return ManifestOptions(**{"image": IMAGE, "serving_uri": URI, **overrides})


def written(tmp_path: Path, **overrides: Any) -> dict[str, dict]:
    """The manifests as written to disk and parsed back, by file name."""
    paths = write_manifests(options(**overrides), tmp_path / "manifests")
    assert all(path.parent == tmp_path / "manifests" for path in paths)
    return {path.name: yaml.safe_load(path.read_text()) for path in paths}


def server_container(manifests: dict[str, dict], name: str = "twinflow") -> dict:
    (container,) = manifests[f"{name}-server.yaml"]["spec"]["predictor"]["containers"]
    return container


def test_two_inference_services_round_trip_through_yaml(tmp_path: Path) -> None:
    manifests = written(tmp_path)
    assert manifests == inference_services(options())
    assert set(manifests) == {"twinflow-server.yaml", "twinflow-keras-tfserving.yaml"}
    for manifest in manifests.values():
        assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
        assert manifest["kind"] == "InferenceService"
        assert manifest["metadata"]["labels"] == {"app.kubernetes.io/part-of": "twinflow"}


def test_each_file_opens_with_a_comment_naming_the_models_in_urls(tmp_path: Path) -> None:
    paths = {path.name: path.read_text() for path in write_manifests(options(name="fmnist"), tmp_path)}
    server, keras = paths["fmnist-server.yaml"], paths["fmnist-keras-tfserving.yaml"]
    assert server.startswith("# ") and keras.startswith("# ")
    assert "/v1/models/keras:predict" in server and "/v2/models/lightning/infer" in server
    assert "/v1/models/fmnist-keras:predict" in keras


def test_custom_predictor_runs_twinflow_serve_on_the_downloaded_folder(tmp_path: Path) -> None:
    manifest = written(tmp_path)["twinflow-server.yaml"]
    assert manifest["metadata"]["name"] == "twinflow"
    container = server_container(written(tmp_path))
    assert container["name"] == "kserve-container"
    assert container["image"] == IMAGE
    # command as well as args: the serving image's ENTRYPOINT is twinflow serve, which args alone would follow.
    command = container["command"] + container["args"]
    assert command[:2] == ["twinflow", "serve"]
    assert command[2:] == ["--serving-dir", MODEL_DIR, "--host", "0.0.0.0", "--port", "8080"]
    assert MODEL_DIR == "/mnt/models"
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert {"name": "STORAGE_URI", "value": URI} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}


def test_port_is_the_same_everywhere_in_the_container(tmp_path: Path) -> None:
    container = server_container(written(tmp_path, port=9000))
    assert container["args"][-2:] == ["--port", "9000"]
    assert container["ports"][0]["containerPort"] == 9000
    assert container["readinessProbe"]["httpGet"]["port"] == container["livenessProbe"]["httpGet"]["port"] == 9000


def test_stock_tf_serving_serves_the_keras_folder_with_a_pinned_runtime(tmp_path: Path) -> None:
    manifest = written(tmp_path, tf_serving_runtime_version="2.15.0")["twinflow-keras-tfserving.yaml"]
    assert manifest["metadata"]["name"] == "twinflow-keras"
    annotations = " ".join(manifest["metadata"]["annotations"].values())
    assert "InferenceService's name" in annotations and "highest numeric version" in annotations
    assert manifest["spec"]["predictor"]["model"] == {
        "modelFormat": {"name": "tensorflow"},
        "runtimeVersion": "2.15.0",
        "storageUri": f"{URI}/keras",
    }
    assert ManifestOptions(image=IMAGE, serving_uri=URI).tf_serving_runtime_version == "2.16.1"


@pytest.mark.parametrize("uri", ["s3://models/serving/", "s3://models/serving//"])
def test_storage_uri_has_no_double_slash(tmp_path: Path, uri: str) -> None:
    manifests = written(tmp_path, serving_uri=uri)
    storage = manifests["twinflow-keras-tfserving.yaml"]["spec"]["predictor"]["model"]["storageUri"]
    assert storage == "s3://models/serving/keras"
    assert {"name": "STORAGE_URI", "value": uri} in server_container(manifests)["env"]


def test_namespace_only_when_given(tmp_path: Path) -> None:
    assert all("namespace" not in m["metadata"] for m in written(tmp_path / "none").values())
    manifests = written(tmp_path / "ml", namespace="ml")
    assert all(m["metadata"]["namespace"] == "ml" for m in manifests.values())


def test_name_prefixes_every_file_and_service(tmp_path: Path) -> None:
    name = "a" * 45  # the longest: "<name>-keras-tfserving" stays within a 63-character label
    manifests = written(tmp_path, name=name)
    assert set(manifests) == {f"{name}-server.yaml", f"{name}-keras-tfserving.yaml"}
    assert len(f"{name}-keras-tfserving") <= 63


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Twinflow"),
        ("name", "1twinflow"),
        ("name", "twin_flow"),
        ("name", "twinflow-"),
        ("name", ""),
        ("name", "a" * 46),
        ("image", ""),
        ("image", "   "),
        ("image", "registry/twin flow"),
        ("port", 0),
        ("port", 65536),
        ("port", True),
        ("port", "8080"),
        ("serving_uri", ""),
        ("serving_uri", "  "),
        ("serving_uri", "s3://"),
        ("namespace", "ML"),
        ("tf_serving_runtime_version", ""),
    ],
)
def test_bad_input_is_refused_naming_the_field(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        write_manifests(options(**{field: value}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_no_tensorflow_is_loaded() -> None:
    code = (
        "import sys, twinflow.serving.manifests; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'tfx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def _headers(tmp_path: Path, uri: str) -> dict[str, str]:
    """Each file's header comment, by file name."""
    paths = write_manifests(options(serving_uri=uri, namespace="ml"), tmp_path / uri.split(":")[0])
    return {path.name: path.read_text().split("\napiVersion:")[0] for path in paths}


def test_an_object_store_uri_is_said_to_need_a_restart_after_each_push(tmp_path: Path) -> None:
    headers = _headers(tmp_path, URI)
    server, keras = headers["twinflow-server.yaml"], headers["twinflow-keras-tfserving.yaml"]
    assert f"# {URI} is copied into the pod once, when the pod starts:" in server
    assert "pushes, rollbacks and labels made later are not seen until it restarts" in server
    assert "kubectl delete pod -n ml -l serving.kserve.io/inferenceservice=twinflow\n" in server
    assert "--serving-uri pvc://" in server
    assert f"# {URI}/keras is copied into the pod once" in keras and "pushes and rollbacks made later" in keras
    assert "inferenceservice=twinflow-keras" in keras


def test_a_pvc_uri_is_followed_live_by_the_server_but_not_by_stock_tf_serving(tmp_path: Path) -> None:
    headers = _headers(tmp_path, "pvc://models/serving")
    server, keras = headers["twinflow-server.yaml"], headers["twinflow-keras-tfserving.yaml"]
    assert "pvc://models/serving is mounted, not copied: pushes, rollbacks and labels are followed live" in server
    assert "restarts" not in server
    assert "pvc://models/serving/keras is linked from the claim once, when the pod starts" in keras


def test_the_server_manifest_says_how_authentication_runs_there(tmp_path: Path) -> None:
    server = _headers(tmp_path, URI)["twinflow-server.yaml"]
    assert "Istio (RequestAuthentication + AuthorizationPolicy" in server and "--auth-token-file" in server
