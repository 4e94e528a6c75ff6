"""The wire formats without a server: TF Serving's URL grammar and predict JSON, V2's binary extension, input checks,
version labels. The same code answers real sockets in tests/test_model_server.py."""

from __future__ import annotations

import base64
import io
import json
import struct
import time

import numpy as np
import pytest
from PIL import Image

from twinflow.model_store.layout import read_labels, served_version, write_labels
from twinflow.serving import tf_serving, v2
from twinflow.serving.errors import ServingError
from twinflow.serving.inputs import PixelLimits, image_header, prepare_inputs
from twinflow.serving.models import ServedModel, _outputs_info, _signature_def


class _Signatures(ServedModel):
    """Only what parsing reads: the signature names."""

    def __init__(self) -> None:
        outputs = _outputs_info(3)
        self.signature_defs = {
            "serving_default": _signature_def("examples", outputs),
            "serving_image_bytes": _signature_def("image_bytes", outputs),
        }


def _png(size: tuple[int, int] = (8, 8), kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, kind)
    return buffer.getvalue()


def _error(call, *args) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/models/keras", ("keras", None, None, "status")),
        ("GET", "/v1/models/keras/versions/12", ("keras", 12, None, "status")),
        ("GET", "/v1/models/keras/labels/canary/metadata", ("keras", None, "canary", "metadata")),
        ("POST", "/v1/models/lightning:predict", ("lightning", None, None, "predict")),
        ("POST", "/v1/models/lightning/versions/3:classify", ("lightning", 3, None, "classify")),
    ],
)
def test_tf_serving_urls(method: str, path: str, expected: tuple) -> None:
    target = tf_serving.parse_path(method, path)
    assert (target.name, target.version, target.label, target.verb) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models/keras:predict"), ("POST", "/v1/models/keras"), ("POST", "/v1/models/k/versions/x:predict")],
)
def test_malformed_urls_are_tf_servings_400(method: str, path: str) -> None:
    error = _error(tf_serving.parse_path, method, path)
    assert (error.http_status, error.message) == (400, f"Malformed request: {method} {path}")


def test_row_and_columnar_predict_bodies() -> None:
    model, png = _Signatures(), _png()
    b64 = {"b64": base64.b64encode(png).decode()}
    for body, rows in (
        ({"signature_name": "serving_image_bytes", "instances": [b64, {"image_bytes": b64}]}, True),
        ({"signature_name": "serving_image_bytes", "inputs": {"image_bytes": [b64, b64]}}, False),
        ({"signature_name": "serving_image_bytes", "inputs": [b64, b64]}, False),
    ):
        signature, values, is_rows = tf_serving.parse_predict(body, model)
        assert (signature, values, is_rows) == ("serving_image_bytes", [png, png], rows)
    signature, values, _ = tf_serving.parse_predict({"instances": ["text"]}, model)
    assert (signature, values) == ("serving_default", [b"text"])  # plain strings are UTF-8 bytes, as in TF Serving


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "Expecting a JSON object"),
        ({"instances": []}, "non-empty"),
        ({"instances": [{"examples": 1, "x": 2}]}, "got keys ['examples', 'x']"),
        ({"instances": [{"b64": 5}]}, "'b64' must hold a string"),
        ({"instances": [3]}, "got int"),
        ({"inputs": {"image_bytes": []}}, "expected the input 'examples'"),
    ],
)
def test_predict_body_mistakes(body: object, message: str) -> None:
    error = _error(tf_serving.parse_predict, body, _Signatures())
    assert error.http_status == 400 and message in error.message


def test_predict_responses_follow_make_json_from_tensors() -> None:
    outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32), "class_name": np.array([b"b"], object)}
    assert tf_serving.predict_response(outputs, rows=True) == {
        "predictions": [{"probabilities": [0.25, 0.75], "class_name": "b"}]
    }
    assert tf_serving.predict_response(outputs, rows=False) == {
        "outputs": {"probabilities": [[0.25, 0.75]], "class_name": ["b"]}
    }
    single = {"probabilities": np.array([[0.5, 0.5]], np.float32)}
    assert tf_serving.predict_response(single, rows=True) == {"predictions": [[0.5, 0.5]]}  # one output: no name
    assert tf_serving.predict_response({"raw_bytes": np.array([b"\xff"], object)}, rows=True) == {
        "predictions": [{"b64": "/w=="}]  # outputs named *_bytes come back base64-wrapped
    }


