"""A local stand-in for the Kubeflow Pipelines v2beta1 REST API, enough for kfp.Client 2.13's submit paths.

It records every request and answers as the KFP API server does (JSON bodies, snake_case
fields), so tests can assert what a real endpoint would have received.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def upload(self) -> bytes:
        """The ``uploadfile`` part of a multipart upload."""
        head = f"Content-Type: {self.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=email_policy).parsebytes(head + self.body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "uploadfile":
                return part.get_payload(decode=True)
        raise AssertionError("no uploadfile part in the upload request")


@dataclass
class FakeKfp:
    """Pipelines, versions and experiments in memory; ``refuse`` maps a path prefix to (status, message)."""

    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, str] = field(default_factory=dict)  # name -> id
    versions: dict[str, list[str]] = field(default_factory=dict)  # pipeline id -> version ids
    experiments: dict[str, str] = field(default_factory=dict)
    version_names: set[str] = field(default_factory=set)  # KFP refuses a version name twice
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)

    def find(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == API + path]

    def answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        for prefix, (status, message) in self.refuse.items():
            if request.path.startswith(API + prefix):
                return status, {"error": message, "code": 7, "message": message}
        route = (request.method, request.path.removeprefix(API))
        if route == ("GET", "/healthz"):
            return 200, {"multi_user": False}
        if route == ("GET", "/pipelines"):
            name = json.loads(request.query["filter"][0])["predicates"][0]["stringValue"]
            found = [{"pipeline_id": self.pipelines[name], "display_name": name}] if name in self.pipelines else []
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if route == ("POST", "/pipelines/upload"):
            name = request.query["name"][0]
            pipeline_id = self.pipelines[name] = f"pipeline-{len(self.pipelines) + 1}"
            self.versions[pipeline_id] = [f"{pipeline_id}-version-1"]
            return 200, {"pipeline_id": pipeline_id, "display_name": name}
        if route == ("POST", "/pipelines/upload_version"):
            pipeline_id, name = request.query["pipelineid"][0], request.query["name"][0]
            if name in self.version_names:
                return 409, {"error": f"version {name} already exists", "code": 6, "message": "already exists"}
            self.version_names.add(name)
            self.versions[pipeline_id].append(f"{pipeline_id}-version-{len(self.versions[pipeline_id]) + 1}")
            return 200, {"pipeline_id": pipeline_id, "pipeline_version_id": self.versions[pipeline_id][-1]}
        if (
            request.method == "GET"
            and request.path.startswith(f"{API}/pipelines/")
            and request.path.endswith("/versions")
        ):
            pipeline_id = request.path.split("/")[-2]
            versions = [
                {"pipeline_id": pipeline_id, "pipeline_version_id": v} for v in reversed(self.versions[pipeline_id])
            ]
            return 200, {"pipeline_versions": versions, "total_size": len(versions)}
        if route == ("GET", "/experiments"):
            name = json.loads(request.query["filter"][0])["predicates"][0]["stringValue"]
            found = (
                [{"experiment_id": self.experiments[name], "display_name": name}] if name in self.experiments else []
            )
            return 200, {"experiments": found} if found else {}
        if route == ("POST", "/experiments"):
            name = request.json()["display_name"]
            self.experiments[name] = f"experiment-{len(self.experiments) + 1}"
            return 200, {"experiment_id": self.experiments[name], "display_name": name}
        if route == ("POST", "/runs"):
            return 200, {**request.json(), "run_id": "run-1", "state": "PENDING"}
        if route == ("POST", "/recurringruns"):
            return 200, {**request.json(), "recurring_run_id": "recurring-1", "status": "ENABLED"}
        return 404, {"error": f"no route {route}", "code": 5, "message": f"no route {route}"}


class Server:
    """FakeKfp behind http.server on 127.0.0.1 (ephemeral port), in a daemon thread."""

    def __init__(self, fake: FakeKfp) -> None:
        self.fake = fake

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k.lower(): v for k, v in self.headers.items()}  # names are case-insensitive
                request = Recorded(self.command, url.path, parse_qs(url.query), headers, self.rfile.read(length))
                fake.requests.append(request)
                status, body = fake.answer(request)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
