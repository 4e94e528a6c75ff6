"""KServe ``InferenceService`` manifests (serving.kserve.io/v1beta1) for the models twinflow pushes.

Two manifests, because no single stock KServe runtime serves everything twinflow pushes:

* ``<name>-server.yaml``: a custom predictor running twinflow's own image (``twinflow serve``) on the
  whole serving folder. It serves both frameworks (model names ``keras`` and ``lightning`` in URLs)
  over both protocols (TF Serving REST on ``/v1``, KServe V2 on ``/v2``) from one port.
* ``<name>-keras-tfserving.yaml``: the Keras SavedModel alone on KServe's stock TF Serving runtime,
  for clusters that prefer a stock runtime. It serves Keras only, and TF Serving's v1 REST only.

The Lightning model has no stock counterpart: its model.onnx would fit Triton's stock ONNX runtime,
but its preprocessing is a TensorFlow Transform graph that Triton cannot run, so only twinflow's
server gives it the same inputs as training.

``serving_uri`` is the pushed serving folder as KServe's storage initializer reads it (``s3://…``,
``gs://…``, ``pvc://<claim>/<path>``). An object-store URI is copied to ``/mnt/models`` once, when
the pod starts: pushes, rollbacks and label changes made after that reach the server only with a
restart. A ``pvc://`` claim is mounted and its entries linked into ``/mnt/models``, so the server
(linked framework folders) follows them live; stock TF Serving (linked version folders) does not.
The files' header comments say which applies. Kept free of TensorFlow so that manifests are written without loading
a model stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["FRAMEWORKS", "MODEL_DIR", "ManifestOptions", "inference_services", "write_manifests"]

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
# Where KServe's storage initializer puts STORAGE_URI / storageUri for the predictor.
MODEL_DIR = "/mnt/models"
# Folders under the serving folder; twinflow's server names its models after them.
FRAMEWORKS = ("keras", "lightning")
PART_OF = {"app.kubernetes.io/part-of": "twinflow"}
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# The longest suffix a manifest adds to the name ("-keras-tfserving", as the file name has it)
# leaves room within a 63-character DNS label.
MAX_NAME_LENGTH = 45
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class ManifestOptions:
    """What the manifests need; checked on construction so a bad value fails before any file is written."""

    image: str
    serving_uri: str
    name: str = "twinflow"
    namespace: str | None = None
    tf_serving_runtime_version: str = "2.16.1"
    port: int = 8080

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME_LENGTH or not _DNS_1035.fullmatch(self.name):
            raise ValueError(
                f"name {self.name!r}: must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
                "(lowercase letters, digits and '-', starting with a letter and ending with a letter or digit)"
            )
        if not isinstance(self.image, str) or not self.image.strip() or any(c.isspace() for c in self.image):
            raise ValueError(f"image {self.image!r}: must be a non-empty container image reference without spaces")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r}: must be an integer from 1 to 65535")
        if not isinstance(self.serving_uri, str) or not self.serving_uri.strip():
            raise ValueError(f"serving_uri {self.serving_uri!r}: must be a non-empty storage URI of the serving folder")
        if self.serving_uri.rstrip("/").endswith(":"):
            raise ValueError(f"serving_uri {self.serving_uri!r}: names no folder (a bucket or path is needed)")
        if self.namespace is not None and (len(self.namespace) > 63 or not _DNS_1123.fullmatch(self.namespace)):
            raise ValueError(f"namespace {self.namespace!r}: must be a DNS-1123 label (lowercase alnum and '-')")
        version = self.tf_serving_runtime_version
        if not isinstance(version, str) or not version.strip() or any(c.isspace() for c in version):
            raise ValueError("tf_serving_runtime_version: must be a TF Serving image tag (non-empty, no spaces)")


def _metadata(options: ManifestOptions, name: str, annotations: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if options.namespace is not None:
        metadata["namespace"] = options.namespace
    metadata["labels"] = dict(PART_OF)
    metadata["annotations"] = annotations
    return metadata


def _server(options: ManifestOptions) -> dict[str, Any]:
    """Custom predictor: ``command`` is set as well as ``args`` so the image's ENTRYPOINT cannot double it."""
    container = {
        "name": "kserve-container",  # the name KServe's storage initializer mounts /mnt/models into
        "image": options.image,
        "command": ["twinflow", "serve"],
        "args": ["--serving-dir", MODEL_DIR, "--host", "0.0.0.0", "--port", str(options.port)],
        "ports": [{"containerPort": options.port, "protocol": "TCP"}],
        "env": [{"name": "STORAGE_URI", "value": options.serving_uri}],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": options.port},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        },
        # Generous start: the server loads TensorFlow and both models before it answers.
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": options.port},
            "initialDelaySeconds": 60,
            "periodSeconds": 30,
            "failureThreshold": 3,
        },
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    }
    annotations = {
        "twinflow/model-names": "framework names in URLs: " + ", ".join(FRAMEWORKS),
        "twinflow/protocols": "TF Serving REST on /v1, KServe V2 on /v2, one port",
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _metadata(options, options.name, annotations),
        "spec": {"predictor": {"containers": [container]}},
    }