def _binary_request(images: list[bytes], outputs: list[dict] | None = None) -> tuple[bytes, str]:
    blob = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = {
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [len(images)],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    text = json.dumps(header).encode()
    return text + blob, str(len(text))


def test_v2_binary_extension_round_trip() -> None:
    images = [_png(), _png((4, 4))]
    body, length = _binary_request(images, [{"name": "probabilities", "parameters": {"binary_data": True}}])
    request = v2.parse_infer(body, length)
    assert request.images == images and request.binary_outputs == {"probabilities": True}
    probabilities = np.array([[0.1, 0.9], [0.6, 0.4]], np.float32)
    content, headers, media = v2.infer_response("keras", 7, request, {"probabilities": probabilities})
    size = int(headers[v2.HEADER_LENGTH])
    header = json.loads(content[:size])
    assert media == "application/octet-stream" and header["model_version"] == "7"
    (tensor,) = header["outputs"]
    assert tensor["parameters"]["binary_data_size"] == probabilities.nbytes
    np.testing.assert_array_equal(np.frombuffer(content[size:], "<f4").reshape(2, 2), probabilities)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b, n: (b, "x"), "must be an integer"),
        (lambda b, n: (b, str(len(b) + 1)), "but the body has"),
        (lambda b, n: (b[:-3], n), "binary_data_size 73 does not fit the 70 bytes sent"),
    ],
)
def test_v2_binary_mistakes(mutate, message: str) -> None:
    body, length = _binary_request([_png()])
    error = _error(v2.parse_infer, *mutate(body, length))
    assert error.http_status == 400 and message in error.message


def test_v2_binary_element_longer_than_its_data() -> None:
    blob = struct.pack("<I", 100) + b"abc"
    header = json.dumps(
        {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}]}
    ).encode()
    error = _error(v2.parse_infer, header + blob, str(len(header)))
    assert "binary BYTES element of 100 bytes runs past the data" in error.message


def test_image_checks_refuse_before_decoding() -> None:
    assert image_header(_png((10, 10)), 0, 100).pixels == 100
    assert "100x100 = 10000 pixels is over the limit of 9999" in _error(image_header, _png((100, 100)), 0, 9999).message
    assert image_header(_png(kind="TIFF"), 2, 100).format == "TIFF"  # served as ingest reads it: test_serving_inputs
    assert "instance 1: not a decodable image" in _error(image_header, b"\x89PNG junk", 1, 100).message
    limits = PixelLimits(100, 100)
    assert "not a serialized tf.Example" in _error(prepare_inputs, "serving_default", [b"\xff\xff"], limits).message


def test_labels_pick_the_served_version_and_reject_bad_files(tmp_path) -> None:
    root = tmp_path / "keras"
    for number in (1, 2, 3):
        (root / str(number)).mkdir(parents=True)
        (root / str(number) / "_COMPLETE.json").write_text('{"files": []}')
    assert served_version(str(root)).number == 3  # no labels: the newest
    write_labels(str(root), {"stable": 2, "canary": 3})
    assert read_labels(str(root)) == {"canary": 3, "stable": 2}
    assert served_version(str(root)).number == 2
    (root / "_labels.json").write_text('{"stable": "2"}')
    with pytest.raises(ValueError, match=r"_labels\.json: expected an object of label → version number"):
        read_labels(str(root))


