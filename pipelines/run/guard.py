"""What a local run checks before TFX starts: one run at a time, inputs that can work, anything new to do.

- **One run at a time.** A run holds a lock on its ML Metadata store and on its serving
  folder; a second run on either is refused at once, naming the holder.
- **Pre-flight.** The folder's layout, its classes and the schema's label domain are checked
  before TensorFlow loads, and the serving folder must be writable.
- **Nothing changed.** A run's inputs are its data (by content: see
  ``components.image_example_gen.file_hashes``), its schema, the config that shapes what is
  trained and judged (seed included; not where things are kept), and twinflow's own code. The
  pusher records them in each version's model card (``run_fingerprint``). A run whose inputs
  equal those of the version each framework serves (or of the last completed run here, when
  that run left each framework's served version as it is now: not pushed, or already pushed)
  does nothing: training is not bit-reproducible, so "identical" is defined by the inputs. It
  says so and which versions are served; ``--force`` runs anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinflow.components.image_example_gen.file_hashes import CACHE_FILE, FileHashes
from twinflow.components.image_example_gen.ingest import check_classes
from twinflow.components.image_example_gen.listing import Listing, list_input
from twinflow.core import fs
from twinflow.core.config import PipelineConfig
from twinflow.core.errors import ConfigError, InputDataError, ModelCardError
from twinflow.core.locks import hold
from twinflow.core.packages import NAMESPACE, PACKAGES
from twinflow.core.spans import Span
from twinflow.model_store.lock import hold_serving_folder
from twinflow.pipelines.run.shared_lock import hold_shared_store

if TYPE_CHECKING:
    from twinflow.pipelines.report.model import Report

LAST_RUN_FILE = "last_run.json"
# Config keys that say where things are kept or how the run is carried out, not what it trains on or
# how it judges: left out of the run's inputs. (The data and schema enter by content instead.)
NOT_INPUTS = frozenset(
    {
        "pipeline_name",
        "data_dir",
        "data_root",
        "schema_path",
        "pipeline_root",
        "metadata_path",
        "metadata_uri",
        "serving_dir",
        "enable_cache",
        "beam_args",
        "accept_drift",
        "keep_versions",
        "keep_runs",
        "kubeflow",
        "serving",
    }
)


@contextlib.contextmanager
def exclusive_run(config: PipelineConfig) -> Iterator[None]:
    """Hold the metadata store and the (local) serving folder for this run; refuse if another run holds either.

    A shared ``mysql://`` store is held on its server (runs on other machines are kept out too)
    instead of by a file beside ``metadata_path``, which it does not use.
    """
    with contextlib.ExitStack() as stack:
        if config.metadata_uri:
            stack.enter_context(hold_shared_store(config.metadata_uri, config.pipeline_name))
        else:
            stack.enter_context(hold(config.metadata_path))
        stack.enter_context(hold_serving_folder(config.serving_dir))
        yield


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
    from twinflow.pipelines.schema_draft import schema_classes

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
    served: dict[str, int | None] = field(default_factory=dict)  # framework → version served after the run


def fingerprint_data(config: PipelineConfig, listing: Listing) -> str:
    """The data's fingerprint by content, through the pipeline root's hash cache (``data_hashes.json``):
    files whose stamp did not change since they were hashed are not read again."""
    hashes = FileHashes(fs.join(config.pipeline_root, CACHE_FILE))
    started = time.perf_counter()
    fingerprint = listing.fingerprint(hashes)
    hashes.save(config.input_base)
    if hashes.read:
        print(
            f"[run] data fingerprinted by content: {hashes.read:,} of {len(listing.files):,} files read "
            f"({hashes.reused:,} unchanged since last hashed) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return fingerprint


def run_inputs(config: PipelineConfig) -> dict[str, Any]:
    """The config that shapes what a run trains and how it judges it: every key but :data:`NOT_INPUTS`."""
    values = config.model_dump(mode="json", exclude=set(NOT_INPUTS))
    values["framework"] = list(config.frameworks)  # 'both' and 'keras,lightning' are one choice
    return values


def run_fingerprint(config: PipelineConfig, data_fingerprint: str, schema_path: str) -> str:
    """Data (by content), schema, config and twinflow's own code: a run is a no-op only when none of them changed."""
    digest = hashlib.sha256()
    digest.update(json.dumps(run_inputs(config), sort_keys=True).encode())
    digest.update(data_fingerprint.encode())
    digest.update(fs.read_text(schema_path).encode())
    digest.update(code_fingerprint().encode())
    if config.training.model_module:  # your model's code is an input too: an edited module trains again
        from twinflow.trainers.user_model import module_sha256

        digest.update(module_sha256(config.training.model_module).encode())
    return digest.hexdigest()


def package_folders() -> dict[str, Path]:
    """Where Python imports each twinflow package from (twinflow.core.packages lists them)."""
    folders = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(f"{NAMESPACE}.{package}")
        if spec and spec.submodule_search_locations:
            folders[package] = Path(next(iter(spec.submodule_search_locations)))
    return folders


