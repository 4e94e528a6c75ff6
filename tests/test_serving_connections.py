"""``twinflow serve`` as a network service, over raw sockets on 127.0.0.1: connection deadlines, client
disconnects, bearer tokens, error forms, the access log.

The server is the real command (``python -m twinflow.pipelines.cli serve``) with short deadlines, serving a
small real SavedModel (its class is how light the image is), so these tests need no pipeline run;
``tests/test_model_server.py`` serves the pipeline's own models.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("dark", "light")
KEEP_ALIVE, HEADER, BODY = 1.0, 1.5, 2.0  # the server's deadlines in these tests (seconds)
SLACK = 2.5  # a loaded two-core machine may be this late closing
TOKEN = "first-token-0123456789abcdef"
NEW_TOKEN = "second-token-abcdef0123456789"
PREDICT = "/v1/models/keras:predict"


def write_tiny_model(folder: Path) -> Path:
    """A SavedModel with both serving signatures and twinflow's outputs, and its model card; returns the folder."""
    import tensorflow as tf

    from tests.helpers import make_card
    from twinflow.core.model_card import write_model_card

    class Lightness(tf.Module):
        def _outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            def mean(encoded: tf.Tensor) -> tf.Tensor:
                pixels = tf.io.decode_image(encoded, channels=1, expand_animations=False)
                return tf.reduce_mean(tf.cast(pixels, tf.float32)) / 255.0

            light = tf.map_fn(mean, images, fn_output_signature=tf.float32)
            probabilities = tf.stack([1.0 - light, light], axis=1)
            index = tf.argmax(probabilities, axis=1)
            names = tf.constant(CLASSES)
            return {
                "probabilities": probabilities,
                "class_index": index,
                "class_name": tf.gather(names, index),
                "class_names": tf.tile(names[tf.newaxis], [tf.shape(images)[0], 1]),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            return self._outputs(image_bytes)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
            features = tf.io.parse_example(examples, {"image": tf.io.FixedLenFeature([], tf.string)})
            return self._outputs(features["image"])

    module = Lightness()
    signatures = {"serving_default": module.examples, "serving_image_bytes": module.image_bytes}
    tf.saved_model.save(module, str(folder), signatures=signatures)
    write_model_card(str(folder), make_card(class_names=CLASSES))
    return folder


def png(value: int, size: int = 8) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def predict_body(*images: bytes) -> bytes:
    instances = [{"b64": base64.b64encode(i).decode()} for i in images]
    return json.dumps({"signature_name": "serving_image_bytes", "instances": instances}).encode()


@dataclass
class Server:
    port: int
    log: Path
    token_file: Path
    process: subprocess.Popen

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def error(self, method: str, path: str, body: bytes | None = None, **kwargs: str) -> tuple[int, str]:
        status, _, content = self.request(method, path, body, **kwargs)
        return status, json.loads(content)["error"]

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from twinflow.model_store.publish import publish

    root = tmp_path_factory.mktemp("connections")
    publish(str(write_tiny_model(root / "model")), str(root / "serving" / "keras"), {})
    token_file = root / "tokens"
    token_file.write_text(f"# rotated by hand\n{TOKEN}\n")
    port, log = _free_port(), root / "server.log"
    command = [
        *(sys.executable, "-m", "twinflow.pipelines.cli", "serve", "--serving-dir", str(root / "serving")),
        *("--port", str(port), "--max-body-bytes", "100000", "--auth-token-file", str(token_file)),
        *("--keep-alive-seconds", str(KEEP_ALIVE), "--header-timeout-seconds", str(HEADER)),
        *("--body-timeout-seconds", str(BODY), "--access-log-every", "3"),
    ]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    running = Server(port, log, token_file, process)
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if running.request("GET", "/v2/health/ready", token=None)[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready in 180 s"
        time.sleep(0.3)
    yield running
    process.terminate()
    process.wait(timeout=60)


def _head(method: str = "POST", path: str = PREDICT, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKEN}"]
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _held_until_closed(
    sock: socket.socket, trickle: bytes = b"", limit: float = 10.0, start: float | None = None
) -> tuple[float | None, bytes]:
    """(seconds from ``start`` until the server closed ``sock``, or None if it did not within ``limit``; what it
    sent). With ``trickle``, a byte of it goes out every 0.2 s meanwhile: a slow client's bytes must not move a
    deadline."""
    start = time.monotonic() if start is None else start
    received, sent = b"", 0
    while time.monotonic() - start < limit:
        readable, _, _ = select.select([sock], [], [], 0.2)
        try:
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return time.monotonic() - start, received
                received += chunk
            elif trickle:
                sock.send(trickle[sent % len(trickle) : sent % len(trickle) + 1])
                sent += 1
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start, received
    return None, received


def _connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def test_idle_half_sent_head_and_half_sent_body_connections_are_closed_on_their_deadlines(server: Server) -> None:
    body = predict_body(png(10))
    cases = {  # name → (what is sent at once, what trickles after, the deadline that applies)
        "idle": (b"", b"", KEEP_ALIVE),
        "half a head": (b"POST /v1/models/keras:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: aaaa", HEADER),
        "half a body": (_head(length=len(body)) + body[:20], body[20:], BODY),
        "after a 413": (_head(length=10_000_000) + b"{", b"aaaa", BODY),
    }

    def hold(first: bytes, trickle: bytes) -> tuple[float | None, bytes]:
        start = time.monotonic()  # before connecting: the server's deadline cannot start earlier
        return _held_until_closed(_connect(server.port, first), trickle, start=start)

    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {name: pool.submit(hold, first, trickle) for name, (first, trickle, _) in cases.items()}
        results = {name: future.result() for name, future in futures.items()}
    for name, (seconds, _) in results.items():
        deadline = cases[name][2]
        assert seconds is not None, f"{name}: still open after 10 s"
        assert deadline - 0.1 < seconds < deadline + SLACK, (name, seconds, deadline)
    assert results["idle"][1] == b"", "an idle connection is closed without a word"
    for name in ("half a head", "half a body"):
        status_line, _, rest = results[name][1].partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", (name, results[name][1][:200])
        assert f"the request {name.split()[-1]} was not received within".encode() in rest
    assert results["after a 413"][1].startswith(b"HTTP/1.1 413"), results["after a 413"][1][:200]
    metrics = server.metrics()
    assert 'twinflow_connection_timeouts_total{phase="head"}' in metrics
    assert 'twinflow_connection_timeouts_total{phase="body"}' in metrics
    assert 'code="408"' in metrics  # the half-sent body reached the API and is counted as what it was


def test_keep_alive_and_slow_but_timely_clients_are_served(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answers, sockets = [], []
    for _ in range(3):
        connection.request("POST", PREDICT, predict_body(png(250)), headers)
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read())["predictions"][0]["class_name"]))
        sockets.append(connection.sock)
        time.sleep(KEEP_ALIVE / 2)
    assert answers == [(200, "light")] * 3
    assert sockets[0] is sockets[1] is sockets[2], "one connection, kept alive between requests"
    seconds, _ = _held_until_closed(connection.sock)
    assert seconds is not None and seconds < KEEP_ALIVE + SLACK
    # A client sending its head and body in pieces, each deadline met, is answered.
    body = predict_body(png(5))
    head = _head(length=len(body))
    sock = _connect(server.port)
    for piece in (head[:30], head[30:], body[:40], body[40:]):
        sock.sendall(piece)
        time.sleep(0.4)
    seconds, received = _held_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200") and b'"class_name":"dark"' in received, received[:300]


