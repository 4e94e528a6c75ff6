"""Upload a compiled spec to a Kubeflow Pipelines endpoint, start a run or a recurring run.

Uses ``kfp.Client`` (the KFP v2 REST API). Every failure becomes a :class:`KubeflowError`
naming the host, the request and, when the server answered, its status code and message.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from twinflow.core.errors import ConfigError, TwinflowError

HEALTHZ_PATH = "/apis/v2beta1/healthz"
HOST_ENV = ("KFP_HOST", "KF_PIPELINES_ENDPOINT")
NAMESPACE_ENV = "KFP_NAMESPACE"
TOKEN_ENV = "KFP_TOKEN"


class KubeflowError(TwinflowError, RuntimeError):
    """The endpoint is unreachable or refused a request; the message says which host and why."""


@dataclass(frozen=True)
class Endpoint:
    """Where Kubeflow Pipelines listens and how to authenticate (bearer token) there."""

    host: str
    namespace: str | None = None
    token: str | None = None
    timeout_s: float = 30.0

    @classmethod
    def resolve(
        cls, host: str | None, namespace: str | None = None, token: str | None = None, token_file: Path | None = None
    ) -> Endpoint:
        """Flags first, then the environment (KFP_HOST / KF_PIPELINES_ENDPOINT, KFP_NAMESPACE, KFP_TOKEN)."""
        host = host or next((os.environ[name] for name in HOST_ENV if os.environ.get(name)), None)
        if not host:
            raise KubeflowError(f"no Kubeflow Pipelines endpoint: pass --host or set {' or '.join(HOST_ENV)}")
        if not host.startswith(("http://", "https://")):
            raise KubeflowError(f"endpoint {host!r} must start with http:// or https://")
        if token_file is not None:
            token = Path(token_file).read_text().strip()
        return cls(
            host=host.rstrip("/"),
            namespace=namespace or os.environ.get(NAMESPACE_ENV) or None,
            token=token or os.environ.get(TOKEN_ENV) or None,
        )


@dataclass(frozen=True)
class Submitted:
    """What the server created: ids to find the pipeline version and the (recurring) run in the UI."""

    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: str
    url: str


def check_reachable(endpoint: Endpoint) -> None:
    """GET the health endpoint first: a wrong host or token fails here, fast and plainly."""
    request = urllib.request.Request(endpoint.host + HEALTHZ_PATH, headers=_auth_headers(endpoint))
    try:
        with urllib.request.urlopen(request, timeout=endpoint.timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as err:
        raise _refused(endpoint, f"GET {HEALTHZ_PATH}", err.code, err.reason, err.read()) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise KubeflowError(
            f"cannot reach Kubeflow Pipelines at {endpoint.host}: {reason}. Check --host / KFP_HOST "
            "(e.g. http://localhost:8080 after 'kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80')"
        ) from None


def connect(endpoint: Endpoint) -> Any:
    """A ``kfp.Client`` for the endpoint, after checking that it answers."""
    check_reachable(endpoint)
    import kfp

    with warnings.catch_warnings(), _api_errors(endpoint, "connect"):
        warnings.simplefilter("ignore")
        return kfp.Client(host=endpoint.host, namespace=endpoint.namespace or "kubeflow", existing_token=endpoint.token)


def submit(
    endpoint: Endpoint,
    spec_path: Path,
    params: Mapping[str, Any],
    experiment: str,
    run_name: str | None = None,
    pipeline_root: str | None = None,
    enable_caching: bool | None = None,
) -> Submitted:
    """Upload the spec as a new pipeline version and start one run of it."""
    client = connect(endpoint)
    pipeline_id, version_id = upload(client, endpoint, spec_path, enable_caching)
    experiment_id = _experiment_id(client, endpoint, experiment)
    name = run_name or f"{_pipeline_name(spec_path)}-{time.strftime('%Y%m%d-%H%M%S')}"
    with _api_errors(endpoint, "create the run"):
        run = client.run_pipeline(
            experiment_id=experiment_id,
            job_name=name,
            params=dict(params),
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=pipeline_root,
        )
    return Submitted(pipeline_id, version_id, experiment_id, run.run_id, f"{endpoint.host}/#/runs/details/{run.run_id}")


def schedule(
    endpoint: Endpoint,
    spec_path: Path,
    params: Mapping[str, Any],
    experiment: str,
    cron: str,
    name: str | None = None,
    pipeline_root: str | None = None,
    enable_caching: bool | None = False,
) -> Submitted:
    """A recurring run: one run at a time, and no backfill of ticks missed while paused."""
    cron = kfp_cron(cron)
    client = connect(endpoint)
    pipeline_id, version_id = upload(client, endpoint, spec_path, enable_caching)
    experiment_id = _experiment_id(client, endpoint, experiment)
    with _api_errors(endpoint, "create the recurring run"):
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name or f"{_pipeline_name(spec_path)}-retrain",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=dict(params),
            pipeline_id=pipeline_id,
            version_id=version_id,
            pipeline_root=pipeline_root,
        )
    run_id = job.recurring_run_id
    return Submitted(pipeline_id, version_id, experiment_id, run_id, f"{endpoint.host}/#/recurringrun/details/{run_id}")


def upload(client: Any, endpoint: Endpoint, spec_path: Path, enable_caching: bool | None = None) -> tuple[str, str]:
    """(pipeline id, version id): a new pipeline, or a new version of the one with the spec's name."""
    name = _pipeline_name(spec_path)
    with _spec_to_upload(spec_path, enable_caching) as path, _api_errors(endpoint, f"upload pipeline {name!r}"):
        existing = _find_pipeline(client, name, endpoint.namespace)
        if existing is None:
            pipeline = client.upload_pipeline(str(path), pipeline_name=name, namespace=endpoint.namespace)
            versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1, sort_by="created_at desc")
            if not versions.pipeline_versions:
                raise KubeflowError(f"{endpoint.host} created pipeline {name!r} but listed no version of it")
            return pipeline.pipeline_id, versions.pipeline_versions[0].pipeline_version_id
        version = client.upload_pipeline_version(
            str(path),
            pipeline_version_name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
            pipeline_id=existing,
        )
        return existing, version.pipeline_version_id