def code_fingerprint(folders: dict[str, Path] | None = None) -> str:
    """Every Python file of every twinflow package (``folders``: where each is; by default, where Python imports
    it from), by name and content."""
    digest = hashlib.sha256()
    for package, folder in sorted((package_folders() if folders is None else folders).items()):
        for source in sorted(folder.rglob("*.py")):
            digest.update(f"{package}/{source.relative_to(folder).as_posix()}\n".encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


def _last_run_path(config: PipelineConfig) -> str:
    return fs.join(config.pipeline_root, LAST_RUN_FILE)


@dataclass(frozen=True)
class Unchanged:
    """Why a run has nothing to do: the run whose inputs equal this one's, and its report (if kept here)."""

    run_id: str | None
    finished: str | None
    report: str | None


def unchanged_since(config: PipelineConfig, fingerprint: str) -> Unchanged | None:
    """What this run would repeat, when every framework serves a version trained on these very inputs, or
    serves what it served after the last completed run here, which had these inputs; else None.

    The served version's own record decides (its model card's ``run_fingerprint``), so a rollback,
    another pipeline root pushing to the same serving folder, or data changed and changed back
    are judged by what is served. The last run covers frameworks it did not push (not blessed,
    not better, already pushed): the same inputs against the same served version decide the same.
    """
    if not config.enable_cache:
        return None
    last = last_run(config)
    if last is None or last.fingerprint != fingerprint:
        last = None
    elif config.metadata_uri is None and not Path(config.metadata_path).exists():
        last = None  # its records went with the store
    pushed_by: list[Unchanged] = []
    for framework in config.frameworks:
        served, pushed = _served_inputs(fs.join(config.serving_dir, framework), fingerprint)
        if pushed is not None:
            pushed_by.append(pushed)
        elif last is None or framework not in last.served or last.served[framework] != served:
            return None
    if last is not None:
        return Unchanged(last.run_id, last.finished, last.report)
    latest = max(pushed_by, key=lambda pushed: pushed.finished or "")
    report = report_dir(config.pipeline_root, latest.run_id) if latest.run_id else None
    return Unchanged(latest.run_id, latest.finished, report if report and fs.exists(report) else None)


def _served_inputs(model_root: str, fingerprint: str) -> tuple[int | None, Unchanged | None]:
    """The served version's number, and (when it or the canary was trained on ``fingerprint``) its push."""
    from twinflow.core.model_card import read_model_card
    from twinflow.model_store.layout import CANARY, complete_versions, read_labels, served_version

    served = served_version(model_root)
    number = served.number if served else None
    canary = read_labels(model_root).get(CANARY)
    candidates = [served, *[v for v in complete_versions(model_root) if v.number == canary]]
    for version in (v for v in candidates if v is not None):
        try:
            card = read_model_card(version.path)
        except ModelCardError:
            continue
        if card.run_fingerprint == fingerprint:
            return number, Unchanged(card.data.run_id if card.data else None, card.pushed_at, None)
    return number, None


def report_dir(pipeline_root: str, run_id: str) -> str:
    """Where a run's report is written: ``<pipeline_root>/reports/<run id>`` (here, where no TFX is loaded)."""
    return fs.join(pipeline_root, "reports", run_id.replace(":", "-"))


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


REDO_SPAN, REDO_FORCED = "redo_span", "redo_forced"  # what a redo notes on its run (history shows it)


def check_redo(config: PipelineConfig, run_input: RunInput, span: int, force: bool) -> dict[str, int]:
    """``retrain --redo-span N``: N must be the newest span (what a retrain reads); one that pushed needs ``force``.

    A completed run uses its newest span up (``has_new_data``), pushed or not; a redo runs it again,
    e.g. after a config mistake left it without a push. Returns the note the run keeps in ML Metadata.
    """
    from twinflow.model_store.published import pushes_on_span

    if not run_input.spans:
        raise ConfigError(
            "--redo-span needs --data-root (data arriving in spans); 'twinflow run' re-runs a fixed folder"
        )
    newest = run_input.spans[-1]
    if span != newest.number:
        raise ConfigError(
            f"--redo-span {span}: the newest span of {config.input_base} is {newest.number}, and a retrain reads the "
            f"newest span(s); only span {newest.number} can be redone (a plain retrain trains on a newer span anyway)"
        )
    pushes = pushes_on_span(config.serving_dir, config.frameworks, span)
    if pushes and not force:
        pushed = ", ".join(f"{p.framework} version {p.number} (run {p.run_id})" for p in pushes)
        raise ConfigError(
            f"--redo-span {span}: span {span} already pushed {pushed}; --redo-span re-runs a span that produced no "
            "push. To train on it again anyway, add --force (a new push is judged against what is served, as always)"
        )
    return {REDO_SPAN: span, REDO_FORCED: int(bool(pushes))}


def record_run(
    config: PipelineConfig, fingerprint: str, report: Report, report_folder: str, run_input: RunInput
) -> None:
    from twinflow.model_store.layout import served_version

    pushed = {row.framework: row.pushed_to for row in report.frameworks}
    served = {name: served_version(fs.join(config.serving_dir, name)) for name in config.frameworks}
    last = LastRun(
        fingerprint,
        str(report.run_id),
        time.strftime("%Y-%m-%d %H:%M:%S"),
        pushed,
        report_folder,
        [s.number for s in run_input.spans],
        run_input.latest,
        {name: version.number if version else None for name, version in served.items()},
    )
    fs.write_text(_last_run_path(config), json.dumps(last.__dict__, indent=1))