def test_a_client_leaving_mid_body_is_counted_499_and_logged_without_a_traceback(server: Server) -> None:
    body = predict_body(png(10))
    for _ in range(3):
        sock = _connect(server.port, _head(length=len(body)) + body[:30])
        time.sleep(0.3)
        sock.close()
    counted = 'twinflow_requests_total{api="tf_serving",code="499",model="keras"'
    deadline = time.monotonic() + 10
    while counted not in (metrics := server.metrics()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counted in metrics
    assert 'code="500"' not in metrics
    log = server.log.read_text()
    assert "Traceback" not in log and "ClientDisconnect" not in log and "unexpected error" not in log


def test_deeply_nested_json_is_a_400(server: Server) -> None:
    deep = b"[" * 40_000 + b"]" * 40_000
    assert server.error("POST", PREDICT, deep) == (400, "JSON Parse error: nested too deeply")
    status, message = server.error("POST", "/v2/models/keras/infer", deep)
    assert (status, message) == (400, "the request is not valid JSON: nested too deeply")
    nested = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [[["eA=="]]]}]}
    status, message = server.error("POST", "/v2/models/keras/infer", json.dumps(nested).encode())
    assert status == 400 and "nested deeper than its shape's 1 dimension(s)" in message


@pytest.mark.parametrize(
    ("shape", "data", "message"),
    [
        ([0], [], "an infer request needs at least one image"),
        ([4, 0], [], "an infer request needs at least one image"),
        ([2**32, 2**32], [], "holds more elements than an int64 counts"),  # np.prod wrapped this to 0
        ([2**62, 4, 1], [], "holds more elements than an int64 counts"),
        ([True], ["eA=="], "needs a shape such as [N]"),
    ],
)
def test_v2_empty_and_overflowing_shapes_are_refused(server: Server, shape: list, data: list, message: str) -> None:
    body = {"inputs": [{"name": "image_bytes", "shape": shape, "datatype": "BYTES", "data": data}]}
    status, error = server.error("POST", "/v2/models/keras/infer", json.dumps(body).encode())
    assert status == 400 and message in error, (shape, status, error)


