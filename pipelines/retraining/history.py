"""``twinflow history`` and ``twinflow lineage``: what every run did, and where a served model came from.

Local runs are read from ML Metadata (the SQLite file or the shared MySQL store): each
pipeline run's ImageExampleGen (spans), DriftGate (verdict), Evaluators (test accuracy,
blessing) and pushers (decision, version). Runs elsewhere (Kubeflow writes its metadata to
the cluster's store, not this one) are known from the serving folder: every push decision
and rollback leaves a record there (``<serving_dir>/<framework>/_decisions/``), and every
pushed ``model.json`` says which spans and data fingerprint it was trained on.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twinflow.components.tfma_results import load_overall_metrics
from twinflow.core import fs
from twinflow.core.config import PipelineConfig
from twinflow.core.contract import DRIFT_REPORT_FILE
from twinflow.core.errors import ConfigError
from twinflow.core.metadata import connection_config, describe_store
from twinflow.core.model_card import read_model_card
from twinflow.core.repeats import node_id
from twinflow.model_store.decisions import read_decisions
from twinflow.model_store.layout import complete_versions, served_version
from twinflow.model_store.published import Published, published_versions
from twinflow.pipelines.report.build import framework_repeats, framework_row
from twinflow.pipelines.run.guard import REDO_FORCED, REDO_SPAN, report_dir
from twinflow.pipelines.run.record import RUN_CONTEXT_TYPE, RunRecord, custom_property, read_run, run_notes
from twinflow.pipelines.run.shared_lock import check_store

_FAILED = "FAILED"


def _store_exists(config: PipelineConfig) -> bool:
    return bool(config.metadata_uri) or Path(config.metadata_path).exists()


def _iso(ms: int) -> str:
    """UTC, as the decision records write it, so rows from both sources sort together."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _run_ids(config: PipelineConfig) -> list[tuple[int, str, dict[str, int | str]]]:
    """(create time in ms, run id, notes) of every run of the pipeline in ML Metadata, oldest first."""
    from ml_metadata import metadata_store

    store = metadata_store.MetadataStore(connection_config(config.metadata_uri, config.metadata_path))
    runs = [
        (c.create_time_since_epoch, c.name, run_notes(c))
        for c in store.get_contexts_by_type(RUN_CONTEXT_TYPE)
        if any(p.name == config.pipeline_name for p in store.get_parent_contexts_by_context(c.id))
    ]
    return sorted(runs, key=lambda run: run[:2])


def _json_list(value: Any) -> list[Any]:
    try:
        parsed = json.loads(value) if isinstance(value, str) else []
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def _run_row(record: RunRecord, started_ms: int, frameworks: Iterable[str], pipeline_root: str) -> dict[str, Any]:
    example_gen = record.nodes.get("ImageExampleGen")
    examples = example_gen.output("examples") if example_gen else None
    gate = record.nodes.get("DriftGate")
    drift = "-"
    if gate is not None and gate.state == _FAILED:
        drift = "drift: stopped" + _stopped_drift(pipeline_root, record.run_id)
    elif gate is not None:
        drift = str(custom_property(gate.output("drift"), "drift_verdict") or "-")
    failed = [n.node_id for n in record.nodes.values() if n.state == _FAILED]
    unfinished = [n.node_id for n in record.nodes.values() if n.state not in (_FAILED, "COMPLETE", "CACHED")]
    row: dict[str, Any] = {
        "time": _iso(started_ms),
        "run_id": record.run_id,
        "source": "ML Metadata",
        "spans": _json_list(custom_property(examples, "spans")) if examples is not None else [],
        "drift": drift,
        "outcome": (
            f"failed at {', '.join(failed)}"
            if failed
            else f"did not finish (stopped in {', '.join(unfinished)})"
            if unfinished
            else "completed"
        ),
        "frameworks": {},
    }
    for name in frameworks:
        row["frameworks"][name] = _framework_outcome(record, name)
    return row


def _stopped_drift(pipeline_root: str, run_id: str) -> str:
    """`` (label_name, image_mean)``: the features that stopped a run, from the drift report kept beside its report."""
    path = fs.join(report_dir(pipeline_root, run_id), DRIFT_REPORT_FILE)
    if not fs.exists(path):  # a run from before stopped runs kept their drift report
        return ""
    try:
        drifted = json.loads(fs.read_text(path)).get("drifted") or []
    except (OSError, ValueError, AttributeError):
        return ""
    features = list(dict.fromkeys(str(d.get("feature")) for d in drifted if isinstance(d, dict)))
    return f" ({', '.join(features)})" if features else ""


