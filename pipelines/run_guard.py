"""What a local run checks before TFX starts: one run at a time, inputs that can work, anything new to do.

- **One run at a time.** A run holds a lock on its ML Metadata store and on its serving
  folder; a second run on either is refused at once, naming the holder.
- **Pre-flight.** The folder's layout, its classes and the schema's label domain are checked
  before TensorFlow loads, and the serving folder must be writable.
- **Nothing changed.** A run whose config, data, schema and code equal those of the last
  completed run, whose pushed versions are all still served, does nothing: it says so and
  which versions are served (TFX would otherwise re-run both Evaluators, whose baseline
  input is now the very model they judge).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from components.image_example_gen.ingest import check_classes
from components.image_example_gen.listing import Listing, list_input
from core import fs
from core.config import PipelineConfig
from core.errors import ConfigError, InputDataError, RunLockedError
from core.spans import Span
from pipelines.shared_lock import hold_shared_store

LOCK_SUFFIX = ".twinflow.lock"
LAST_RUN_FILE = "last_run.json"
_CODE_PACKAGES = ("core", "components", "trainers", "pipelines")


def _lock_path(target: str, suffix: str = LOCK_SUFFIX) -> str:
    """The lock file sits beside the metadata file or serving folder (a server watching the folder never sees it)."""
    return os.path.normpath(target) + suffix


@contextlib.contextmanager
def exclusive_run(config: PipelineConfig) -> Iterator[None]:
    """Hold the metadata store and the (local) serving folder for this run; refuse if another run holds either.

    A shared ``mysql://`` store is held on its server (runs on other machines are kept out too)
    instead of by a file beside ``metadata_path``, which it does not use.
    """
    targets = [] if config.metadata_uri else [config.metadata_path]
    targets += [] if fs.is_remote(config.serving_dir) else [config.serving_dir]
    with contextlib.ExitStack() as stack:
        if config.metadata_uri:
            stack.enter_context(hold_shared_store(config.metadata_uri, config.pipeline_name))
        for target in targets:
            stack.enter_context(hold(target))
        yield


_BUSY = (
    "another twinflow run is using {target}: {holder}. Wait for it to finish, or stop it; "
    "two runs on one metadata store or serving folder would mix their results"
)


@contextlib.contextmanager
def hold(target: str, *, suffix: str = LOCK_SUFFIX, busy: str = _BUSY) -> Iterator[None]:
    """Hold a file lock beside ``target`` (``target + suffix``) and say who holds it; refuse at once if held.

    Another suffix makes another lock on the same target (the scheduler's ``.schedule.lock``
    never blocks the run it starts). ``busy`` is the refusal, formatted with ``target`` and ``holder``.
    """
    path = _lock_path(target, suffix)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    holder_file = Path(path + ".holder")
    lock = filelock.FileLock(path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise RunLockedError(busy.format(target=target, holder=_read_holder(holder_file))) from None
    try:
        holder_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": " ".join(["twinflow", *sys.argv[1:]])[:300],
                }
            )
        )
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def _read_holder(holder_file: Path) -> str:
    try:
        holder = json.loads(holder_file.read_text())
    except (OSError, ValueError):
        return "a process that has not said who it is"
    return f"pid {holder['pid']} on {holder['host']}, started {holder['started']} ({holder['command']})"


@dataclass(frozen=True)
class RunInput:
    """What a run reads: the listing of its images and, for a data root, the spans in its window."""

    listing: Listing
    spans: list[Span]

    @property
    def latest(self) -> tuple[int, int] | None:
        """(span, version) of the newest span read; None for a fixed folder."""
        if not self.spans:
            return None
        return self.spans[-1].number, self.spans[-1].version or 0


def list_run_input(config: PipelineConfig) -> RunInput:
    listing, spans = list_input(config.input_base, config.span_pattern if config.data_root else "", config.spans)
    return RunInput(listing, spans)


def preflight(config: PipelineConfig, schema_path: str) -> RunInput:
    """Layout, classes and schema checked before TensorFlow loads; the serving folder must be writable."""
    run_input = list_run_input(config)
    listing = run_input.listing
    check_classes(listing.class_names, listing.class_counts(), config.input_base)
    _check_schema_classes(config, schema_path, listing.class_names)
    _check_writable(config.serving_dir, "serving folder", "--serving-dir", "blessed models could not be pushed")
    _check_writable(config.pipeline_root, "pipeline root", "--pipeline-root", "the run's artifacts would have no place")
    return run_input


def _check_schema_classes(config: PipelineConfig, schema_path: str, class_names: list[str]) -> None:
    from pipelines.schema_draft import schema_classes

    expected = schema_classes(schema_path)
    if expected == class_names:
        return
    name = Path(config.input_base.rstrip("/")).name or "my_data"
    unknown = [c for c in class_names if c not in expected]
    missing = [c for c in expected if c not in class_names]
    detail = "; ".join(
        part
        for part in (
            f"classes not in the schema: {unknown}" if unknown else "",
            f"schema classes with no folder: {missing}" if missing else "",
        )
        if part
    )
    raise InputDataError(
        f"the classes in {config.input_base} do not match the schema {schema_path} ({detail}). "
        "For your own images, draft a schema, review it, and pass it:\n"
        f"  twinflow draft-schema --data-dir {config.data_dir} --out schemas/{name}/schema.pbtxt\n"
        f"  twinflow run --data-dir {config.data_dir} --schema schemas/{name}/schema.pbtxt ..."
    )


def _check_writable(folder: str, what: str, flag: str, consequence: str) -> None:
    problem = fs.unwritable_local_folder(folder)
    if problem:
        raise ConfigError(
            f"the {what} {folder} is not writable ({problem}): {consequence}; pass {flag} with a writable folder"
        )


@dataclass(frozen=True)
class LastRun:
    """The last completed run of a pipeline root: what it was run on and what it left served."""

    fingerprint: str
    run_id: str
    finished: str
    pushed: dict[str, str | None]  # framework → pushed version folder (None: not pushed)
    report: str
    spans: list[int] = field(default_factory=list)  # the window read (data root runs)
    latest_span: tuple[int, int] | None = None  # (span, version) of the newest span read


def run_fingerprint(config: PipelineConfig, data_fingerprint: str, schema_path: str) -> str:
    """Config, data, schema and twinflow's own code: a run is a no-op only when none of them changed."""
    digest = hashlib.sha256()
    digest.update(config.model_dump_json().encode())
    digest.update(data_fingerprint.encode())
    digest.update(Path(schema_path).read_bytes())
    root = Path(__file__).resolve().parent.parent
    for package in _CODE_PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            digest.update(source.read_bytes())
    return digest.hexdigest()


