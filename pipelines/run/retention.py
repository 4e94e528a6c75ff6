"""``twinflow prune-runs`` (and ``--keep-runs N`` after each run): what the pipeline root keeps of old runs.

Every run writes its artifacts under the pipeline root (examples, statistics, the transform, a
model per framework…), a report and a log; a scheduler also writes a log and summary per tick.
Nothing removed them. Pruning keeps:

- **whole, the newest N runs and every run that pushed a version still in the serving folder**:
  every artifact they wrote *or read* (a cached component reads an older run's outputs), their
  reports and logs, so ``lineage``, a rollback and ``report --run`` keep working for every
  version that can be served (and, for a version whose card names no run, its model and
  everything upstream of it in ML Metadata, with the statistics of its examples);
- **the newest blessed model of each framework**: the Evaluator's baseline (TFX's resolver);
- **the small records history reads**: evaluations, blessings, drift reports, push records
  (artifacts of the types in ``RECORD_TYPES``, a few KB a run), and ML Metadata itself.

Everything else of older runs goes: artifact folders (marked DELETED in ML Metadata first, so
TFX never answers a later run from a removed cache entry: it re-runs that component), reports,
logs, TFX's per-execution folders, and scheduler tick files older than ``keep_tick_days``.
Only paths under the pipeline root (and the scheduler's folder) are ever removed; the serving
folder is never touched. It holds the run locks, so it never runs beside a pipeline run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinflow.core import fs
from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.core.metadata import connection_config
from twinflow.core.model_card import read_model_card
from twinflow.model_store.layout import complete_versions
from twinflow.model_store.published import published_versions

DEFAULT_KEEP_RUNS = 10  # prune-runs without --keep-runs or keep_runs in the config
DEFAULT_KEEP_TICK_DAYS = 14.0
RECORD_TYPES = frozenset({"ModelEvaluation", "ModelBlessing", "PushedModel", "ExampleAnomalies"})
_STATISTICS_TYPE = "ExampleStatistics"
_BLESSED, _MODEL_ID = "blessed", "current_model_id"  # what TFX's Evaluator records on a blessing


@dataclass(frozen=True)
class Removal:
    path: str
    bytes: int
    what: str  # "artifact", "report", "log", "execution folder", "tick file"
    artifact_id: int | None = None


@dataclass
class PrunePlan:
    """What pruning would remove (or removed), and which runs it keeps."""

    kept_runs: list[str]
    pruned_runs: list[str]
    removals: list[Removal] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)

    def count(self, what: str) -> int:
        return sum(1 for r in self.removals if r.what == what)


def prune_runs(
    config: PipelineConfig,
    keep_runs: int,
    keep_tick_days: float = DEFAULT_KEEP_TICK_DAYS,
    dry_run: bool = False,
    *,
    locked: bool = False,
) -> PrunePlan:
    """Plan and (unless ``dry_run``) apply; ``locked``: the caller already holds the run locks (a run's own prune)."""
    if keep_runs < 1:
        raise ConfigError(
            f"--keep-runs must be at least 1 (the last run's report answers 'nothing changed'), not {keep_runs}"
        )
    if keep_tick_days < 0:
        raise ConfigError(f"--keep-tick-days must be 0 or more, not {keep_tick_days:g}")
    if locked or dry_run:
        return _prune(config, keep_runs, keep_tick_days, dry_run)
    from twinflow.pipelines.run.guard import exclusive_run

    with exclusive_run(config):
        return _prune(config, keep_runs, keep_tick_days, dry_run)


def _prune(config: PipelineConfig, keep_runs: int, keep_tick_days: float, dry_run: bool) -> PrunePlan:
    plan = plan_prune(config, keep_runs, keep_tick_days)
    if not dry_run:
        apply_prune(config, plan)
    return plan


def _store_exists(config: PipelineConfig) -> bool:
    return bool(config.metadata_uri) or Path(config.metadata_path).exists()


def plan_prune(config: PipelineConfig, keep_runs: int, keep_tick_days: float, now: float | None = None) -> PrunePlan:
    now = time.time() if now is None else now
    plan = PrunePlan([], [])
    oldest_kept = 0.0  # no store, no runs: reports and logs are left alone
    if _store_exists(config):
        oldest_kept = _plan_runs(config, keep_runs, plan)
    _plan_run_files(config, plan, oldest_kept)
    _plan_ticks(config, plan, now - keep_tick_days * 86400)
    return plan


def _plan_runs(config: PipelineConfig, keep_runs: int, plan: PrunePlan) -> float:
    """Artifacts and execution folders of runs before the newest ``keep_runs``; returns the oldest kept run's time."""
    from ml_metadata import metadata_store

    from twinflow.pipelines.run.record import RUN_CONTEXT_TYPE

    store = metadata_store.MetadataStore(connection_config(config.metadata_uri, config.metadata_path))
    runs = sorted(
        (c for c in store.get_contexts_by_type(RUN_CONTEXT_TYPE) if _of_pipeline(store, c, config.pipeline_name)),
        key=lambda c: (c.create_time_since_epoch, c.id),
    )
    served_runs = _runs_of_versions(config)
    kept = runs[-keep_runs:]
    kept_names = {c.name for c in kept} | served_runs
    plan.kept_runs = [c.name for c in runs if c.name in kept_names]
    plan.pruned_runs = [c.name for c in runs if c.name not in kept_names]
    executions = {c.name: store.get_executions_by_context(c.id) for c in runs}
    kept_executions = [e for name in kept_names for e in executions.get(name, [])]
    protected = _used_by(store, kept_executions) | _lineage_of_versions(store, config) | _baselines(store)
    types = {t.id: t.name for t in store.get_artifact_types()}
    root = config.pipeline_root
    kept_artifacts = store.get_artifacts_by_id(list(protected)) if protected else []
    kept_uris = {os.path.realpath(a.uri) for a in kept_artifacts if a.uri and not fs.is_remote(a.uri)}
    doomed_ids: set[int] = set()
    for name in plan.pruned_runs:
        for execution in executions[name]:
            events = store.get_events_by_execution_ids([execution.id])
            for artifact in store.get_artifacts_by_id([e.artifact_id for e in events]):
                if artifact.id in protected or artifact.id in doomed_ids or types.get(artifact.type_id) in RECORD_TYPES:
                    continue
                if not artifact.uri or not _inside(artifact.uri, root):
                    continue
                if artifact.state == artifact.DELETED and not fs.exists(artifact.uri):
                    continue
                doomed_ids.add(artifact.id)
                plan.removals.append(Removal(artifact.uri, _size(artifact.uri), "artifact", artifact.id))
            plan.removals += _execution_folders(store, execution, config.pipeline_name, root, kept_uris)
    return min((c.create_time_since_epoch / 1000 for c in kept), default=time.time())


def _of_pipeline(store: Any, context: Any, pipeline_name: str) -> bool:
    return any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(context.id))