def test_unrouted_paths_and_methods_answer_in_the_apis_error_form(server: Server) -> None:
    assert server.error("GET", "/nowhere") == (404, "Not Found: GET /nowhere")
    assert server.error("GET", "/v2/models/keras/infer") == (405, "Method Not Allowed: GET /v2/models/keras/infer")
    assert server.error("PUT", PREDICT, b"{}") == (405, f"Method Not Allowed: PUT {PREDICT}")


def test_bearer_tokens_rotate_health_stays_open_and_metrics_is_protected(server: Server) -> None:
    image = predict_body(png(200))
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert server.request("GET", path, token=None)[0] == 200
    status, headers, content = server.request("POST", PREDICT, image, token=None)
    assert (status, headers["www-authenticate"]) == (401, 'Bearer realm="twinflow"')
    assert "needs a bearer token" in json.loads(content)["error"]
    status, headers, _ = server.request("GET", "/metrics", token="not-the-token-0123456789")
    assert (status, headers["www-authenticate"]) == (401, 'Bearer realm="twinflow", error="invalid_token"')
    status, headers, _ = server.request("GET", "/v2", token=None, Authorization="Basic dXNlcjpwYXNz")
    assert (status, headers["www-authenticate"]) == (401, 'Bearer realm="twinflow", error="invalid_request"')
    assert server.request("POST", PREDICT, image)[0] == 200

    # Rotation as a Kubernetes Secret does it (a new file swapped in): both tokens for a while, then the new one.
    def swap(text: str) -> None:
        staged = server.token_file.with_suffix(".new")
        staged.write_text(text)
        os.replace(staged, server.token_file)

    swap(f"{TOKEN}\n{NEW_TOKEN}\n")
    assert [server.request("POST", PREDICT, image, token=t)[0] for t in (TOKEN, NEW_TOKEN)] == [200, 200]
    swap(f"{NEW_TOKEN}\n")
    assert [server.request("POST", PREDICT, image, token=t)[0] for t in (TOKEN, NEW_TOKEN)] == [401, 200]
    server.token_file.write_text("")  # emptied in place: closed, not open
    assert server.error("POST", PREDICT, image, token=NEW_TOKEN)[0] == 503
    assert server.request("GET", "/v2/health/ready", token=None)[0] == 200
    server.token_file.write_text(f"{TOKEN}\n")
    assert server.request("POST", PREDICT, image)[0] == 200
    assert 'twinflow_unauthorized_requests_total{code="401"}' in server.metrics()
    log = server.log.read_text()
    assert "holds no token" in log and TOKEN not in log and NEW_TOKEN not in log


