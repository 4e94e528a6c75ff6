"""The Open Inference Protocol (KServe V2 / Triton HTTP), with the binary tensor data extension.

Each model takes one BYTES input, ``image_bytes`` (encoded images; base64 strings in JSON, raw
bytes in the binary extension), and answers ``probabilities`` (FP32 [N, K]) and ``class_name``
(BYTES [N]). V2 clients such as tritonclient send BYTES as binary data by default.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinflow.core.contract import PROBABILITIES_KEY, SERVING_IMAGE_BYTES_SIGNATURE, SIGNATURE_INPUTS
from twinflow.serving.errors import invalid, parse_json
from twinflow.serving.models import Outputs, ServedModel

INPUT_NAME = SIGNATURE_INPUTS[SERVING_IMAGE_BYTES_SIGNATURE]
OUTPUTS = {PROBABILITIES_KEY: "FP32", "class_name": "BYTES"}
HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary extension's header
INT64_MAX = 2**63 - 1  # V2 shapes are int64: a product beyond it would wrap around in a C++ server


def model_metadata(name: str, versions: list[int], model: ServedModel) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": model.platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": PROBABILITIES_KEY, "datatype": "FP32", "shape": [-1, len(model.class_names)]},
            {"name": "class_name", "datatype": "BYTES", "shape": [-1]},
        ],
    }


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: list[bytes]
    binary_outputs: dict[str, bool]  # output name → send as binary data


def _unpack_bytes(blob: bytes, where: str) -> list[bytes]:
    """The binary extension's BYTES layout: each element a 4-byte little-endian length, then the bytes."""
    items, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise invalid(f"{where}: binary BYTES data ends inside an element's length")
        (size,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + size > len(blob):
            raise invalid(f"{where}: binary BYTES element of {size} bytes runs past the data")
        items.append(blob[offset : offset + size])
        offset += size
    return items


def _pack_bytes(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _flatten(data: Any, rank: int) -> list[Any]:
    """``data`` flat or nested as the shape is; nested deeper than ``rank`` lists is refused (no recursion)."""
    level, depth = [data], 0
    while any(isinstance(item, list) for item in level):
        depth += 1
        if depth > rank:
            raise invalid(f"input '{INPUT_NAME}': 'data' is nested deeper than its shape's {rank} dimension(s)")
        level = [x for item in level for x in (item if isinstance(item, list) else [item])]
    return level


def _element_count(shape: Any) -> int:
    """The elements a shape holds: non-negative int64 dimensions whose product fits in int64, and at least one."""
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise invalid(f"input '{INPUT_NAME}' needs a shape such as [N], got {shape!r}")
    count = math.prod(shape)
    if count > INT64_MAX:
        raise invalid(f"input '{INPUT_NAME}': shape {shape} holds more elements than an int64 counts")
    if count == 0:
        raise invalid(f"input '{INPUT_NAME}' has shape {shape}: an infer request needs at least one image")
    return count


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """A JSON infer request, or the binary extension's JSON header followed by the tensors' bytes."""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise invalid(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= length <= len(body):
            raise invalid(f"{HEADER_LENGTH} is {length}, but the body has {len(body)} bytes")
        header, binary = body[:length], body[length:]
    else:
        header, binary = body, b""
    request = parse_json(header, "the request is not valid JSON")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise invalid("an infer request is a JSON object with an 'inputs' list")
    if len(request["inputs"]) != 1:
        raise invalid(f"expected one input, '{INPUT_NAME}', got {len(request['inputs'])}")
    (tensor,) = request["inputs"]
    if not isinstance(tensor, dict):
        raise invalid("each input is a JSON object with name, shape, datatype and data")
    if tensor.get("name") != INPUT_NAME:
        raise invalid(f"unknown input {tensor.get('name')!r}; this model takes '{INPUT_NAME}' (BYTES)")
    if tensor.get("datatype") != "BYTES":
        raise invalid(f"input '{INPUT_NAME}' has datatype BYTES, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    count = _element_count(shape)
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise invalid(f"input '{INPUT_NAME}': binary_data_size {size!r} does not fit the {len(binary)} bytes sent")
        images = _unpack_bytes(binary[:size], f"input '{INPUT_NAME}'")
    else:
        if "data" not in tensor:
            raise invalid(f"input '{INPUT_NAME}' has no 'data' (and no binary_data_size)")
        images = []
        for index, item in enumerate(_flatten(tensor["data"], len(shape))):
            if not isinstance(item, str):
                raise invalid(f"input '{INPUT_NAME}' element {index}: expected a base64 string")
            try:
                images.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                raise invalid(f"input '{INPUT_NAME}' element {index}: not valid base64") from None
    if len(images) != count:
        raise invalid(f"input '{INPUT_NAME}' has shape {shape} ({count} elements) but {len(images)} were sent")
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    wanted = request.get("outputs")
    if wanted is None:
        binary_outputs = dict.fromkeys(OUTPUTS, binary_default)
    else:
        if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
            raise invalid("'outputs' is a list of objects with a name")
        binary_outputs = {}
        for output in wanted:
            if output.get("name") not in OUTPUTS:
                raise invalid(f"unknown output {output.get('name')!r}; outputs: {', '.join(OUTPUTS)}")
            parameters = output.get("parameters") or {}
            binary_outputs[output["name"]] = bool(parameters.get("binary_data", binary_default))
    request_id = request.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, images, binary_outputs)


def infer_response(
    name: str, version: int, request: InferRequest, outputs: Outputs
) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, media type): JSON alone, or the JSON header plus binary tensors."""
    tensors, blobs = [], []
    for output, binary in request.binary_outputs.items():
        values = outputs[output]
        tensor: dict[str, Any] = {"name": output, "datatype": OUTPUTS[output], "shape": list(values.shape)}
        if binary:
            blob = values.astype("<f4").tobytes() if OUTPUTS[output] == "FP32" else _pack_bytes(list(values))
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif OUTPUTS[output] == "FP32":
            tensor["data"] = values.astype(np.float32).reshape(-1).tolist()
        else:
            tensor["data"] = [v.decode("utf-8", errors="replace") for v in values.reshape(-1)]
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": name, "model_version": str(version), "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response).encode()
    if not blobs:
        return header, {}, "application/json"
    return header + b"".join(blobs), {HEADER_LENGTH: str(len(header))}, "application/octet-stream"
