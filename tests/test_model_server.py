"""``twinflow serve`` over real sockets on 127.0.0.1, serving the real pushed models of ``both_run``.

The server runs as its own process (``python -m twinflow.pipelines.cli serve``) on a copy of the
serving folder, so pushes, broken versions and rollbacks can be dropped in while it serves.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from twinflow.components.image_example_gen.executor import make_example
from twinflow.model_store.layout import complete_versions, served_version, write_labels
from twinflow.model_store.operations import promote, rollback
from twinflow.model_store.publish import publish
from twinflow.trainers.formats.onnx_model import OnnxImageClassifier

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["circle", "square", "stripes"]
FRAMEWORKS = ("keras", "lightning")
CLI = (sys.executable, "-m", "twinflow.pipelines.cli")


class Server:
    def __init__(self, url: str, serving_dir: Path, process: subprocess.Popen, log: Path):
        self.url, self.serving_dir, self.process, self.log = url, serving_dir, process, log

    def call(self, path: str, body: Any = None, raw: bytes | None = None, headers: dict | None = None):
        """(status, headers, body bytes) of one request; never raises for HTTP error statuses."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        status, _, content = self.call(path, body, **kwargs)
        return status, json.loads(content)

    def served(self, name: str) -> list[str]:
        _, status = self.json(f"/v1/models/{name}")
        return [s["version"] for s in status["model_version_status"] if s["state"] == "AVAILABLE"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _start_server(serving_dir: Path, log: Path, *flags: str) -> Server:
    """``twinflow serve`` on a free port, once it has loaded both models."""
    port = _free_port()
    command = [
        sys.executable,
        *("-m", "twinflow.pipelines.cli", "serve", "--serving-dir", str(serving_dir)),
        "--port",
        str(port),
    ]
    with open(log, "w") as out:
        process = subprocess.Popen([*command, *flags], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", serving_dir, process, log)

    def is_ready() -> bool:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            return server.call("/v2/health/ready")[0] == 200
        except OSError:
            return False

    _wait(is_ready, 180, "the server to load both models")
    return server


def _stop_server(server: Server) -> None:
    server.process.terminate()  # SIGTERM: uvicorn's graceful shutdown, then it re-raises the signal it caught
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM), server.log.read_text()[-3000:]
    assert "Application shutdown complete" in server.log.read_text()


@pytest.fixture(scope="module")
def model_server(both_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config, _ = both_run
    serving_dir = tmp_path_factory.mktemp("served") / "serving"
    shutil.copytree(config.serving_dir, serving_dir, ignore=shutil.ignore_patterns("_decisions"))
    server = _start_server(
        serving_dir,
        serving_dir.parent / "server.log",
        *("--poll-seconds", "0.3", "--max-instances", "8", "--max-body-bytes", "200000"),
        *("--max-image-pixels", "250000", "--max-request-pixels", "400000", "--max-concurrent-requests", "16"),
    )
    yield server
    _stop_server(server)


def _images(tiny_folders: Path) -> list[bytes]:
    return [sorted((tiny_folders / "test" / name).glob("*.png"))[0].read_bytes() for name in CLASSES]


def _b64(values: list[bytes]) -> list[dict[str, str]]:
    return [{"b64": base64.b64encode(v).decode()} for v in values]


def _in_process(serving_dir: Path, framework: str, images: list[bytes]) -> np.ndarray:
    version = served_version(str(serving_dir / framework))
    if framework == "keras":
        model = tf.saved_model.load(version.path)
        return model.signatures["serving_image_bytes"](image_bytes=tf.constant(images))["probabilities"].numpy()
    return OnnxImageClassifier(version.path).predict_image_bytes(images)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_both_apis_and_signatures_answer_as_the_model_in_process(model_server, tiny_folders, framework) -> None:
    images = _images(tiny_folders)
    expected = _in_process(model_server.serving_dir, framework, images)
    examples = [make_example(b, 0, "circle", "f").SerializeToString() for b in images]
    answers = {}
    for signature, values in (("serving_image_bytes", images), ("serving_default", examples)):
        status, rows = model_server.json(
            f"/v1/models/{framework}:predict", {"signature_name": signature, "instances": _b64(values)}
        )
        assert status == 200, rows
        answers[f"v1 rows {signature}"] = np.array([r["probabilities"] for r in rows["predictions"]])
        assert [r["class_name"] for r in rows["predictions"]] == [CLASSES[i] for i in expected.argmax(1)]
        input_name = "image_bytes" if signature == "serving_image_bytes" else "examples"
        status, columns = model_server.json(
            f"/v1/models/{framework}:predict", {"signature_name": signature, "inputs": {input_name: _b64(values)}}
        )
        assert status == 200, columns
        answers[f"v1 columns {signature}"] = np.array(columns["outputs"]["probabilities"])
        assert set(columns["outputs"]) == {"probabilities", "class_index", "class_name", "class_names"}
    status, v2 = model_server.json(
        f"/v2/models/{framework}/infer",
        {
            "id": "r1",
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [len(images)],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(b).decode() for b in images],
                }
            ],
        },
    )
    assert status == 200 and v2["id"] == "r1" and v2["model_name"] == framework, v2
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [3, 3]
    answers["v2 json"] = np.array(outputs["probabilities"]["data"]).reshape(3, 3)
    assert outputs["class_name"]["data"] == [CLASSES[i] for i in expected.argmax(1)]
    for name, got in answers.items():
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_third_party_v2_client_in_binary_and_json_modes(model_server, tiny_folders, framework) -> None:
    import tritonclient.http as triton

    images = _images(tiny_folders)
    expected = _in_process(model_server.serving_dir, framework, images)
    client = triton.InferenceServerClient(url=model_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(framework)
    metadata = client.get_model_metadata(framework)
    assert metadata["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}]
    for binary in (True, False):
        tensor = triton.InferInput("image_bytes", [len(images)], "BYTES")
        # JSON mode: BYTES travel as strings, so images go base64-encoded (tritonclient refuses raw bytes there).
        values = images if binary else [base64.b64encode(b) for b in images]
        tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
        wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "class_name")]
        result = client.infer(framework, [tensor], outputs=wanted)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5, err_msg=f"binary={binary}")
        names = [n.decode() if isinstance(n, bytes) else n for n in result.as_numpy("class_name")]
        assert names == [CLASSES[i] for i in expected.argmax(1)]
    client.close()