def _chosen_repeat(record: RunRecord, name: str) -> int:
    """The repeat whose model the pusher chose (1 without repeats, or when the models' cards are gone)."""
    repeats = framework_repeats(record, name)
    if len(repeats) == 1:
        return repeats[0]
    try:
        return framework_row(record, name).repeat
    except Exception:  # a model folder removed since: show the first repeat rather than nothing
        return repeats[0]


def _framework_outcome(record: RunRecord, name: str) -> dict[str, Any]:
    evaluator = record.nodes.get(node_id("Evaluator", name, _chosen_repeat(record, name)))
    pusher = record.nodes.get(node_id("Pusher", name))
    outcome: dict[str, Any] = {"test_accuracy": None, "blessed": None, "pushed_version": None, "decision": None}
    evaluation = evaluator.output("evaluation") if evaluator else None
    if evaluation is not None:
        try:
            outcome["test_accuracy"] = load_overall_metrics(evaluation.uri).get("accuracy")
        except Exception:  # an evaluation folder removed since: the row still shows the rest
            outcome["test_accuracy"] = None
    blessing = evaluator.output("blessing") if evaluator else None
    if blessing is not None:
        outcome["blessed"] = custom_property(blessing, "blessed") == 1
    pushed = pusher.output("pushed_model") if pusher else None
    if pushed is not None:
        if custom_property(pushed, "pushed") == 1:
            version = custom_property(pushed, "pushed_version")
            outcome["pushed_version"] = int(version) if version not in (None, "") else None
        outcome["decision"] = custom_property(pushed, "decision")
    return outcome


def history(config: PipelineConfig) -> list[dict[str, Any]]:
    """One row per run, oldest first, with what each framework served after it (rollbacks included as rows)."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA's reader warns about its own deprecations
    rows: list[dict[str, Any]] = []
    known_runs: set[str] = set()
    if _store_exists(config):
        check_store(config)
        connection = connection_config(config.metadata_uri, config.metadata_path)
        for started, run_id, notes in _run_ids(config):
            record = read_run(connection, config.pipeline_name, run_id)
            row = _run_row(record, started, config.frameworks, config.pipeline_root)
            if REDO_SPAN in notes:
                row["redo_of_span"] = notes[REDO_SPAN]
                forced = " (forced: the span had pushed)" if notes.get(REDO_FORCED) else ""
                row["outcome"] += f"; redo of span {notes[REDO_SPAN]}{forced}"
            rows.append(row)
            known_runs.add(run_id)
    decisions = {name: read_decisions(fs.join(config.serving_dir, name)) for name in config.frameworks}
    published = published_versions(config.serving_dir, config.frameworks, decisions)
    _credit_publishers(rows, published)
    recorded = {(name, record.get("run_id")) for name, records in decisions.items() for record in records}
    for version in published.values():
        if (
            version.from_card
            and version.run_id not in known_runs
            and (version.framework, version.run_id) not in recorded
        ):
            rows.append(_row_from_card(version))  # pushed elsewhere (Kubeflow), stopped before its decision record
    for name, records in decisions.items():
        for record in records:
            if record.get("reason", "").startswith("rollback"):
                rows.append(
                    {
                        "time": record["time"],
                        "run_id": None,
                        "source": "rollback",
                        "spans": record.get("spans") or [],
                        "drift": "-",
                        "outcome": f"{name}: {record.get('reason')}",
                        "frameworks": {name: {"pushed_version": record.get("version"), "decision": "rollback"}},
                    }
                )
            elif record.get("run_id") not in known_runs:  # a run recorded elsewhere (e.g. on Kubeflow)
                rows.append(_row_from_decision(name, record))
    rows.sort(key=lambda r: r["time"])
    _merge_elsewhere_runs(rows)
    _served_after(rows, config.frameworks, decisions)
    return rows


def _credit_publishers(rows: list[dict[str, Any]], published: dict[tuple[str, int], Published]) -> None:
    """Each version goes to the run that pushed it: a run killed after its push gets it, and the next run,
    which found its model already there ("already pushed as version N"), does not."""
    by_run = {(p.framework, p.run_id): p.number for p in published.values()}
    for row in rows:
        for name, outcome in row["frameworks"].items():
            own = by_run.get((name, row["run_id"]))
            claimed = outcome.get("pushed_version")
            pusher = published.get((name, claimed)) if claimed is not None else None
            if claimed is not None and pusher is not None and pusher.run_id != row["run_id"]:
                outcome["pushed_version"] = None
            if own is not None and outcome.get("pushed_version") is None:
                outcome["pushed_version"] = own
                if not outcome.get("decision"):
                    outcome["decision"] = f"pushed as version {own}; the run stopped before recording its decision"


def _row_from_card(version: Published) -> dict[str, Any]:
    return {
        "time": version.pushed_at,
        "run_id": version.run_id,
        "source": "serving folder",
        "spans": list(version.spans),
        "drift": "-",
        "outcome": "stopped after its push, before recording its decision",
        "frameworks": {
            version.framework: {
                "test_accuracy": version.accuracy,
                "blessed": True,
                "pushed_version": version.number,
                "decision": f"pushed as version {version.number}; the run stopped before recording its decision",
            }
        },
    }


def _row_from_decision(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": record["time"],
        "run_id": record.get("run_id"),
        "source": "serving folder",
        "spans": record.get("spans") or [],
        "drift": "-",
        "outcome": "completed",
        "frameworks": {
            name: {
                "test_accuracy": (record.get("evaluation") or {}).get("accuracy"),
                "blessed": record.get("blessed"),
                "pushed_version": record.get("version") if record.get("pushed") else None,
                "decision": record.get("reason"),
            }
        },
    }


def _merge_elsewhere_runs(rows: list[dict[str, Any]]) -> None:
    """Rows from the serving folder with one run id (a record per framework) become one row."""
    by_run: dict[str, dict[str, Any]] = {}
    for row in list(rows):
        if row["source"] != "serving folder" or not row["run_id"]:
            continue
        first = by_run.setdefault(row["run_id"], row)
        if first is not row:
            first["frameworks"].update(row["frameworks"])
            rows.remove(row)


def _served_after(
    rows: list[dict[str, Any]], frameworks: Iterable[str], decisions: dict[str, list[dict[str, Any]]]
) -> None:
    """What each framework served after each row: its decision record's word where there is one, else carried on."""
    recorded = {
        (name, record.get("run_id")): record.get("served_after")
        for name, records in decisions.items()
        for record in records
        if record.get("run_id")
    }
    served: dict[str, Any] = {name: None for name in frameworks}
    for row in rows:
        for name, outcome in row["frameworks"].items():
            if outcome.get("pushed_version") is not None:
                served[name] = outcome["pushed_version"]
            elif (name, row["run_id"]) in recorded and recorded[(name, row["run_id"])] is not None:
                served[name] = recorded[(name, row["run_id"])]
        row["served_after"] = dict(served)