def _used_by(store: Any, executions: Iterable[Any]) -> set[int]:
    """Every artifact these executions read or wrote (a cached execution lists an older run's outputs)."""
    ids = [e.id for e in executions]
    return {event.artifact_id for event in store.get_events_by_execution_ids(ids)} if ids else set()


def _versions(config: PipelineConfig) -> list[Any]:
    """The cards of every complete version under the serving folder (each framework and variant folder)."""
    serving = config.serving_dir
    if not fs.isdir(serving):
        return []
    cards = []
    for name in sorted(fs.listdir(serving)):
        for version in complete_versions(fs.join(serving, name)):
            try:
                cards.append(read_model_card(version.path))
            except Exception:  # an unreadable card protects nothing, and must not stop the prune
                continue
    return cards


def _runs_of_versions(config: PipelineConfig) -> set[str]:
    """The runs that pushed a version still in the serving folder (their reports and logs are kept)."""
    serving = config.serving_dir
    names = sorted(fs.listdir(serving)) if fs.isdir(serving) else []
    runs = {card.data.run_id for card in _versions(config) if card.data and card.data.run_id}
    live = {(n, v.number) for n in names for v in complete_versions(fs.join(serving, n))}
    return runs | {p.run_id for key, p in published_versions(serving, names).items() if key in live}