def test_status_and_metadata_are_tf_servings_shapes(model_server) -> None:
    for framework in FRAMEWORKS:
        (version,) = model_server.served(framework)
        status, body = model_server.json(f"/v1/models/{framework}")
        assert status == 200
        parsed = json_format.Parse(json.dumps(body), get_model_status_pb2.GetModelStatusResponse())  # strict
        assert parsed.model_version_status[0].version == int(version)
        assert body["model_version_status"][0]["status"] == {"error_code": "OK", "error_message": ""}
        status, metadata = model_server.json(f"/v1/models/{framework}/versions/{version}/metadata")
        assert status == 200
        assert metadata["model_spec"] == {"name": framework, "signature_name": "", "version": version}
        signatures = json_format.ParseDict(
            metadata["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap()
        )
        for name, input_name in (("serving_default", "examples"), ("serving_image_bytes", "image_bytes")):
            signature = signatures.signature_def[name]
            assert list(signature.inputs) == [input_name]
            assert signature.outputs["probabilities"].tensor_shape.dim[1].size == 3
            assert signature.method_name == "tensorflow/serving/predict"


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    return _encoded(Image.new("L", size), "PNG")


def _example(image: bytes) -> bytes:
    """A raw tf.Example holding ``image`` as it comes (make_example would measure, and so decode, it)."""
    example = tf.train.Example()
    example.features.feature["image"].bytes_list.value.append(image)
    return example.SerializeToString()


def test_every_bad_request_gets_its_status_and_message_and_the_server_goes_on(model_server, tiny_folders) -> None:
    good = _b64(_images(tiny_folders)[:1])
    empty_batch = json.dumps({"inputs": [{"name": "image_bytes", "shape": [0], "datatype": "BYTES", "data": []}]})
    ppm = _encoded(Image.new("L", (8, 8)), "PPM")  # Pillow reads it; the server offers no such decoder
    jpeg = _encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    cases = [
        ("/v1/models/keras:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/keras:predict", json.dumps({"instances": good, "inputs": good}).encode(), 400, "only one of"),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "serving_default"}).encode(),
            400,
            "Missing 'inputs'",
        ),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "nope", "instances": good}).encode(),
            400,
            'Serving signature name: "nope" not found',
        ),
        ("/v1/models/keras:predict", json.dumps({"instances": [{"b64": "@@@"}]}).encode(), 400, "base64 decode"),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([b"not an image"])}).encode(),
            400,
            "instance 0: not a decodable image",
        ),
        (
            "/v1/models/lightning:predict",
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([ppm])}).encode(),
            400,
            "instance 0: not a decodable image (",
        ),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([jpeg[: len(jpeg) // 2]])}).encode(),
            400,
            "instance 0: the image data is corrupt or truncated (image file is truncated",
        ),
        (
            "/v1/models/lightning:predict",
            json.dumps({"instances": _b64([_example(jpeg[:-300])])}).encode(),
            400,
            "instance 0: the image data is corrupt or truncated",
        ),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([_png((400, 400))] * 3)}).encode(),
            413,
            "the request's 3 images hold 480000 pixels, over the limit of 400000 per request (--max-request-pixels)",
        ),
        (
            "/v1/models/keras:predict",
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([_png((600, 600))])}).encode(),
            400,
            "360000 pixels is over the limit of 250000",
        ),
        ("/v1/models/keras:predict", json.dumps({"instances": _b64([b"junk"])}).encode(), 400, "not a serialized"),
        ("/v1/models/keras:predict", json.dumps({"instances": good * 9}).encode(), 413, "9 instances is over"),
        ("/v1/models/keras:predict", json.dumps({"instances": good * 3, "x": "a" * 300_000}).encode(), 413, "body"),
        ("/v1/models/nope:predict", json.dumps({"instances": good}).encode(), 404, "Latest(nope)"),
        ("/v1/models/keras/versions/7:predict", json.dumps({"instances": good}).encode(), 404, "Specific(keras, 7)"),
        ("/v1/models/keras/labels/canary:predict", json.dumps({"instances": good}).encode(), 400, "label: canary"),
        ("/v1/models/keras:explode", b"{}", 400, "Malformed request: POST /v1/models/keras:explode"),
        ("/v1/models/keras:classify", b"{}", 501, "classify is not served"),
        ("/v2/models/keras/infer", b"[]", 400, "'inputs' list"),
        ("/v2/models/keras/infer", json.dumps({"inputs": [{"name": "image_bytes"}]}).encode(), 400, "datatype BYTES"),
        (
            "/v2/models/keras/infer",
            json.dumps({"inputs": [{"name": "img", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}).encode(),
            400,
            "unknown input 'img'",
        ),
        (
            "/v2/models/keras/infer",
            json.dumps(
                {"inputs": [{"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": ["QQ=="]}]}
            ).encode(),
            400,
            "shape [2] (2 elements) but 1 were sent",
        ),
        ("/v2/models/nope/infer", b"{}", 404, "Latest(nope)"),
        ("/v1/models/keras:predict", b"[" * 50_000 + b"]" * 50_000, 400, "JSON Parse error: nested too deeply"),
        ("/v2/models/lightning/infer", b"[" * 50_000 + b"]" * 50_000, 400, "not valid JSON: nested too deeply"),
        *(
            (f"/v2/models/{framework}/infer", empty_batch.encode(), 400, "an infer request needs at least one image")
            for framework in FRAMEWORKS  # one behaviour: an empty batch was a 400 for Keras, a 200 for Lightning
        ),
        ("/nowhere", b"{}", 404, "Not Found: POST /nowhere"),  # unrouted: the APIs' error form, not {"detail"}
    ]
    for path, raw, want_status, want_text in cases:
        status, _, content = model_server.call(path, raw=raw)
        error = json.loads(content)["error"]
        assert (status, want_text in error) == (want_status, True), (path, raw[:80], status, error)
    status, answer = model_server.json(
        "/v1/models/keras:predict", {"signature_name": "serving_image_bytes", "instances": good}
    )
    assert status == 200 and answer["predictions"], "the server still answers after every bad request"
    status, _, metrics = model_server.call("/metrics")
    text = metrics.decode()
    assert 'twinflow_requests_total{api="tf_serving",code="413",model="keras"' in text
    assert 'model="nope"' not in text and 'model="_unknown"' in text  # unknown names never become labels
    assert 'code="500"' not in text
    assert ' - "POST /v1/models/keras' not in model_server.log.read_text(), "the access log is off by default"


def test_hot_reload_push_broken_version_rollback_and_labels_under_load(model_server, tiny_folders) -> None:
    root = model_server.serving_dir / "keras"
    (first,) = complete_versions(str(root))
    body = json.dumps({"signature_name": "serving_image_bytes", "instances": _b64(_images(tiny_folders))}).encode()
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def load() -> None:  # bounded: at most 3000 requests and 240 s
        deadline = time.monotonic() + 240
        while not stop.is_set() and answered[0] < 3000 and time.monotonic() < deadline:
            status, _, content = model_server.call("/v1/models/keras:predict", raw=body)
            answered[0] += 1
            if status != 200:
                failures.append(f"{status} {content[:200]!r}")

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        pushed = publish(first.path, str(root), {})  # a new version, as a push writes it
        _wait(lambda: model_server.served("keras") == [str(pushed.number)], 90, "the new version to be served")

        broken = root / str(pushed.number + 1)
        broken.mkdir()
        (broken / "model.json").write_text("{}")
        (broken / "_COMPLETE.json").write_text('{"files": ["model.json"]}')
        half = root / str(pushed.number + 2)  # no marker: a push still being written
        half.mkdir()
        _wait(
            lambda: any(s["state"] == "END" for s in model_server.json("/v1/models/keras")[1]["model_version_status"]),
            60,
            "the broken version to be reported",
        )
        assert model_server.served("keras") == [str(pushed.number)], "the previous version keeps serving"
        shutil.rmtree(broken)
        shutil.rmtree(half)

        rolled = rollback(str(model_server.serving_dir), "keras", to=first.number)
        _wait(lambda: model_server.served("keras") == [str(rolled.number)], 90, "the rollback to be served")

        canary = publish(first.path, str(root), {})
        write_labels(str(root), {"stable": rolled.number, "canary": canary.number})
        _wait(lambda: len(model_server.served("keras")) == 2, 90, "stable and canary to be served")
        status, canary_answer = model_server.json(
            "/v1/models/keras/labels/canary:predict",
            {"signature_name": "serving_image_bytes", "instances": _b64(_images(tiny_folders)[:1])},
        )
        assert status == 200, canary_answer
        _, default_status = model_server.json("/v1/models/keras/labels/stable")
        assert default_status["model_version_status"][0]["version"] == str(rolled.number)
        promote(str(model_server.serving_dir), "keras")
        _wait(lambda: model_server.served("keras") == [str(canary.number)], 90, "the promoted canary alone")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)
    assert answered[0] > 20, answered
    assert failures == [], failures[:5]
    log = model_server.log.read_text()
    assert f"version {pushed.number + 1} cannot be served and is skipped" in log
    assert f"version {pushed.number + 2} is not complete yet" in log


