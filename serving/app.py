"""``twinflow serve``: both frameworks' pushed models behind TF Serving's REST API and the Open Inference Protocol.

One port answers ``/v1/...`` (TF Serving) and ``/v2/...`` (KServe V2), plus Prometheus
``/metrics``. Limits are checked before work is done: the body size before it is read in
full, the image count before any image is decoded, each image's pixel count from its header.
A request never crashes the server: anything unexpected is a 500 with its message; a client
that leaves before its body is read is counted as 499, not as the server's error. Every answer,
unrouted paths included, is ``{"error": ...}``. Connections have idle, head and body deadlines
(``serving.connections``) and, with ``--auth-token-file``, need a bearer token (``serving.auth``).
uvicorn stops gracefully on SIGTERM (in-flight requests finish) and the watcher stops with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from twinflow.core.config import ServingConfig
from twinflow.core.errors import ConfigError
from twinflow.serving import tf_serving, v2
from twinflow.serving.auth import EXEMPT_PATHS, BearerAuth, TokenFile, open_port_warning
from twinflow.serving.batching import MicroBatcher
from twinflow.serving.connections import TIMED_OUT, ConnectionTimeouts, deadline_protocol
from twinflow.serving.errors import ServingError, invalid, parse_json, too_large
from twinflow.serving.inputs import PixelLimits, prepare_inputs
from twinflow.serving.memory import Trimmer, map_large_buffers
from twinflow.serving.models import Outputs, ServedModel
from twinflow.serving.repository import ModelRepository

log = logging.getLogger("twinflow.serving")
SERVER_NAME = "twinflow"


class Metrics:
    """Requests, errors and latency per model, version and API, in the app's own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version", "api")
        self.requests = Counter("twinflow_requests", "Requests answered", (*labels, "code"), registry=self.registry)
        self.errors = Counter(
            "twinflow_request_errors", "Requests answered with an error", labels, registry=self.registry
        )
        self.latency = Histogram(
            "twinflow_request_latency_seconds",
            "Time from request to response",
            labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.timeouts = Counter(
            "twinflow_connection_timeouts",
            "Connections closed because a request's head or body missed its deadline",
            ("phase",),
            registry=self.registry,
        )
        self.unauthorized = Counter(
            "twinflow_unauthorized_requests",
            "Requests refused for want of an accepted bearer token",
            ("code",),
            registry=self.registry,
        )

    def observe(self, model: str, version: str, api: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, api, str(status)).inc()
        if status >= 400:
            self.errors.labels(model, version, api).inc()
        self.latency.labels(model, version, api).observe(seconds)


class Admission:
    """At most ``limit`` predictions in flight; the next is refused at once (429) rather than queued."""

    def __init__(self, limit: int):
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self) -> Any:
        with self._lock:
            if self._in_flight >= self.limit:
                raise ServingError(
                    "RESOURCE_EXHAUSTED",
                    f"{self._in_flight} predictions are in flight, the limit (--max-concurrent-requests); retry later",
                )
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1