def _percent(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else "-"


def _spans(spans: list[int]) -> str:
    if not spans:
        return "-"
    return str(spans[0]) if len(spans) == 1 else f"{spans[0]}-{spans[-1]}"


def format_history(rows: list[dict[str, Any]]) -> str:
    """A table: time, spans, drift, per framework accuracy/blessed/pushed, served after the run."""
    if not rows:
        return "no runs recorded yet"
    names = sorted({name for row in rows for name in row["frameworks"]} | {n for r in rows for n in r["served_after"]})
    header = ["time", "run", "spans", "drift", "outcome"]
    for name in names:
        header += [f"{name} test acc", f"{name} blessed", f"{name} pushed", f"{name} served after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["time"][:19].replace("T", " "),
            row["run_id"] or row["source"],
            _spans(row["spans"]),
            row["drift"],
            row["outcome"],
        ]
        for name in names:
            outcome = row["frameworks"].get(name, {})
            blessed = outcome.get("blessed")
            cells += [
                _percent(outcome.get("test_accuracy")),
                "-" if blessed is None else ("yes" if blessed else "no"),
                str(outcome.get("pushed_version") or "-"),
                str(row["served_after"].get(name) or "-"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def lineage(config: PipelineConfig, framework: str, version: int | None = None) -> dict[str, Any]:
    """From a served (or given) version back through ML Metadata to its Trainer, Transform, statistics and data."""
    model_root = fs.join(config.serving_dir, framework)
    versions = {v.number: v for v in complete_versions(model_root)}
    chosen = served_version(model_root) if version is None else versions.get(version)
    if chosen is None:
        known = ", ".join(map(str, versions)) or "none"
        which = "nothing is served" if version is None else f"version {version} is not a complete version"
        raise ConfigError(f"{model_root}: {which} (complete versions: {known})")
    card = read_model_card(chosen.path)
    chain: dict[str, Any] = {
        "framework": framework,
        "version": chosen.number,
        "path": chosen.path,
        "pushed_at": card.pushed_at,
        "decision": card.decision,
        "rolled_back_from": card.rolled_back_from,
        "evaluation": card.evaluation,
        "data": card.data.model_dump() if card.data else None,
        "steps": [],
        "store": describe_store(config.metadata_uri, config.metadata_path),
    }
    source = card.source_model
    if source and _store_exists(config):
        check_store(config)
        chain["steps"] = _walk_upstream(config, source)
    if not chain["steps"]:
        chain["note"] = (
            f"{source} is not in {chain['store']} (trained elsewhere, e.g. on Kubeflow): "
            "what is shown comes from the model card"
        )
    return chain


def _walk_upstream(config: PipelineConfig, model_uri: str) -> list[dict[str, Any]]:
    """Producer executions from the model back to ImageExampleGen, and the StatisticsGen that read its examples."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    store = metadata_store.MetadataStore(connection_config(config.metadata_uri, config.metadata_path))
    candidates = store.get_artifacts_by_uri(model_uri) or store.get_artifacts_by_uri(str(Path(model_uri).parent))
    if not candidates:
        return []
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    inputs = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
    steps: list[dict[str, Any]] = []
    seen: set[int] = set()
    frontier = [candidates[0].id]
    examples_ids: list[int] = []
    while frontier:
        artifact_id = frontier.pop(0)
        # The execution that created the artifact (cached runs of the same node list it as an output again).
        producers = sorted(e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in outputs)
        producers = producers[:1]
        for execution in store.get_executions_by_id(producers):
            if execution.id in seen:
                continue
            seen.add(execution.id)
            step = _step(store, execution, inputs, outputs, config.pipeline_name)
            steps.append(step)
            if step["node"] == "ImageExampleGen":
                examples_ids += [a["id"] for a in step["outputs"]]
            frontier += [a["id"] for a in step["inputs"]]
    for event in store.get_events_by_artifact_ids(examples_ids):
        if event.type not in inputs or event.execution_id in seen:
            continue
        execution = store.get_executions_by_id([event.execution_id])[0]
        step = _step(store, execution, inputs, outputs, config.pipeline_name)
        if step["node"] == "StatisticsGen":
            seen.add(execution.id)
            steps.append(step)
    return steps


def _step(
    store: Any, execution: Any, inputs: tuple[int, ...], outputs: tuple[int, ...], pipeline_name: str
) -> dict[str, Any]:
    events = store.get_events_by_execution_ids([execution.id])
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    prefix = f"{pipeline_name}."  # TFX names each node's context <pipeline>.<node id>
    nodes = [c.name[len(prefix) :] for c in store.get_contexts_by_execution(execution.id) if c.name.startswith(prefix)]
    node = nodes[0] if nodes else execution.name or str(execution.type_id)

    def describe(event: Any) -> dict[str, Any]:
        artifact = artifacts[event.artifact_id]
        key = next((s.key for s in event.path.steps if s.HasField("key")), "")
        facts: dict[str, Any] = {"key": key, "id": artifact.id, "uri": artifact.uri}
        for name in ("spans", "input_base", "input_fingerprint"):
            value = custom_property(artifact, name)
            if value not in (None, ""):
                facts[name] = _json_list(value) if name == "spans" else value
        if artifact.properties.get("span") is not None and artifact.properties["span"].HasField("int_value"):
            facts["span"] = artifact.properties["span"].int_value
        return facts

    return {
        "node": node,
        "execution_id": execution.id,
        "finished": _iso(execution.last_update_time_since_epoch),
        "inputs": [describe(e) for e in events if e.type in inputs],
        "outputs": [describe(e) for e in events if e.type in outputs],
    }


def format_lineage(chain: dict[str, Any]) -> str:
    lines = [
        f"{chain['framework']} version {chain['version']} ({chain['path']}), pushed {chain['pushed_at']}: "
        f"{chain['decision'] or '-'}",
    ]
    if chain.get("rolled_back_from"):
        lines.append(f"  re-published from version {chain['rolled_back_from']} by a rollback")
    accuracy = (chain.get("evaluation") or {}).get("accuracy")
    if accuracy is not None:
        lines.append(f"  test accuracy {accuracy:.2%}")
    data = chain.get("data") or {}
    if data:
        lines.append(
            f"  data: {data.get('input_base')} spans {_spans(data.get('spans') or [])}, "
            f"fingerprint {str(data.get('fingerprint'))[:16]}…"
        )
    for step in chain["steps"]:
        lines.append(f"  ← {step['node']} (execution {step['execution_id']}, finished {step['finished']})")
        for artifact in step["outputs"]:
            extra = ", ".join(f"{k} {v}" for k, v in artifact.items() if k in ("spans", "input_fingerprint", "span"))
            lines.append(f"      {artifact['key']}: {artifact['uri']}" + (f" ({extra})" if extra else ""))
    if chain.get("note"):
        lines.append(f"  {chain['note']}")
    return "\n".join(lines)
