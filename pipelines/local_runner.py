"""Run the pipeline with TFX's LocalDagRunner on an embedded SQLite ML Metadata store."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipelines.config import PipelineConfig
from pipelines.pipeline import count_classes, create_pipeline, input_fingerprint
from pipelines.report import build_report, to_markdown, write_report
from pipelines.run_record import latest_run


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
            suffix = f" ({took:.1f} s)" if state in _DONE_STATES else ""
            print(f"[{time.strftime('%H:%M:%S')}] {node}: {name}{suffix}", flush=True)


_DONE_STATES = (
    metadata_store_pb2.Execution.COMPLETE,
    metadata_store_pb2.Execution.CACHED,
    metadata_store_pb2.Execution.FAILED,
)


@contextlib.contextmanager
def _host_argv_hidden() -> Iterator[None]:
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


def run_local(config: PipelineConfig) -> dict[str, Any]:
    """Run every component, then build, print and save the results report."""
    data_dir = Path(config.data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data directory {data_dir} does not exist; run 'twinflow prepare-data' for Fashion-MNIST "
            "or pass --data-dir pointing at folders of class sub-folders of images"
        )
    Path(config.pipeline_root).mkdir(parents=True, exist_ok=True)
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(str(config.metadata_path))
    pipeline = create_pipeline(
        config,
        num_classes=count_classes(data_dir),
        data_fingerprint=input_fingerprint(data_dir),
        metadata_connection_config=metadata,
    )
    progress = ComponentProgress(metadata, config.pipeline_name)
    progress.poll()
    progress.start()
    started = time.perf_counter()
    try:
        with _host_argv_hidden():
            tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        progress.stop()
    wall = time.perf_counter() - started
    report = build_report(latest_run(metadata, config.pipeline_name), config.frameworks, wall)
    out = write_report(report, Path(config.pipeline_root))
    print("\n" + to_markdown(report))
    print(f"report written to {out}")
    return report
