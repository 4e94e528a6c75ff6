"""``twinflow predict``: send image files to a model server and print the top classes.

Speaks TF Serving's REST API (``serving_image_bytes`` signature, ``{"b64": ...}`` instances), so
it works against ``twinflow serve`` and against a stock TF Serving holding the Keras model.
Standard library only: the client must not need the training stack.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twinflow.core.contract import PROBABILITIES_KEY, SERVING_IMAGE_BYTES_SIGNATURE
from twinflow.core.errors import ConfigError, TwinflowError

DEFAULT_URL = "http://127.0.0.1:8501"


class ClientError(TwinflowError):
    """The server could not be reached, or refused the request; the message says which and why."""

    exit_code = 6


@dataclass(frozen=True)
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first


def predict_url(url: str, model: str, version: int | None = None, label: str | None = None) -> str:
    where = f"/versions/{version}" if version is not None else f"/labels/{label}" if label else ""
    return f"{url.rstrip('/')}/v1/models/{model}{where}:predict"


def predict_files(
    images: Sequence[str | Path],
    model: str,
    url: str = DEFAULT_URL,
    top_k: int = 3,
    version: int | None = None,
    label: str | None = None,
    timeout: float = 60,
    token: str | None = None,
) -> list[Prediction]:
    """One request for all ``images``; each image's ``top_k`` classes; ``token`` for a server with --auth-token-file."""
    payload = []
    for image in images:
        try:
            payload.append({"b64": base64.b64encode(Path(image).read_bytes()).decode()})
        except OSError as err:
            raise ClientError(f"{image}: cannot read the image ({err.strerror or err})") from None
    body = json.dumps({"signature_name": SERVING_IMAGE_BYTES_SIGNATURE, "instances": payload}).encode()
    target = predict_url(url, model, version, label)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(target, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        hint = "; give --auth-token-file" if err.code == 401 and token is None else ""
        raise ClientError(f"{target} answered {err.code}: {_error_text(err.read())}{hint}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ClientError(f"no answer from {url} ({reason}); is 'twinflow serve' running there?") from None
    predictions = []
    for image, row in zip(images, answer["predictions"], strict=True):
        names, probabilities = row["class_names"], row[PROBABILITIES_KEY]
        ranked = sorted(zip(names, probabilities, strict=True), key=lambda pair: -pair[1])
        predictions.append(Prediction(str(image), [(n, float(p)) for n, p in ranked[:top_k]]))
    return predictions


def read_token(path: str) -> str:
    """The first token in a token file (the server's format: one per line, ``#`` comments)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ConfigError(f"--auth-token-file {path}: cannot be read ({reason})") from None
    token = next((line.strip() for line in lines if line.strip() and not line.strip().startswith("#")), None)
    if token is None:
        raise ConfigError(f"--auth-token-file {path}: holds no token")
    return token


def _error_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", errors="replace")[:500]


def format_predictions(predictions: Sequence[Prediction]) -> str:
    lines = []
    for prediction in predictions:
        lines.append(prediction.image)
        lines += [f"  {name:<24} {probability:7.2%}" for name, probability in prediction.top]
    return "\n".join(lines)