def kfp_cron(expression: str) -> str:
    """KFP's scheduler reads 6 fields (seconds first); a usual 5-field cron gets ``0`` seconds."""
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise ConfigError(
        f"cron expression {expression!r} must have 5 fields (min hour day month weekday) or 6 (sec first)"
    )


def _find_pipeline(client: Any, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline called ``name`` (in ``namespace`` on multi-user deployments), if any."""
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    found = client.list_pipelines(filter=json.dumps({"predicates": [predicate]}), namespace=namespace).pipelines or []
    return found[0].pipeline_id if found else None


def _experiment_id(client: Any, endpoint: Endpoint, name: str) -> str:
    with _api_errors(endpoint, f"find or create experiment {name!r}"):
        return client.create_experiment(name, namespace=endpoint.namespace).experiment_id


def _pipeline_name(spec_path: Path) -> str:
    from twinflow.pipelines.kubeflow.specfile import read_spec

    return read_spec(spec_path)[0]["pipelineInfo"]["name"]


@contextlib.contextmanager
def _spec_to_upload(spec_path: Path, enable_caching: bool | None) -> Iterator[Path]:
    """The spec itself, or a copy with every task's caching switched (KFP applies per-run caching
    overrides only to inline specs, not to uploaded versions)."""
    if enable_caching is None:
        yield Path(spec_path)
        return
    documents = [d for d in yaml.safe_load_all(Path(spec_path).read_text()) if d]
    for task in documents[0]["root"]["dag"]["tasks"].values():
        task["cachingOptions"] = {"enableCache": enable_caching}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(spec_path).name
        path.write_text(yaml.safe_dump_all(documents, sort_keys=True))
        yield path


@contextlib.contextmanager
def _api_errors(endpoint: Endpoint, action: str) -> Iterator[None]:
    """Turn kfp_server_api and urllib3 failures into a KubeflowError naming host, status and message."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as err:
        raise _refused(endpoint, action, err.status, err.reason, err.body) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise KubeflowError(f"lost Kubeflow Pipelines at {endpoint.host} while trying to {action}: {err}") from None


def _refused(endpoint: Endpoint, action: str, status: int | None, reason: str | None, body: Any) -> KubeflowError:
    message = _server_message(body)
    hint = ""
    if status in (401, 403):
        hint = f" (authentication: pass a bearer token with --token-file or {TOKEN_ENV}, and --namespace if multi-user)"
    return KubeflowError(
        f"Kubeflow Pipelines at {endpoint.host} refused to {action}: HTTP {status} {reason or ''}".rstrip()
        + (f": {message}" if message else "")
        + hint
    )


def _server_message(body: Any) -> str:
    """KFP answers errors as JSON {"error"|"message": ...}; anything else is shown as text, shortened."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip()[:500]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:500]
    return str(data)[:500]


def _auth_headers(endpoint: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