def test_predict_command_prints_top_classes(model_server, tiny_folders, tmp_path) -> None:
    image = tmp_path / "square.png"
    image.write_bytes(_images(tiny_folders)[1])
    result = subprocess.run(
        [*CLI, "predict", str(image), "--model", "lightning", "--url", model_server.url, "--top-k", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(image) and len(lines) == 3, result.stdout
    assert [line.split()[0] for line in lines[1:]] != [] and all(line.split()[0] in CLASSES for line in lines[1:])
    assert all(line.rstrip().endswith("%") for line in lines[1:]), result.stdout
    missing = subprocess.run(
        [*CLI, "predict", str(tmp_path / "none.png"), "--model", "keras", "--url", model_server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 6 and "none.png: cannot read the image" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_failed_version_replaced_under_the_same_number_between_polls_is_tried_again(
    model_server, tmp_path: Path
) -> None:
    """A rollback or push can reuse the number of a broken version removed a moment before (numbers are
    Unix seconds): the repository must not keep skipping that number when no poll saw the folder gone."""
    from twinflow.serving.repository import ModelRepository

    (good,) = complete_versions(str(model_server.serving_dir / "keras"))[:1]
    root = tmp_path / "serving" / "keras"
    shutil.copytree(good.path, root / "1")
    repository = ModelRepository(str(tmp_path / "serving"))
    repository.poll()
    broken = root / "2"
    broken.mkdir()
    (broken / "model.json").write_text("{}")
    (broken / "_COMPLETE.json").write_text('{"files": ["model.json"]}')
    repository.poll()
    assert sorted(repository.state("keras").versions) == [1] and list(repository.failures("keras")) == [2]
    shutil.rmtree(broken)
    shutil.copytree(good.path, broken)  # a good version under the same number, with no poll in between
    os.utime(broken / "_COMPLETE.json", ns=(time.time_ns(), time.time_ns()))  # as a new push writes it
    repository.poll()
    assert sorted(repository.state("keras").versions) == [2] and repository.failures("keras") == {}


def _as_trained(upright: Image.Image) -> dict[str, bytes]:
    """One upright picture as a phone or another program may send it: each needs ingest's normalisation."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90° clockwise to view": the stored pixels lie on their side
    rgb = upright.convert("RGB")
    gray16 = Image.fromarray(np.asarray(upright, dtype=np.uint16) * 257)
    return {
        "turned camera JPEG": _encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()),
        "GIF": _encoded(upright, "GIF"),
        "BMP": _encoded(rgb, "BMP"),
        "WebP": _encoded(rgb, "WEBP", lossless=True),
        "TIFF": _encoded(rgb, "TIFF"),
        "16-bit TIFF": _encoded(gray16, "TIFF"),
        "CMYK JPEG": _encoded(rgb.convert("CMYK"), "JPEG"),
    }


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_converted_format_and_a_turned_jpeg_answer_as_the_pipeline_stored_them(
    model_server, tiny_folders, framework
) -> None:
    from twinflow.components.image_example_gen.images import ingest

    stripes = Image.open(io.BytesIO(_images(tiny_folders)[2]))  # not symmetric under a quarter turn
    sent = _as_trained(stripes)
    names, raw = list(sent), list(sent.values())
    stored = [ingest(data).data for data in raw]  # what ImageExampleGen writes into the Examples a model learns from
    expected = _in_process(model_server.serving_dir, framework, stored)
    examples = [make_example(data, 0, "stripes", name).SerializeToString() for name, data in sent.items()]
    for signature, values in (("serving_image_bytes", raw), ("serving_default", examples)):
        status, answer = model_server.json(
            f"/v1/models/{framework}:predict", {"signature_name": signature, "instances": _b64(values)}
        )
        assert status == 200, answer
        got = np.array([row["probabilities"] for row in answer["predictions"]])
        for name, row, want in zip(names, got, expected, strict=True):
            np.testing.assert_allclose(row, want, atol=1e-5, err_msg=f"{signature}: {name}")
    sideways = _in_process(model_server.serving_dir, framework, raw[:1])  # TensorFlow's decoder alone
    assert not np.allclose(sideways[0], expected[0], atol=1e-5), "the test image must tell upright from sideways"


def _resident_mb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {line.split(":")[0]: int(line.split()[1]) // 1024 for line in lines if line.startswith(("VmRSS", "VmHWM"))}


# Measured (README, "Serving"): a burst like the one below left the server 475-600 MB above its resident
# memory at start, idle, with glibc's defaults; handing memory back leaves about 120 MB (pools, caches).
BURST_GROWTH_BOUND_MB = 250


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_memory_of_a_burst_of_large_requests_goes_back_once_idle(both_run, tmp_path: Path) -> None:
    config, _ = both_run
    server = _start_server(Path(config.serving_dir), tmp_path / "server.log")  # the default limits
    try:
        y, x = np.mgrid[0:3000, 0:3000]
        smooth = ((np.sin(x / 30) + np.cos(y / 20)) * 60 + 128).astype(np.uint8)  # compresses well: a small body
        large_png = _encoded(Image.fromarray(smooth), "PNG")
        webp = _encoded(Image.fromarray(np.stack([smooth, smooth.T, smooth // 2], -1)).resize((1500, 1500)), "WEBP")
        bodies = [
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([large_png] * 2)}).encode(),
            json.dumps({"signature_name": "serving_image_bytes", "instances": _b64([webp] * 8)}).encode(),
        ]
        time.sleep(3)  # the watcher's first polls
        start = _resident_mb(server.process.pid)
        statuses: list[int] = []

        def client(index: int) -> None:  # bounded: 2 requests each, 8 clients at once, twice
            for turn in range(2):
                framework = FRAMEWORKS[(index + turn) % 2]
                statuses.append(server.call(f"/v1/models/{framework}:predict", raw=bodies[(index // 2 + turn) % 2])[0])

        for _ in range(2):
            clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join(timeout=600)
        assert statuses == [200] * 32, statuses
        after = _resident_mb(server.process.pid)
        time.sleep(3)  # the server hands memory back after a second idle
        deadline = time.monotonic() + 30  # (a busy machine may delay it)
        while (growth := _resident_mb(server.process.pid)["VmRSS"] - start["VmRSS"]) > BURST_GROWTH_BOUND_MB:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"resident MB: start {start}, after the burst {after}, idle growth {growth}")
        assert growth <= BURST_GROWTH_BOUND_MB, (start, after, growth)
    finally:
        _stop_server(server)
