"""submit and schedule against a local HTTP server that answers as the KFP v2 REST API; clear errors otherwise."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kfp_fake import FakeKfp, Server
from tests.kubeflow_specs import compile_to
from twinflow.pipelines.cli.main import main
from twinflow.pipelines.kubeflow.endpoint import kfp_cron
from twinflow.pipelines.kubeflow.specfile import read_spec, write_spec

TOKEN = "test-bearer-token"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_to(tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    for name in ("KFP_HOST", "KF_PIPELINES_ENDPOINT", "KFP_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json


def uploaded_documents(fake: FakeKfp, path: str) -> list[dict[str, Any]]:
    (request,) = fake.find("POST", path)
    return [d for d in yaml.safe_load_all(request.upload()) if d]


def test_submit_uploads_the_spec_and_starts_a_run_with_parameters(
    spec_file: Path, capsys: pytest.CaptureFixture
) -> None:
    fake = FakeKfp()
    with Server(fake) as server:
        argv = ["submit", "--spec", str(spec_file), "--host", server.url, "--experiment", "nightly"]
        argv += ["--data-dir", "gs://bucket/new-images", "--epochs", "3", "--pipeline-root", "gs://bucket/runs"]
        assert main([*argv, "--run-name", "try-1"]) == 0

    assert uploaded_documents(fake, "/pipelines/upload") == [read_spec(spec_file)[0]]
    assert fake.find("POST", "/pipelines/upload")[0].query["name"] == ["twinflow"]
    assert fake.find("POST", "/experiments")[0].json()["display_name"] == "nightly"
    (run,) = [r.json() for r in fake.find("POST", "/runs")]
    assert run["display_name"] == "try-1"
    assert run["experiment_id"] == "experiment-1"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "pipeline-1-version-1",
    }
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/runs"
    parameters = run["runtime_config"]["parameters"]
    assert set(parameters) == {"input_base", "training_config"}
    assert parameters["input_base"] == "gs://bucket/new-images"
    training = json.loads(parameters["training_config"])["training"]
    assert training["epochs"] == 3 and training["architecture"] == "tiny_cnn"  # merged into the compiled defaults
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in fake.requests)
    output = capsys.readouterr()
    assert "run-1" in output.out
    assert "resolver" not in output.err  # specs compiled now have no resolver tasks


def test_a_spec_with_resolver_tasks_is_submitted_with_a_note_to_compile_it_again(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A spec compiled by an older twinflow (LatestBlessedModel resolvers) still goes, with a note."""
    spec, platform = read_spec(spec_file)
    task = spec["root"]["dag"]["tasks"]["Evaluator_keras"]
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    spec["deploymentSpec"]["executors"][label] = {"resolver": {"outputArtifactQueries": {}}}
    old = write_spec(tmp_path / "old.yaml", spec, platform)
    fake = FakeKfp()
    with Server(fake) as server:
        assert main(["submit", "--spec", str(old), "--host", server.url]) == 0
    note = capsys.readouterr().err
    assert "has resolver tasks ['Evaluator_keras']" in note and "compile it again with 'twinflow compile'" in note


@pytest.mark.parametrize("verb", ["submit", "schedule"])
def test_a_spec_compiled_by_an_older_twinflow_is_refused_in_one_line_before_any_request(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, verb: str
) -> None:
    """Before 0.2 the code lived in top-level packages: such a spec's steps would fail to import in every pod."""
    text = spec_file.read_text()
    assert "twinflow.trainers.keras.train.run_fn" in text
    old = tmp_path / "old.yaml"
    old.write_text(
        text.replace("twinflow.trainers.keras.train.run_fn", "trainers.keras_trainer.run_fn").replace(
            "twinflow.components.", "components."
        )
    )
    fake = FakeKfp()
    with Server(fake) as server:
        argv = [
            verb,
            "--spec",
            str(old),
            "--host",
            server.url,
            *(["--cron", "0 3 * * *"] if verb == "schedule" else []),
        ]
        assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "was compiled by another twinflow version" in error, error
    assert "components.data_gate.executor" in error and "compile it again with 'twinflow compile'" in error
    assert fake.requests == []


