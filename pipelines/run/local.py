"""Run the pipeline with TFX's LocalDagRunner on an embedded SQLite ML Metadata store.

Before TFX starts (and before TensorFlow loads): the run takes its locks, checks its inputs,
and stops at once when nothing changed since the last completed run. The report is built
from this run's own records in ML Metadata, by its run id.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from twinflow.core import fs
from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError
from twinflow.core.metadata import connection_config
from twinflow.core.spans import describe_spans
from twinflow.pipelines.report.model import Report
from twinflow.pipelines.run.guard import (
    REDO_FORCED,
    REDO_SPAN,
    LastRun,
    RunInput,
    Unchanged,
    check_redo,
    exclusive_run,
    fingerprint_data,
    has_new_data,
    preflight,
    record_run,
    report_dir,
    run_fingerprint,
    unchanged_since,
)
from twinflow.pipelines.run.log import log_path, run_log
from twinflow.pipelines.run.shared_lock import check_store
from twinflow.schemas import default_schema_path

if TYPE_CHECKING:
    from ml_metadata.proto import metadata_store_pb2


class ComponentProgress(threading.Thread):
    """Prints each component's start and end, read from ML Metadata while the run goes on.

    Polling the store (not LocalDagRunner's log lines) keeps working when libraries
    change absl's verbosity mid-run, as TensorFlow's checkpoint code does.
    """

    def __init__(self, metadata: metadata_store_pb2.ConnectionConfig, pipeline_name: str, interval: float = 1.0):
        super().__init__(daemon=True)
        self._metadata = metadata
        self._prefix = f"{pipeline_name}."
        self._interval = interval
        self._stop_event = threading.Event()
        self._seen: dict[int, int] = {}
        self._first_id: int | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.poll()  # the last component's end

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                self.poll()
            except Exception:  # a busy SQLite store: try again next tick
                continue

    def poll(self) -> None:
        from ml_metadata import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        store = metadata_store.MetadataStore(self._metadata)
        executions = store.get_executions()
        if self._first_id is None:
            self._first_id = max((e.id for e in executions), default=0)
            return
        for execution in sorted(executions, key=lambda e: e.id):
            state = execution.last_known_state
            if execution.id <= self._first_id or self._seen.get(execution.id) == state:
                continue
            self._seen[execution.id] = state
            contexts = [
                c.name for c in store.get_contexts_by_execution(execution.id) if c.name.startswith(self._prefix)
            ]
            node = contexts[0][len(self._prefix) :] if contexts else execution.name
            name = metadata_store_pb2.Execution.State.Name(state).lower()
            took = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
            done = state in (
                metadata_store_pb2.Execution.COMPLETE,
                metadata_store_pb2.Execution.CACHED,
                metadata_store_pb2.Execution.FAILED,
            )
            print(f"[{time.strftime('%H:%M:%S')}] {node}: {name}{f' ({took:.1f} s)' if done else ''}", flush=True)


@contextlib.contextmanager
def host_argv_hidden() -> Iterator[None]:
    """Keep TFX's Beam executors from parsing this process's command line as absl flags.

    BaseBeamExecutor calls ``flags.FLAGS(sys.argv + beam_args)`` (TFX's own TODO
    b/174174381), so a host started as ``pytest -v tests`` fails with
    "flag --verbosity=tests". The pipeline's own Beam arguments are still applied.
    """
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def new_run_id() -> str:
    """Like LocalDagRunner's own run ids (ISO time), but chosen here so the report can find its run."""
    return datetime.datetime.now().isoformat()


def run_local(
    config: PipelineConfig,
    log: bool = False,
    verbose: bool = False,
    only_new_data: bool = False,
    redo_span: int | None = None,
    force: bool = False,
) -> Report:
    """Run every component, then build, print and save the results report.

    With ``log``, TensorFlow's and TFX's own output go to the run's log file (and to the
    terminal too with ``verbose``). A run whose inputs equal those of what is served
    returns that run's report (run_guard.unchanged_since); with ``only_new_data``
    (``twinflow retrain``), so does one whose newest span was already trained on, whatever
    else changed. ``force`` runs anyway, every component again (TFX's cache unused).
    ``redo_span`` runs the newest span again, recorded as a redo (refused when it pushed, unless ``force``).
    """
    fs.touches_s3(config.pipeline_root, config.serving_dir, config.input_base)
    if force:
        config = config.model_copy(update={"enable_cache": False})
    schema_path = config.schema_path or str(default_schema_path())
    run_input = preflight(config, schema_path)
    listing = run_input.listing
    check_store(config)
    if config.training.model_module:
        config = with_model_module(config, len(listing.class_names))
    with exclusive_run(config):
        note = check_redo(config, run_input, redo_span, force) if redo_span is not None else {}
        if only_new_data and not force and not note:
            new, last_completed = has_new_data(config, run_input)
            if not new and last_completed is not None:
                return _report_no_new_data(config, run_input, last_completed)
        run_id = new_run_id()
        path = log_path(config, run_id)
        with run_log(path, verbose) if log else contextlib.nullcontext(path):
            data_fingerprint = fingerprint_data(config, listing)
            fingerprint = run_fingerprint(config, data_fingerprint, schema_path)
            unchanged = unchanged_since(config, fingerprint)
            if unchanged is not None:
                return _report_unchanged(config, unchanged)
            what = f"{describe_spans(run_input.spans)} of {config.input_base}: " if run_input.spans else ""
            print(
                f"[run] {run_id}: {what}{len(listing.files):,} images in {len(listing.class_names)} classes",
                flush=True,
            )
            if log:
                print(f"[run] full log: {path}", flush=True)
            if note:
                forced = " (forced: it had pushed)" if note[REDO_FORCED] else ""
                print(f"[run] a redo of span {note[REDO_SPAN]}{forced}, recorded in the history", flush=True)
            try:
                report, report_folder = _run_tfx(config, run_id, data_fingerprint, fingerprint, note)
            except Exception:  # stopped (drift, data validation, a failed component): a recorded run too
                _keep_runs(config)
                raise
            _keep_runs(config)
        if fs.is_remote(config.pipeline_root) and log:
            fs.gfile().copy(str(path), fs.join(config.pipeline_root, "logs", path.name), overwrite=True)
        record_run(config, fingerprint, report, report_folder, run_input)
        return report


def with_model_module(config: PipelineConfig, num_classes: int) -> PipelineConfig:
    """``--model-module``: its builders checked (imports, tf-keras, output shape), both parameter counts said side by
    side (and whether they can be twins), the frameworks narrowed to those it builds, and a prune variant its Keras
    model cannot take left out, each said so."""
    from twinflow.trainers.user_model import load_user_module, parameter_counts, twins_words, why_not_prunable

    module = load_user_module(str(config.training.model_module))
    frameworks = [name for name in config.frameworks if name in module.frameworks]
    if not frameworks:
        raise ConfigError(
            f"--model-module {module.spec} builds {', '.join(module.frameworks)}, and --framework asks for "
            f"{', '.join(config.frameworks)}: nothing to train"
        )
    shape = (config.training.image_size, config.training.image_size, config.training.channels)
    print("[run] " + twins_words(module, parameter_counts(module, shape, num_classes)), flush=True)
    if len(frameworks) < len(config.frameworks):
        left_out = [name for name in config.frameworks if name not in frameworks]
        print(f"[run] {module.spec} has no builder for {', '.join(left_out)}: training {', '.join(frameworks)} only")
        config = config.model_copy(update={"framework": ",".join(frameworks)})
    variants = config.optimization.variants
    if "prune" in variants and "keras" in config.frameworks and (why := why_not_prunable(module, shape, num_classes)):
        print(f"[run] {module.spec}: its Keras model cannot be magnitude-pruned ({why}): the prune variant is skipped")
        kept = tuple(v for v in variants if v != "prune")
        config = config.model_copy(update={"optimization": config.optimization.model_copy(update={"variants": kept})})
    return config


def _keep_runs(config: PipelineConfig) -> None:
    """``keep_runs``: prune older runs after this one (under this run's locks); a failure only says so."""
    from twinflow.pipelines.run.retention import format_plan, prune_runs

    if not config.keep_runs:
        return
    try:
        plan = prune_runs(config, config.keep_runs, locked=True)
    except Exception as err:  # the run itself is done: its result stands
        print(f"[prune] could not prune older runs ({type(err).__name__}: {err}); try twinflow prune-runs", flush=True)
        return
    print("[prune] " + format_plan(plan, config.keep_runs, dry_run=False).removeprefix("prune-runs: "), flush=True)


def schema_snapshot(config: PipelineConfig) -> str:
    """The schema, copied to ``<pipeline_root>/schemas/<content hash>.pbtxt``.

    ImportSchemaGen's cache key is its ``schema_file`` path, not the file's content: a schema
    edited in place would be answered from the cache with the old one. A path named by the
    content changes exactly when the schema does.
    """
    source = str(config.schema_path or default_schema_path())
    text = fs.read_text(source)
    target = fs.join(config.pipeline_root, "schemas", hashlib.sha256(text.encode()).hexdigest()[:16] + ".pbtxt")
    if not fs.gfile().exists(target):  # written aside and renamed: a killed run leaves no half-written schema
        fs.gfile().makedirs(fs.join(config.pipeline_root, "schemas"))
        fs.write_text(target + ".partial", text)
        fs.gfile().rename(target + ".partial", target, overwrite=True)
    return target


def _run_tfx(
    config: PipelineConfig, run_id: str, data_fingerprint: str, fingerprint: str, note: dict[str, int] | None = None
) -> tuple[Report, str]:
    """``note``: kept on the run's context in ML Metadata (e.g. a redo), for ``history``."""
    from tfx import v1 as tfx
    from tfx.dsl.compiler import compiler, constants
    from tfx.orchestration.portable import runtime_parameter_utils

    from twinflow.pipelines.definition import create_pipeline
    from twinflow.pipelines.report.build import build_report, write_report
    from twinflow.pipelines.report.markdown import to_markdown
    from twinflow.pipelines.run.record import note_on_run, read_run

    fs.gfile()  # registers s3:// before TFX's own components touch a URI
    if not fs.is_remote(config.pipeline_root):
        Path(config.pipeline_root).mkdir(parents=True, exist_ok=True)
    metadata = connection_config(config.metadata_uri, config.metadata_path)
    if note:
        note_on_run(metadata, config.pipeline_name, run_id, note)
    pipeline = create_pipeline(
        config.model_copy(update={"schema_path": schema_snapshot(config)}),
        data_fingerprint=data_fingerprint,
        metadata_connection_config=metadata,
        run_fingerprint=fingerprint,
    )
    ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    progress = ComponentProgress(metadata, config.pipeline_name)
    progress.poll()
    progress.start()
    started = time.perf_counter()
    stopped: Exception | None = None
    try:
        with host_argv_hidden():
            tfx.orchestration.LocalDagRunner().run_with_ir(ir)
    except Exception as err:
        stopped = err
        raise
    finally:
        progress.stop()
        if stopped is not None:
            _report_stopped_run(config, metadata, run_id, time.perf_counter() - started, stopped)
    wall = time.perf_counter() - started
    record = read_run(metadata, config.pipeline_name, run_id)
    report = build_report(record, config.frameworks, wall, config.model_dump(mode="json"))
    out = write_report(report, config.pipeline_root)
    print("\n" + to_markdown(report.to_json()))
    print(f"report written to {out} (open {fs.join(out, 'report.html')})")
    return report, out


def _report_stopped_run(
    config: PipelineConfig,
    metadata: metadata_store_pb2.ConnectionConfig,
    run_id: str,
    wall: float,
    error: Exception,
) -> None:
    """A run that stopped (drift, data validation, a failed component) keeps a report of what it did, too.

    The drift gate's report (every feature's distance) travels with its DataDriftError, since TFX
    removes a failed component's outputs; it is kept as drift.json beside the report. Never raises:
    the error that stopped the run is what the user must see.
    """
    from twinflow.core.contract import DRIFT_REPORT_FILE
    from twinflow.core.errors import DataDriftError
    from twinflow.pipelines.report.build import build_report, write_report
    from twinflow.pipelines.report.model import Stopped
    from twinflow.pipelines.run.record import read_run

    try:
        record = read_run(metadata, config.pipeline_name, run_id)
        report = build_report(record, config.frameworks, wall, config.model_dump(mode="json"))
        report.stopped = Stopped(
            at=[node.node_id for node in record.nodes.values() if node.state == "FAILED"], reason=str(error)
        )
        drift = error.report if isinstance(error, DataDriftError) else None
        if drift:
            report.drift = drift
        out = write_report(report, config.pipeline_root)
        if drift:
            fs.write_text(fs.join(out, DRIFT_REPORT_FILE), json.dumps(drift, indent=1) + "\n")
    except Exception as problem:  # a run stopped before TFX recorded it, or a report that cannot be built
        print(f"[run] no report of the stopped run ({type(problem).__name__}: {problem})", flush=True)
        return
    print(f"report of the stopped run written to {out} (open {fs.join(out, 'report.html')})", flush=True)


def rebuild_report(config: PipelineConfig, run_id: str | None = None, output: str | None = None) -> str:
    """The report of a past run (the latest without ``run_id``), rebuilt from ML Metadata and its artifacts,
    into ``output`` (default: the run's own report folder)."""
    from twinflow.core.repeats import parse_node_id
    from twinflow.pipelines.report.build import build_report, recorded_config, write_report
    from twinflow.pipelines.run.record import read_run

    check_store(config)  # a store that cannot be opened says so in one line, before TensorFlow loads
    metadata = connection_config(config.metadata_uri, config.metadata_path)
    try:
        record = read_run(metadata, config.pipeline_name, run_id)
    except LookupError as err:
        raise ConfigError(str(err)) from None
    if any(a.state == a.DELETED for node in record.nodes.values() for kept in node.outputs.values() for a in kept):
        raise ConfigError(
            f"run {record.run_id} was pruned (twinflow prune-runs): its models and data are gone, so its report "
            "cannot be rebuilt; 'twinflow history' still shows its test accuracy and decisions"
        )
    trained = {parsed[1] for node in record.nodes if (parsed := parse_node_id(node)) and parsed[0] == "Trainer"}
    order = {name: index for index, name in enumerate(config.frameworks)}
    frameworks = tuple(sorted(trained, key=lambda name: (order.get(name, len(order)), name)))
    wall = sum(node.seconds for node in record.nodes.values())  # the run's own wall time is not in the store
    recorded = recorded_config(config.pipeline_root, record.run_id)  # the run's own config, not today's flags
    report = build_report(record, frameworks, wall, recorded)
    _keep_what_the_stopped_run_kept(report, config.pipeline_root)
    return write_report(report, config.pipeline_root, output)


def _keep_what_the_stopped_run_kept(report: Report, pipeline_root: str) -> None:
    """What a stopped run's own report kept and ML Metadata cannot give back: where it stopped, its drift report."""
    from twinflow.core.contract import DRIFT_REPORT_FILE
    from twinflow.pipelines.report.build import recorded_report
    from twinflow.pipelines.report.model import Stopped

    run_id = str(report.run_id)
    stopped = (recorded_report(pipeline_root, run_id) or {}).get("stopped")
    if stopped:
        report.stopped = Stopped.model_validate(stopped)
    drift = fs.join(report_dir(pipeline_root, run_id), DRIFT_REPORT_FILE)
    if fs.exists(drift):
        report.drift = json.loads(fs.read_text(drift))


def _served(config: PipelineConfig) -> list[str]:
    from twinflow.model_store.layout import served_version

    served = []
    for framework in config.frameworks:
        version = served_version(fs.join(config.serving_dir, framework))
        served.append(f"{framework} version {version.number}" if version else f"{framework}: nothing")
    return served


def _report_no_new_data(config: PipelineConfig, run_input: RunInput, last: LastRun) -> Report:
    """``retrain`` with no span newer than the last completed run's: nothing runs, exit 0."""
    span = run_input.spans[-1]
    print(
        f"no new data: the newest {span.describe()} in {config.input_base} was already trained on by run "
        f"{last.run_id} (finished {last.finished}); nothing was run or pushed. Served: {', '.join(_served(config))} "
        f"(--redo-span {span.number} runs it again unless it pushed; --force runs anyway)",
        flush=True,
    )
    return Report(no_new_data=True, spans=[s.number for s in run_input.spans])


def _report_unchanged(config: PipelineConfig, unchanged: Unchanged) -> Report:
    """Nothing to do: say since when and what is served; return that run's report when it is kept here."""
    report_json = fs.join(unchanged.report, "report.json") if unchanged.report else ""
    kept = bool(report_json) and fs.exists(report_json)
    since = f"run {unchanged.run_id}" if unchanged.run_id else "the served versions were trained"
    finished = f" (finished {unchanged.finished})" if unchanged.finished else ""
    print(
        f"nothing changed since {since}{finished}: same data (by content), config, schema and code; "
        f"nothing was run or pushed. Served: {', '.join(_served(config))}."
        + (f" Report: {unchanged.report}/report.md" if kept else "")
        + " (--force runs anyway)",
        flush=True,
    )
    since = unchanged.run_id or "served"
    if kept:
        try:
            return Report.model_validate(json.loads(fs.read_text(report_json))).model_copy(
                update={"unchanged_since": since}
            )
        except ValueError:  # a report written by an older twinflow: what is served was said above
            pass
    return Report(unchanged_since=since)