def _lineage_of_versions(store: Any, config: PipelineConfig) -> set[int]:
    """Each complete version's model artifact and everything upstream of it, plus its examples' statistics."""
    from ml_metadata.proto import metadata_store_pb2

    seeds: list[int] = []
    for card in _versions(config):
        source = str(card.source_model or "")
        if source:  # the model folder, or the Trainer's artifact above its Format-Serving folder
            found = store.get_artifacts_by_uri(source) or store.get_artifacts_by_uri(str(Path(source).parent))
            seeds += [a.id for a in found]
    outputs = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    inputs = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
    protected, producers_seen = set(seeds), set()
    frontier = list(seeds)
    while frontier:
        producers = {e.execution_id for e in store.get_events_by_artifact_ids(frontier) if e.type in outputs}
        producers -= producers_seen
        producers_seen |= producers
        frontier = []
        for event in store.get_events_by_execution_ids(list(producers)) if producers else []:
            if event.artifact_id in protected:
                continue
            protected.add(event.artifact_id)
            if event.type in inputs:
                frontier.append(event.artifact_id)
    return protected | _statistics_of(store, protected, inputs, outputs)


def _statistics_of(store: Any, artifact_ids: set[int], inputs: tuple[int, ...], outputs: tuple[int, ...]) -> set[int]:
    """The statistics computed from these artifacts' examples (``lineage`` shows the StatisticsGen of a model's
    examples); not every StatisticsGen that read the shared schema."""
    types = {t.name: t.id for t in store.get_artifact_types()}
    examples = [a.id for a in store.get_artifacts_by_id(list(artifact_ids)) if a.type_id == types.get("Examples")]
    if not examples:
        return set()
    readers = {e.execution_id for e in store.get_events_by_artifact_ids(examples) if e.type in inputs}
    if not readers:
        return set()
    written = [e.artifact_id for e in store.get_events_by_execution_ids(list(readers)) if e.type in outputs]
    return {a.id for a in store.get_artifacts_by_id(written) if a.type_id == types.get(_STATISTICS_TYPE)}


def _baselines(store: Any) -> set[int]:
    """The newest blessed model (and its blessing) of each Evaluator: what TFX's baseline resolver picks next."""
    newest: dict[str, Any] = {}
    for blessing in store.get_artifacts_by_type("ModelBlessing"):
        blessed = blessing.custom_properties.get(_BLESSED)
        if blessed is None or blessed.int_value != 1:
            continue
        for node in _nodes_of_producer(store, blessing.id):
            if node not in newest or blessing.id > newest[node].id:
                newest[node] = blessing
    protected = set()
    for blessing in newest.values():
        protected.add(blessing.id)
        if _MODEL_ID in blessing.custom_properties:
            protected.add(blessing.custom_properties[_MODEL_ID].int_value)
    return protected


def _nodes_of_producer(store: Any, artifact_id: int) -> list[str]:
    """The names of the ``node`` contexts (``<pipeline>.<component id>``) of the execution that wrote an artifact."""
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == e.OUTPUT]
    if not producers:
        return []
    node_type = store.get_context_type("node").id
    return [c.name for c in store.get_contexts_by_execution(min(producers)) if c.type_id == node_type]


def _execution_folders(store: Any, execution: Any, pipeline_name: str, root: str, kept_uris: set[str]) -> list[Removal]:
    """TFX's per-execution folders (``<root>/<node>/.system/*/<id>``) and output folders ML Metadata never
    recorded (an execution killed or failed leaves them), unless something kept lives there."""
    if fs.is_remote(root):
        return []  # listing every node folder on an object store is costly; the artifacts are what weighs
    prefix = f"{pipeline_name}."
    nodes = [c.name[len(prefix) :] for c in store.get_contexts_by_execution(execution.id) if c.name.startswith(prefix)]
    removals = []
    for node in nodes:
        folder = Path(root) / node
        for path in [*folder.glob(f".system/*/{execution.id}"), *folder.glob(f"*/{execution.id}")]:
            real = os.path.realpath(path)
            if any(uri == real or uri.startswith(real + os.sep) for uri in kept_uris):
                continue
            if store.get_artifacts_by_uri(str(path)):  # a recorded artifact: decided by its own rules
                continue
            removals.append(Removal(str(path), _size(str(path)), "execution folder"))
    return removals