class _Echo(ServedModel):
    """A model whose answer is its input's length, so each caller can see it got its own slice back."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, signature: str, values: list[bytes]):
        self.batches.append(len(values))
        if b"poison" in values:
            raise ValueError("poisoned batch")
        return {"probabilities": np.array([[len(v)] for v in values], np.float32)}


def test_micro_batching_joins_concurrent_requests_and_keeps_answers_apart() -> None:
    import threading

    from twinflow.serving.batching import MicroBatcher

    model, batcher = _Echo(), MicroBatcher(window_seconds=0.2, max_batch=64)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = batcher.predict(model, "serving_image_bytes", [b"x" * i] if i != 3 else [b"poison"])
        except ValueError as err:
            results[i] = err

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert isinstance(results[3], ValueError)  # the bad request alone fails
    for i in (1, 2, 4, 5, 6, 7, 8):
        assert results[i]["probabilities"].tolist() == [[float(i)]]
    assert max(model.batches) > 1, model.batches  # joined (then, with the poisoned one, re-run alone)


def _infer_body(shape: object, data: object) -> bytes:
    return json.dumps({"inputs": [{"name": "image_bytes", "shape": shape, "datatype": "BYTES", "data": data}]}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_infer_body([0], []), "shape [0]: an infer request needs at least one image"),
        (_infer_body([3, 0], []), "an infer request needs at least one image"),
        (_infer_body([2**32, 2**32], []), "holds more elements than an int64 counts"),  # np.prod wrapped it to 0
        (_infer_body([2**63], []), "holds more elements than an int64 counts"),
        (_infer_body([False], []), "needs a shape such as [N]"),
        (_infer_body([1], [["QQ=="]]), "nested deeper than its shape's 1 dimension(s)"),
        (b"[" * 5000 + b"]" * 5000, "the request is not valid JSON: nested too deeply"),
    ],
    ids=["empty", "empty-2d", "overflow", "int64-max", "bool", "nested", "deep-json"],
)
def test_v2_refuses_empty_overflowing_and_too_deep_requests(body: bytes, message: str) -> None:
    error = _error(v2.parse_infer, body, None)
    assert error.http_status == 400 and message in error.message


def test_v2_data_nested_as_its_shape_is_taken() -> None:
    encoded = base64.b64encode(b"x").decode()
    request = v2.parse_infer(_infer_body([2, 1], [[encoded], [encoded]]), None)
    assert request.images == [b"x", b"x"]


def test_an_empty_binary_batch_is_refused_too() -> None:
    header = json.dumps(
        {"inputs": [{"name": "image_bytes", "shape": [0], "datatype": "BYTES", "parameters": {"binary_data_size": 0}}]}
    ).encode()
    assert "at least one image" in _error(v2.parse_infer, header, str(len(header))).message


def test_json_nested_too_deeply_is_a_400_not_a_recursion_error() -> None:
    from twinflow.serving.errors import parse_json

    error = _error(parse_json, b'{"a":' * 3000 + b"1" + b"}" * 3000, "JSON Parse error")
    assert (error.http_status, error.message) == (400, "JSON Parse error: nested too deeply")
    assert parse_json(b'{"a": [1]}', "JSON Parse error") == {"a": [1]}


class _Stub(_Signatures):
    def warm_up(self) -> None:
        pass


def test_keeping_the_served_version_is_warned_once_while_the_broken_one_stays(tmp_path, caplog) -> None:
    from twinflow.serving.repository import ModelRepository

    root = tmp_path / "keras"

    def version(number: int) -> None:
        (root / str(number)).mkdir(parents=True)
        (root / str(number) / "_COMPLETE.json").write_text('{"files": []}')

    def loader(path: str) -> ServedModel:
        if path.endswith(("/2", "/3")):
            raise ValueError("broken on purpose")
        return _Stub()

    version(1)
    repository = ModelRepository(str(tmp_path), loader=loader)
    repository.poll()
    version(2)
    with caplog.at_level("WARNING", logger="twinflow.serving"):
        for _ in range(5):
            repository.poll()
        version(3)  # another broken push: a new situation, warned once more
        for _ in range(5):
            repository.poll()
    kept = [r.getMessage() for r in caplog.records if "keeping version(s)" in r.getMessage()]
    assert kept == ["keras: keeping version(s) [1] instead of [2]", "keras: keeping version(s) [1] instead of [3]"]
    assert sorted(repository.state("keras").versions) == [1]


def test_micro_batching_waits_only_for_expected_requests() -> None:
    """A batch runs once every request expected for its model and signature has joined: a lone one never waits."""
    import threading

    from twinflow.serving.batching import MicroBatcher

    model, other = _Echo(), _Echo()
    batcher = MicroBatcher(window_seconds=60, max_batch=64)

    def request(values: list[bytes], expected: list[threading.Event] | None = None) -> threading.Thread:
        def run() -> None:
            with batcher.expecting(model, "serving_image_bytes"):
                if expected:
                    expected[0].set()
                    expected[1].wait(20)  # still checking its images when the other request reaches the batcher
                batcher.predict(model, "serving_image_bytes", values)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with batcher.expecting(other, "serving_image_bytes"):  # another model's request is no reason to wait
        alone = request([b"x"])
        alone.join(timeout=20)  # a 60 s window: finishing at all means it did not wait for it
    assert not alone.is_alive() and model.batches == [1]

    admitted, checked = threading.Event(), threading.Event()
    late = request([b"yy", b"y"], expected=[admitted, checked])
    admitted.wait(20)
    early = request([b"z"])
    time.sleep(0.5)  # the early request waits in the batcher for the expected one
    checked.set()
    for thread in (early, late):
        thread.join(timeout=20)
    assert not early.is_alive() and not late.is_alive() and model.batches == [1, 3]  # joined, then run at once