def test_a_second_submit_adds_a_version_to_the_same_pipeline(spec_file: Path) -> None:
    fake = FakeKfp()
    with Server(fake) as server:
        argv = ["submit", "--spec", str(spec_file), "--host", server.url]
        assert main(argv) == 0
        assert main(argv) == 0

    assert len(fake.find("POST", "/pipelines/upload")) == 1
    (version,) = fake.find("POST", "/pipelines/upload_version")
    assert version.query["pipelineid"] == ["pipeline-1"]
    assert [d for d in yaml.safe_load_all(version.upload()) if d] == [read_spec(spec_file)[0]]
    runs = [r.json() for r in fake.find("POST", "/runs")]
    assert [r["pipeline_version_reference"]["pipeline_version_id"] for r in runs] == [
        "pipeline-1-version-1",
        "pipeline-1-version-2",
    ]
    assert len(fake.find("POST", "/experiments")) == 1  # the experiment is found, not created twice
    assert all(r["runtime_config"].get("parameters") in (None, {}) for r in runs)  # the spec's defaults apply


def test_schedule_creates_a_recurring_run_without_catch_up_or_overlap(spec_file: Path) -> None:
    fake = FakeKfp()
    with Server(fake) as server:
        argv = ["schedule", "--spec", str(spec_file), "--host", server.url, "--cron", "0 3 * * 1"]
        assert main([*argv, "--param", "input_fingerprint=2026-w48", "--learning-rate", "0.01"]) == 0

    (job,) = [r.json() for r in fake.find("POST", "/recurringruns")]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert int(job["max_concurrency"]) == 1
    assert job["no_catchup"] is True
    assert job["mode"] == "ENABLE"
    assert job["display_name"] == "twinflow-retrain"
    assert job["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "pipeline-1-version-1",
    }
    parameters = job["runtime_config"]["parameters"]
    assert parameters["input_fingerprint"] == "2026-w48"
    assert json.loads(parameters["training_config"])["training"]["learning_rate"] == 0.01

    # Scheduled runs re-read the data: the uploaded version has caching off in every task, all else as compiled.
    (uploaded,) = uploaded_documents(fake, "/pipelines/upload")
    compiled = read_spec(spec_file)[0]
    assert {t["cachingOptions"]["enableCache"] for t in uploaded["root"]["dag"]["tasks"].values()} == {False}
    for task in (*uploaded["root"]["dag"]["tasks"].values(), *compiled["root"]["dag"]["tasks"].values()):
        task.pop("cachingOptions", None)
    assert uploaded == compiled


def test_a_refusal_names_the_host_the_status_and_the_message(spec_file: Path, capsys: pytest.CaptureFixture) -> None:
    fake = FakeKfp(refuse={"/runs": (403, "user alice may not create runs in namespace team-a")})
    with Server(fake) as server:
        assert main(["submit", "--spec", str(spec_file), "--host", server.url]) == 1
    err = capsys.readouterr().err
    assert f"Kubeflow Pipelines at {server.url} refused to create the run: HTTP 403" in err
    assert "user alice may not create runs in namespace team-a" in err


def test_an_unauthenticated_endpoint_is_reported_before_any_upload(
    spec_file: Path, capsys: pytest.CaptureFixture
) -> None:
    fake = FakeKfp(refuse={"/healthz": (401, "Jwt is missing")})
    with Server(fake) as server:
        assert main(["schedule", "--spec", str(spec_file), "--host", server.url, "--cron", "0 3 * * *"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "Jwt is missing" in err and "KFP_TOKEN" in err
    assert [r.path for r in fake.requests] == ["/apis/v2beta1/healthz"]


def test_an_unreachable_endpoint_gives_a_clear_error(spec_file: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["submit", "--spec", str(spec_file), "--host", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in err
    assert "Connection refused" in err


def test_missing_host_and_bad_values_fail_before_any_request(spec_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["submit", "--spec", str(spec_file)]) == 1
    assert "--host" in capsys.readouterr().err
    fake = FakeKfp()
    with Server(fake) as server:
        base = ["--spec", str(spec_file), "--host", server.url]
        assert main(["schedule", *base, "--cron", "every monday"]) == 2
        assert main(["submit", *base, "--epochs", "0"]) == 2
        assert main(["submit", *base, "--param", "no_such_parameter=1"]) == 2
    assert fake.requests == []


def test_kfp_cron_adds_seconds_to_five_field_expressions() -> None:
    assert kfp_cron("0 3 * * 1") == "0 0 3 * * 1"
    assert kfp_cron("30 0 3 * * 1") == "30 0 3 * * 1"
    with pytest.raises(ValueError, match="5 fields"):
        kfp_cron("@daily")