def _plan_run_files(config: PipelineConfig, plan: PrunePlan, oldest_kept: float) -> None:
    """Reports and logs of pruned runs, and of no-op runs (never recorded in ML Metadata) older than every kept run."""
    from twinflow.pipelines.run.log import log_path

    kept = {name.replace(":", "-") for name in plan.kept_runs}
    pruned = {name.replace(":", "-") for name in plan.pruned_runs}
    folders = {"report": fs.join(config.pipeline_root, "reports"), "log": str(log_path(config, "x").parent)}
    if fs.is_remote(config.pipeline_root):
        folders["remote log"] = fs.join(config.pipeline_root, "logs")
    for what, folder in folders.items():
        if not fs.isdir(folder):
            continue
        for name in sorted(fs.listdir(folder)):
            run = name.removesuffix(".log")
            path = fs.join(folder, name)
            if run in kept:
                continue
            if run in pruned or _modified(path) < oldest_kept:
                plan.removals.append(Removal(path, _size(path), what.removeprefix("remote ")))


def _plan_ticks(config: PipelineConfig, plan: PrunePlan, cutoff: float) -> None:
    """``schedule --local``'s tick logs and summaries older than the cutoff."""
    from twinflow.pipelines.retraining.scheduler import schedule_folder

    logs = Path(schedule_folder(config.pipeline_root)) / "logs"
    if not logs.is_dir():
        return
    for path in sorted(logs.glob("tick-*")):
        if path.is_file() and path.stat().st_mtime < cutoff:
            plan.removals.append(Removal(str(path), path.stat().st_size, "tick file"))


def apply_prune(config: PipelineConfig, plan: PrunePlan) -> None:
    """Mark the artifacts DELETED in ML Metadata, then remove every planned path."""
    ids = [r.artifact_id for r in plan.removals if r.artifact_id is not None]
    if ids:
        from ml_metadata import metadata_store

        store = metadata_store.MetadataStore(connection_config(config.metadata_uri, config.metadata_path))
        artifacts = store.get_artifacts_by_id(ids)
        for artifact in artifacts:
            artifact.state = artifact.DELETED
        store.put_artifacts(artifacts)
    io = fs.gfile() if fs.is_remote(config.pipeline_root) else None
    for removal in plan.removals:
        _remove(removal.path, io)


def _remove(path: str, io: Any) -> None:
    if fs.is_remote(path):
        io = io or fs.gfile()
        if io.isdir(path):
            io.rmtree(path)
        elif io.exists(path):
            io.remove(path)
        return
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _inside(uri: str, root: str) -> bool:
    """Only what lies under the pipeline root is ever removed."""
    if fs.is_remote(root) or fs.is_remote(uri):
        return uri.startswith(root.rstrip("/") + "/")
    return os.path.realpath(uri).startswith(os.path.realpath(root) + os.sep)


def _size(path: str) -> int:
    if fs.is_remote(path):
        io = fs.gfile()
        if not io.exists(path):
            return 0
        return fs.directory_size(path) if io.isdir(path) else io.stat(path).length
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _modified(path: str) -> float:
    try:
        return fs.modified_ns(path) / 1e9
    except Exception:  # gone meanwhile: nothing to remove
        return time.time()


def format_plan(plan: PrunePlan, keep_runs: int, dry_run: bool) -> str:
    """One summary line and, for a dry run, every path."""
    verb = "would remove" if dry_run else "removed"
    parts = [
        f"{plan.count(kind)} {label}"
        for kind, label in (
            ("artifact", "artifact folders"),
            ("report", "reports"),
            ("log", "logs"),
            ("execution folder", "execution folders"),
            ("tick file", "tick files"),
        )
        if plan.count(kind)
    ]
    line = (
        f"prune-runs: {verb} {', '.join(parts) or 'nothing'} ({plan.bytes / 1e6:.1f} MB) of "
        f"{len(plan.pruned_runs)} older run(s); kept whole the newest {min(keep_runs, len(plan.kept_runs))} "
        f"run(s) and those that pushed a version in the serving folder ({len(plan.kept_runs)} run(s) in all)"
    )
    if not dry_run:
        return line
    return "\n".join([line, *(f"  {r.what}: {r.path} ({r.bytes / 1e3:.0f} KB)" for r in plan.removals)])