def _error(err: ServingError) -> JSONResponse:
    return JSONResponse({"error": err.message}, status_code=err.http_status)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``limit`` bytes; a client gone is no server error."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(f"the request body of {declared} bytes is over the limit of {limit} (--max-body-bytes)")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(f"the request body is over the limit of {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
    except ClientDisconnect:  # no one is left to read the answer: counted, not logged as an error
        if request.scope.get(TIMED_OUT):
            raise ServingError("REQUEST_TIMEOUT", "the request body was not received in time") from None
        raise ServingError("CLIENT_CLOSED", "the client closed the connection before sending its body") from None
    return b"".join(chunks)


def create_app(repository: ModelRepository, config: ServingConfig, max_image_pixels: int) -> FastAPI:
    """The ASGI app over ``repository``; the caller starts the repository's watcher (``serve`` does)."""
    metrics = Metrics()
    admission = Admission(config.max_concurrent_requests)

    limits = PixelLimits(max_image_pixels, config.max_request_pixels)
    trimmer = Trimmer()  # memory that large requests used goes back once the server is idle
    batcher = MicroBatcher(config.batch_window_ms / 1000, config.max_instances) if config.batch_window_ms else None
    # Model calls run here, off the event loop: a plain pool is lighter per call than anyio's worker threads.
    executor = ThreadPoolExecutor(max_workers=config.max_concurrent_requests, thread_name_prefix="twinflow-predict")

    async def run_model(model: ServedModel, signature: str, values: list[bytes]) -> Outputs:
        if len(values) > config.max_instances:
            raise too_large(f"{len(values)} instances is over the limit of {config.max_instances} (--max-instances)")
        with admission.slot(), batcher.expecting(model, signature) if batcher else contextlib.nullcontext():
            loop = asyncio.get_running_loop()
            work = functools.partial(_checked_predict, model, signature, values, limits, batcher, trimmer)
            return await loop.run_in_executor(executor, work)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        repository.stop()
        executor.shutdown(wait=True)
        trimmer.stop()

    app = FastAPI(title="twinflow model server", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.repository = repository
    app.state.metrics = metrics
    if config.auth_token_file:

        def refused(status: int) -> None:
            metrics.unauthorized.labels(str(status)).inc()

        app.add_middleware(BearerAuth, tokens=TokenFile(config.auth_token_file), refused=refused, exempt=EXEMPT_PATHS)

    @app.exception_handler(HTTPException)
    async def unrouted(request: Request, err: HTTPException) -> Response:
        """Paths and methods no route takes: the APIs' error form, not FastAPI's ``{"detail"}``."""
        message = f"{err.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    async def timed(
        api: str, handler: Callable[[dict[str, str]], Awaitable[Response]], labels: dict[str, str]
    ) -> Response:
        start = time.perf_counter()
        try:
            response = await handler(labels)
        except ServingError as err:
            response = _error(err)
        except Exception as err:  # never let a request take the server down
            log.exception("unexpected error")
            response = _error(ServingError("INTERNAL", f"{type(err).__name__}: {err}"))
        # A name no model has is not a label value: clients must not be able to grow the metrics without bound.
        model = labels.get("model", "") if labels.get("model") in repository.names() else "_unknown"
        metrics.observe(model, labels.get("version", ""), api, response.status_code, time.perf_counter() - start)
        return response

    # -- TF Serving REST ----------------------------------------------------------------------
    @app.api_route("/v1/{rest:path}", methods=["GET", "POST"])
    async def tf_serving_api(request: Request, rest: str) -> Response:
        async def handle(labels: dict[str, str]) -> Response:
            target = tf_serving.parse_path(request.method, "/v1/" + rest)
            labels["model"] = target.name
            if target.verb == "status":
                return JSONResponse(tf_serving.model_status(repository, target))
            if target.verb == "metadata":
                return JSONResponse(tf_serving.model_metadata(repository, target))
            if target.verb != "predict":
                raise tf_serving.unsupported(target)
            version, model = repository.resolve(target.name, target.version, target.label)
            labels["version"] = str(version)
            body = _json(await read_body(request, config.max_body_bytes))
            signature, values, rows = tf_serving.parse_predict(body, model)
            outputs = await run_model(model, signature, values)
            return _json_response(tf_serving.predict_response(outputs, rows))

        return await timed("tf_serving", handle, {})

    # -- Open Inference Protocol (V2) -----------------------------------------------------------
    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": "1", "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        is_ready = repository.ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    def v2_resolve(name: str, version: str | None) -> tuple[int, ServedModel]:
        if version is not None and not version.isdigit():
            raise invalid(f"a model version is a number, got {version!r}")
        return repository.resolve(name, int(version) if version is not None else None)

    async def v2_metadata(name: str, version: str | None) -> Response:
        async def handle(labels: dict[str, str]) -> Response:
            number, model = v2_resolve(name, version)
            versions = [number] if version is not None else sorted(repository.state(name).versions)
            return JSONResponse(v2.model_metadata(name, versions, model))

        return await timed("v2", handle, {"model": name})

    async def v2_ready(name: str, version: str | None) -> Response:
        async def handle(labels: dict[str, str]) -> Response:
            v2_resolve(name, version)
            return JSONResponse({"name": name, "ready": True})

        return await timed("v2", handle, {"model": name})

    async def v2_infer(request: Request, name: str, version: str | None) -> Response:
        async def handle(labels: dict[str, str]) -> Response:
            number, model = v2_resolve(name, version)
            labels["version"] = str(number)
            body = await read_body(request, config.max_body_bytes)
            parsed = v2.parse_infer(body, request.headers.get(v2.HEADER_LENGTH))
            outputs = await run_model(model, v2.SERVING_IMAGE_BYTES_SIGNATURE, parsed.images)
            content, headers, media_type = v2.infer_response(name, number, parsed, outputs)
            return Response(content, headers=headers, media_type=media_type)

        return await timed("v2", handle, {"model": name})

    @app.get("/v2/models/{name}")
    async def metadata_latest(name: str) -> Response:
        return await v2_metadata(name, None)

    @app.get("/v2/models/{name}/versions/{version}")
    async def metadata_version(name: str, version: str) -> Response:
        return await v2_metadata(name, version)

    @app.get("/v2/models/{name}/ready")
    async def ready_latest(name: str) -> Response:
        return await v2_ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def ready_version(name: str, version: str) -> Response:
        return await v2_ready(name, version)

    @app.post("/v2/models/{name}/infer")
    async def infer_latest(request: Request, name: str) -> Response:
        return await v2_infer(request, name, None)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await v2_infer(request, name, version)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _json_response(content: Any) -> Response:
    """A predict answer in JSON, written by orjson: an eighth of the json module's time for a batch of 32."""
    return Response(orjson.dumps(content), media_type="application/json")


def _json(body: bytes) -> Any:
    return parse_json(body, "JSON Parse error")


def _checked_predict(
    model: ServedModel,
    signature: str,
    values: list[bytes],
    limits: PixelLimits,
    batcher: MicroBatcher | None,
    trimmer: Trimmer,
) -> Outputs:
    """Every image checked and normalised as ingest did first (a bad one is this request's 400 alone), then the
    model, alone or batched."""
    values, pixels = prepare_inputs(signature, values, limits)
    try:
        return batcher.predict(model, signature, values) if batcher else model.predict(signature, values)
    finally:
        trimmer.note(pixels)


class SampledAccessLog(logging.Filter):
    """Passes one access-log line in ``every`` (uvicorn logs each request otherwise: 12 MB in one load test)."""

    def __init__(self, every: int):
        super().__init__()
        self._counter = itertools.count()
        self.every = every

    def filter(self, record: logging.LogRecord) -> bool:
        return next(self._counter) % self.every == 0


def server_config(app: FastAPI, config: ServingConfig) -> Any:
    """uvicorn's configuration: the deadline protocol, and the access log off unless sampled."""
    import uvicorn

    timeouts = ConnectionTimeouts(config.keep_alive_seconds, config.header_timeout_seconds, config.body_timeout_seconds)
    metrics: Metrics = app.state.metrics
    protocol = deadline_protocol(timeouts, lambda phase: metrics.timeouts.labels(phase).inc())
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=protocol,
        log_level="info",
        access_log=config.access_log_every > 0,
        timeout_keep_alive=config.keep_alive_seconds,  # type: ignore[arg-type]  (its timer takes any number)
        timeout_graceful_shutdown=30,
    )


def serve(serving_dir: str, config: ServingConfig, max_image_pixels: int) -> int:
    """Load what the folder holds, then answer until SIGTERM or Ctrl-C."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    map_large_buffers()
    repository = ModelRepository(serving_dir)
    app = create_app(repository, config, max_image_pixels)  # a bad token file stops here, before any model loads
    warning = open_port_warning(config.host, authenticated=bool(config.auth_token_file))
    if warning:
        log.warning(warning)
    repository.start(config.poll_seconds)
    if not repository.names():
        log.warning("no complete version under %s yet; serving as soon as one is pushed", serving_dir)
    print(
        f"twinflow serve: {', '.join(repository.names()) or 'no models yet'} from {serving_dir} on "
        f"http://{config.host}:{config.port} (TF Serving REST /v1, Open Inference Protocol /v2)",
        flush=True,
    )
    server = uvicorn.Server(server_config(app, config))
    if config.access_log_every > 1:
        logging.getLogger("uvicorn.access").addFilter(SampledAccessLog(config.access_log_every))
    server.run()
    repository.stop()
    if not server.started:  # lost the port between the check and the bind
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: another process took the port")
    return 0
