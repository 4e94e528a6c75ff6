"""Request errors with TF Serving's status codes, so both APIs answer a bad request the way TF Serving would."""

from __future__ import annotations

import json
from typing import Any

# TF Serving's http_rest_api_handler maps the status code of a failed call to an HTTP status this way.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "PAYLOAD_TOO_LARGE": 413,  # not a gRPC code: a body or batch over the server's limits
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
    # Not gRPC codes either: the client went before its body was read, so these answers reach no one and
    # only label the metrics (499 is nginx's "client closed request").
    "REQUEST_TIMEOUT": 408,
    "CLIENT_CLOSED": 499,
}


class ServingError(Exception):
    """A request that cannot be answered; ``message`` is what the client reads in ``{"error": ...}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def too_large(message: str) -> ServingError:
    return ServingError("PAYLOAD_TOO_LARGE", message)


def parse_json(body: bytes, what: str) -> Any:
    """A request's JSON; malformed or nested too deeply to parse (``[[[[…`` raises RecursionError) is a 400."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid(f"{what}: {err}") from None
    except RecursionError:
        raise invalid(f"{what}: nested too deeply") from None