def _last_run_path(config: PipelineConfig) -> str:
    return fs.join(config.pipeline_root, LAST_RUN_FILE)


def unchanged_since(config: PipelineConfig, fingerprint: str) -> LastRun | None:
    """The last run, if this one would repeat it exactly and everything it pushed is still served."""
    from core.versions import is_complete

    if not config.enable_cache or (config.metadata_uri is None and not Path(config.metadata_path).exists()):
        return None
    last = last_run(config)
    if last is None:
        return None
    if last.fingerprint != fingerprint or set(last.pushed) != set(config.frameworks):
        return None
    if any(version is not None and not is_complete(version) for version in last.pushed.values()):
        return None
    return last


def last_run(config: PipelineConfig) -> LastRun | None:
    """The last completed run recorded under the pipeline root, if any."""
    path = _last_run_path(config)
    if not fs.exists(path):
        return None
    try:
        values = json.loads(fs.read_text(path))
        if values.get("latest_span") is not None:
            values["latest_span"] = tuple(values["latest_span"])
        return LastRun(**values)
    except (ValueError, TypeError, AttributeError):
        return None


def has_new_data(config: PipelineConfig, run_input: RunInput) -> tuple[bool, LastRun | None]:
    """A retrain has work only when its newest span (or that span's version) is newer than the last completed run's."""
    last = last_run(config)
    if last is None or last.latest_span is None or run_input.latest is None:
        return True, last
    return run_input.latest > last.latest_span, last


def record_run(
    config: PipelineConfig, fingerprint: str, report: dict[str, Any], report_dir: str, run_input: RunInput
) -> None:
    pushed = {row["framework"]: row.get("pushed_to") for row in report["frameworks"]}
    last = LastRun(
        fingerprint,
        report["run_id"],
        time.strftime("%Y-%m-%d %H:%M:%S"),
        pushed,
        report_dir,
        [s.number for s in run_input.spans],
        run_input.latest,
    )
    fs.write_text(_last_run_path(config), json.dumps(last.__dict__, indent=1))