def _keras_storage_uri(options: ManifestOptions) -> str:
    return f"{options.serving_uri.rstrip('/')}/keras"


def _keras_tf_serving(options: ManifestOptions) -> dict[str, Any]:
    """Stock TF Serving runtime on the Keras folder: its numeric version folders are what TF Serving expects."""
    annotations = {
        "twinflow/model-name": "URLs name the model by this InferenceService's name, not 'keras'",
        "twinflow/model-version": "TF Serving serves the highest numeric version folder under storageUri",
    }
    model = {
        "modelFormat": {"name": "tensorflow"},
        "runtimeVersion": options.tf_serving_runtime_version,
        "storageUri": _keras_storage_uri(options),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": _metadata(options, f"{options.name}-keras", annotations),
        "spec": {"predictor": {"model": model}},
    }


def _host_line(options: ManifestOptions, service: str) -> str:
    namespace = f" -n {options.namespace}" if options.namespace else ""
    return f"#   HOST=$(kubectl get inferenceservice {service}{namespace} -o jsonpath='{{.status.url}}' | cut -d/ -f3)"


def _storage_lines(options: ManifestOptions, service: str, uri: str, server: bool) -> list[str]:
    """Whether the pod sees later pushes. KServe copies an object store's folder once, at pod start; for pvc:// it
    mounts the claim and links the entries present then into /mnt/models: twinflow's server gets the framework
    folders (their new versions are seen live), stock TF Serving the version folders (new ones are not)."""
    changes = "pushes, rollbacks and labels" if server else "pushes and rollbacks"
    if uri.startswith("pvc://") and server:
        return [
            f"# {uri} is mounted, not copied: {changes} are followed live",
            "# (only a framework folder that appears later needs a pod restart).",
        ]
    how = "linked from the claim" if uri.startswith("pvc://") else "copied into the pod"
    namespace = f" -n {options.namespace}" if options.namespace else ""
    lines = [
        f"# {uri} is {how} once, when the pod starts:",
        f"# {changes} made later are not seen until it restarts, e.g.",
        f"#   kubectl delete pod{namespace} -l serving.kserve.io/inferenceservice={service}",
    ]
    if server:
        lines.append("# To follow them live, keep the serving folder on a volume: --serving-uri pvc://<claim>/<path>.")
    return lines


def _documents(options: ManifestOptions) -> dict[str, tuple[str, dict[str, Any]]]:
    """File name → (header comment, manifest): one place so the comments follow the names."""
    server, keras = _server(options), _keras_tf_serving(options)
    keras_name = keras["metadata"]["name"]
    server_header = "\n".join(
        [
            "# twinflow model server (KServe custom predictor running `twinflow serve` on the whole serving folder):",
            "# Keras and Lightning, TF Serving REST (/v1) and KServe V2 (/v2); model names in URLs: keras, lightning",
            _host_line(options, options.name),
            '#   curl -H "Host: $HOST" http://$INGRESS/v1/models/keras:predict -d @request.json',
            '#   curl -H "Host: $HOST" http://$INGRESS/v2/models/lightning/infer -d @request.json',
            *_storage_lines(options, options.name, options.serving_uri, server=True),
            "# Authentication: leave it to Istio (RequestAuthentication + AuthorizationPolicy on this service), or",
            "# mount a Secret and add --auth-token-file to args; the probes' /v2/health paths need no token.",
        ]
    )
    keras_header = "\n".join(
        [
            "# twinflow's Keras SavedModel on KServe's stock TF Serving runtime: Keras only, REST /v1 only.",
            f"# The model name in URLs is the InferenceService's name, {keras_name}; the highest version folder serves",
            _host_line(options, keras_name),
            f'#   curl -H "Host: $HOST" http://$INGRESS/v1/models/{keras_name}:predict -d @request.json',
            *_storage_lines(options, keras_name, _keras_storage_uri(options), server=False),
        ]
    )
    return {
        f"{options.name}-server.yaml": (server_header, server),
        f"{options.name}-keras-tfserving.yaml": (keras_header, keras),
    }


def inference_services(options: ManifestOptions) -> dict[str, dict]:
    """File name → InferenceService manifest: the twinflow server and the stock TF Serving alternative."""
    return {file: manifest for file, (_, manifest) in _documents(options).items()}


def write_manifests(options: ManifestOptions, out_dir: str | Path) -> list[Path]:
    """Write each manifest as YAML under a comment saying what it serves and how to call it; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for file, (header, manifest) in _documents(options).items():
        path = out / file
        path.write_text(f"{header}\n{yaml.safe_dump(manifest, sort_keys=False, width=120)}")
        paths.append(path)
    return paths
