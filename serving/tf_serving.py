"""TF Serving's REST API, answered as TF Serving answers it (``g3doc/api_rest.md``, ``http_rest_api_handler``).

Model status is proto JSON of ``GetModelStatusResponse``; metadata wraps a ``SignatureDefMap``
without ``@type``; predict takes the row (``instances``) or columnar (``inputs``) format with
``{"b64": ...}`` binary values and answers ``predictions`` or ``outputs``, as TF Serving's
``MakeJsonFromTensors`` builds them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from twinflow.core.contract import SERVING_EXAMPLES_SIGNATURE, SIGNATURE_INPUTS
from twinflow.serving.errors import ServingError, invalid
from twinflow.serving.models import Outputs, ServedModel
from twinflow.serving.repository import ModelRepository

# TF Serving's own URL grammar (http_rest_api_handler.cc).
_MODEL = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
GET_PATTERN = re.compile(_MODEL + r"(?P<metadata>/metadata)?")
POST_PATTERN = re.compile(_MODEL + r":(?P<verb>classify|regress|predict)")


@dataclass(frozen=True)
class Target:
    name: str
    version: int | None
    label: str | None
    verb: str  # status, metadata, predict, classify, regress


def parse_path(method: str, path: str) -> Target:
    """The model, version or label, and what is asked; anything else is TF Serving's 'Malformed request'."""
    pattern = GET_PATTERN if method == "GET" else POST_PATTERN if method == "POST" else None
    match = pattern.fullmatch(path) if pattern else None
    if match is None:
        raise invalid(f"Malformed request: {method} {path}")
    version = int(match["version"]) if match["version"] else None
    verb = ("metadata" if match["metadata"] else "status") if method == "GET" else match["verb"]
    return Target(match["name"], version, match["label"], verb)


def model_status(repository: ModelRepository, target: Target) -> dict[str, Any]:
    """``GET /v1/models/{name}[/versions/{v}]``: AVAILABLE for each served version, END for unloadable ones."""
    state = repository.state(target.name)
    failed = repository.failures(target.name)
    if target.label is not None or target.version is not None:
        version, _ = repository.resolve(target.name, target.version, target.label)
        numbers = [version]
    else:
        numbers = sorted(set(state.versions) | set(failed))
        if not state.versions:
            repository.resolve(target.name)  # raises TF Serving's NOT_FOUND
    response = get_model_status_pb2.GetModelStatusResponse()
    for number in numbers:
        status = response.model_version_status.add(version=number)
        if number in state.versions:
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.error_code = 0
        else:
            status.state = get_model_status_pb2.ModelVersionStatus.END
            status.status.error_code = 2  # UNKNOWN, as TF Serving reports a failed load
            status.status.error_message = failed[number]
    return json_format.MessageToDict(response, including_default_value_fields=True, preserving_proto_field_name=True)


def model_metadata(repository: ModelRepository, target: Target) -> dict[str, Any]:
    """``GET …/metadata``: the model spec and every signature, the Any unpacked as TF Serving prints it."""
    version, model = repository.resolve(target.name, target.version, target.label)
    spec = model_pb2.ModelSpec(name=target.name)
    spec.version.value = version
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in model.signature_defs.items():
        signatures.signature_def[name].CopyFrom(signature)
    options = {"including_default_value_fields": True, "preserving_proto_field_name": True}
    return {
        "model_spec": json_format.MessageToDict(spec, **options),
        "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)},
    }


def _binary(value: Any, where: str) -> bytes:
    """A string input value: ``{"b64": ...}`` or a plain (UTF-8) string, as TF Serving takes them."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        encoded = value["b64"]
        if not isinstance(encoded, str):
            raise invalid(f"{where}: 'b64' must hold a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"{where}: Unable to base64 decode") from None
    if isinstance(value, str):
        return value.encode()
    raise invalid(f'{where}: expected a string or {{"b64": "..."}} for a DT_STRING input, got {type(value).__name__}')


def parse_predict(body: Any, model: ServedModel) -> tuple[str, list[bytes], bool]:
    """(signature, input values, row format?) from a predict body, with TF Serving's messages for its mistakes."""
    if not isinstance(body, dict):
        raise invalid("Expecting a JSON object as the request body")
    signature = body.get("signature_name", SERVING_EXAMPLES_SIGNATURE)
    if not isinstance(signature, str):
        raise invalid("'signature_name' must be a string")
    if signature not in model.signature_defs or signature not in SIGNATURE_INPUTS:
        raise invalid(f'Serving signature name: "{signature}" not found in signature def')
    input_name = SIGNATURE_INPUTS[signature]
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        if has_rows:
            raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exclusively")
        raise invalid("Missing 'inputs' or 'instances' key")
    if has_rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON list")
        values = []
        for index, instance in enumerate(instances):
            if isinstance(instance, dict) and set(instance) != {"b64"}:
                if set(instance) != {input_name}:
                    raise invalid(
                        f"instance {index}: expected the input '{input_name}' of signature {signature}, "
                        f"got keys {sorted(instance)}"
                    )
                instance = instance[input_name]
            values.append(_binary(instance, f"instance {index}"))
        return signature, values, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        if set(inputs) != {input_name}:
            raise invalid(f"expected the input '{input_name}' of signature {signature}, got keys {sorted(inputs)}")
        inputs = inputs[input_name]
    if not isinstance(inputs, list) or not inputs:
        raise invalid(f"'inputs' must hold a non-empty list of values for '{input_name}'")
    return signature, [_binary(value, f"input {index}") for index, value in enumerate(inputs)], False


def _json_value(name: str, value: Any) -> Any:
    """One output value as TF Serving prints it: strings as text (b64 when the output name ends in _bytes)."""
    if isinstance(value, np.ndarray):
        if value.dtype != object:
            return value.tolist()  # numbers: what .item() gives each, without a Python call per value
        return [_json_value(name, item) for item in value]
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", errors="replace")
    return value.item() if isinstance(value, np.generic) else value


def predict_response(outputs: Outputs, rows: bool) -> dict[str, Any]:
    """``predictions`` (row) or ``outputs`` (columnar); one output's name is left out, as TF Serving does."""
    if rows:
        count = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            ((name, values),) = outputs.items()
            return {"predictions": [_json_value(name, values[i]) for i in range(count)]}
        return {"predictions": [{name: _json_value(name, v[i]) for name, v in outputs.items()} for i in range(count)]}
    if len(outputs) == 1:
        ((name, values),) = outputs.items()
        return {"outputs": _json_value(name, values)}
    return {"outputs": {name: _json_value(name, values) for name, values in outputs.items()}}


def unsupported(target: Target) -> ServingError:
    return ServingError(
        "UNIMPLEMENTED", f"{target.verb} is not served here: the models' signatures are predict signatures"
    )