def test_predict_sends_the_token(server: Server, tmp_path: Path) -> None:
    image = tmp_path / "light.png"
    image.write_bytes(png(240))
    url = f"http://127.0.0.1:{server.port}"
    command = [sys.executable, "-m", "twinflow.pipelines.cli", "predict", str(image), "--model", "keras", "--url", url]
    without = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert without.returncode == 6 and "answered 401" in without.stderr and "--auth-token-file" in without.stderr
    assert "Traceback" not in without.stderr
    with_token = subprocess.run(
        [*command, "--auth-token-file", str(server.token_file)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert with_token.returncode == 0, with_token.stderr
    assert with_token.stdout.splitlines()[1].split()[0] == "light"


def test_the_access_log_is_sampled(server: Server) -> None:
    for number in range(9):
        assert server.request("GET", f"/v2/health/live?n={number}", token=None)[0] == 200
    time.sleep(0.3)
    logged = [line for line in server.log.read_text().splitlines() if "/v2/health/live?n=" in line]
    assert len(logged) == 3, logged  # --access-log-every 3


def test_the_access_log_is_off_by_default_and_uvicorn_gets_the_deadlines() -> None:
    from twinflow.core.config import ServingConfig
    from twinflow.serving.app import create_app, server_config
    from twinflow.serving.connections import DeadlineProtocol
    from twinflow.serving.repository import ModelRepository

    config = ServingConfig()
    uvicorn_config = server_config(create_app(ModelRepository("/nonexistent"), config, 1000), config)
    assert config.access_log_every == 0 and uvicorn_config.access_log is False
    assert issubclass(uvicorn_config.http, DeadlineProtocol)
    assert uvicorn_config.http.timeouts.keep_alive == config.keep_alive_seconds == uvicorn_config.timeout_keep_alive


def test_a_bad_token_file_stops_serve_at_once_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# no token yet\n")
    short = tmp_path / "short"
    short.write_text("abc\n")
    for path, message in (
        (tmp_path / "missing", "missing: cannot be read"),
        (empty, "holds no token"),
        (short, "line 1: a token needs at least 16 characters"),
    ):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "twinflow.pipelines.cli",
                "serve",
                "--serving-dir",
                str(tmp_path),
                "--auth-token-file",
                path,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "abc" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("host", "authenticated", "warned"),
    [
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("10.1.2.3", False, True),
        ("model-host.internal", False, True),
        ("0.0.0.0", True, False),
        ("127.0.0.1", False, False),
        ("127.0.0.2", False, False),
        ("::1", False, False),
        ("localhost", False, False),
    ],
)
def test_an_open_port_without_authentication_is_warned_about(host: str, authenticated: bool, warned: bool) -> None:
    from twinflow.serving.auth import open_port_warning

    warning = open_port_warning(host, authenticated)
    assert (warning is not None) == warned
    if warning:
        assert f"--host {host}" in warning and "--auth-token-file" in warning


def test_a_port_in_use_stops_serve_at_once_with_one_line(tmp_path: Path) -> None:
    """Exit 2 and one line before any model loads (uvicorn alone exits 3, which means a data gate here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "twinflow.pipelines.cli",
                "serve",
                "--serving-dir",
                str(tmp_path),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"twinflow serve: error: cannot listen on 127.0.0.1:{port}: Address already in use; another server is there, "
        "or pass --port"
    ], result.stderr
