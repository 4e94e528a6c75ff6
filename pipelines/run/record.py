"""What one pipeline run did, read back from ML Metadata: per-component times and outputs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ml_metadata import errors, metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclass
class NodeRecord:
    node_id: str
    state: str
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)
    started: float = 0.0  # epoch seconds: when the execution was created and last updated (its end)
    ended: float = 0.0

    def output(self, key: str) -> metadata_store_pb2.Artifact | None:
        artifacts = self.outputs.get(key) or []
        return artifacts[-1] if artifacts else None


@dataclass
class RunRecord:
    pipeline_name: str
    run_id: str
    nodes: dict[str, NodeRecord]


def custom_property(artifact: metadata_store_pb2.Artifact, name: str) -> int | str | float | None:
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def read_run(
    connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str, run_id: str | None = None
) -> RunRecord:
    """One run of ``pipeline_name`` (the most recent without ``run_id``), each node's execution and outputs."""
    store = metadata_store.MetadataStore(connection_config)
    runs = [
        c
        for c in store.get_contexts_by_type("pipeline_run")
        if (run_id is None or c.name == run_id)
        and any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))
    ]
    if not runs:
        which = (
            f"run {run_id!r} of pipeline {pipeline_name!r} is not"
            if run_id
            else f"no run of pipeline {pipeline_name!r} is"
        )
        raise LookupError(f"{which} recorded in ML Metadata")
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    prefix = f"{pipeline_name}."
    nodes: dict[str, NodeRecord] = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node_contexts = [c for c in store.get_contexts_by_execution(execution.id) if c.name.startswith(prefix)]
        node_id = node_contexts[0].name[len(prefix) :] if node_contexts else execution.name
        seconds = max(0.0, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000)
        record = NodeRecord(
            node_id,
            _STATE_NAMES.get(execution.last_known_state, "UNKNOWN"),
            seconds,
            started=execution.create_time_since_epoch / 1000,
            ended=execution.last_update_time_since_epoch / 1000,
        )
        events = store.get_events_by_execution_ids([execution.id])
        output_events = [
            e for e in events if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in output_events])}
        for event in output_events:
            key = next((s.key for s in event.path.steps if s.HasField("key")), "")
            record.outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        nodes[node_id] = record
    return RunRecord(pipeline_name, run.name, nodes)


RUN_CONTEXT_TYPE, PIPELINE_CONTEXT_TYPE = "pipeline_run", "pipeline"  # TFX's contexts: one per run, one per pipeline


def note_on_run(
    connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str, run_id: str, note: dict[str, int]
) -> None:
    """Put ``note`` on the run's context (as custom properties) before TFX starts it, so even a killed run keeps it.

    The context is made as TFX makes it (a ``pipeline_run`` named by the run id, child of the
    pipeline's context); TFX then takes it as it is. ``history`` reads the note back.
    """
    store = metadata_store.MetadataStore(connection_config)
    pipeline = _context(store, PIPELINE_CONTEXT_TYPE, pipeline_name)
    run = _context(store, RUN_CONTEXT_TYPE, run_id)
    for key, value in note.items():
        run.custom_properties[key].int_value = int(value)
    store.put_contexts([run])
    with contextlib.suppress(errors.AlreadyExistsError):  # linked already (a note added twice)
        store.put_parent_contexts([metadata_store_pb2.ParentContext(child_id=run.id, parent_id=pipeline.id)])


def _context(store: metadata_store.MetadataStore, type_name: str, name: str) -> metadata_store_pb2.Context:
    """The context of this type and name, registered (with its type) when missing."""
    existing = store.get_context_by_type_and_name(type_name, name)
    if existing is not None:
        return existing
    try:
        type_id = store.get_context_type(type_name).id
    except errors.NotFoundError:
        type_id = store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
    context = metadata_store_pb2.Context(type_id=type_id, name=name)
    [context.id] = store.put_contexts([context])
    return context


def run_notes(context: metadata_store_pb2.Context) -> dict[str, int | str]:
    """What :func:`note_on_run` put on a run's context."""
    return {
        key: getattr(value, value.WhichOneof("value"))
        for key, value in context.custom_properties.items()
        if value.WhichOneof("value")
    }
