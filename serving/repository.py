"""The models a server holds, kept in step with the serving folder without a restart.

Each poll looks at ``<serving_dir>/<model>/``: with version labels (``_labels.json``) the
labelled versions are served, otherwise the newest complete one, as TF Serving's default
policy does. A version is loaded and warmed completely before it is swapped in, in one
assignment; requests already holding the old one finish on it, and it is released when the
last of them drops it. A version that cannot be loaded is logged with its reason, never
tried again (versions do not change once complete), and whatever served before keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from twinflow.core import fs
from twinflow.model_store.layout import COMPLETE_MARKER, STABLE, complete_versions, read_labels, version_numbers
from twinflow.serving.errors import ServingError, not_found
from twinflow.serving.models import ServedModel, load_version

log = logging.getLogger("twinflow.serving")
Loader = Callable[[str], ServedModel]


@dataclass(frozen=True)
class ModelState:
    """One model name's served versions and labels, replaced whole on every change (never mutated)."""

    versions: dict[int, ServedModel] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    def default_version(self) -> int | None:
        """Unversioned requests: the stable label's version when labels are in use, else the newest."""
        if self.labels.get(STABLE) in self.versions:
            return self.labels[STABLE]
        return max(self.versions) if self.versions else None


class ModelRepository:
    """Thread-safe lookups for request handlers; ``poll`` (or the watcher thread) follows the folder."""

    def __init__(self, serving_dir: str, loader: Loader = load_version):
        self.serving_dir = str(serving_dir)
        self._loader = loader
        self._states: dict[str, ModelState] = {}
        # (model, version) → why it is not served, and its marker's time: a push that replaces the
        # folder under the same number (between two polls) has a new marker and is tried again.
        self._failed: dict[tuple[str, int], tuple[str, int | None]] = {}
        self._waiting: set[tuple[str, int]] = set()  # incomplete versions already logged
        self._kept: dict[str, tuple[list[int], list[int]]] = {}  # name → (kept, unservable) last warned about
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    # -- lookups (request threads) ------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(name for name, state in self._states.items() if state.versions)

    def state(self, name: str) -> ModelState:
        return self._states.get(name) or ModelState()

    def failures(self, name: str) -> dict[int, str]:
        return {version: why for (model, version), (why, _) in self._failed.items() if model == name}

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> tuple[int, ServedModel]:
        """The version a request names (or the default one), with TF Serving's NOT_FOUND wording."""
        state = self._states.get(name)
        if state is None or not state.versions:
            wanted = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise not_found(f"Servable not found for request: {wanted}")
        if label is not None:
            if label not in state.labels:
                raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
            version = state.labels[label]
        if version is None:
            version = state.default_version()
        model = state.versions.get(version) if version is not None else None
        if model is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return version, model

    def ready(self) -> bool:
        """Every model found in the folder has at least one version loaded."""
        return bool(self._states) and all(state.versions for state in self._states.values())

    # -- following the folder -------------------------------------------------------------------
    def poll(self) -> None:
        """Bring every model in line with the folder (one poll at a time)."""
        with self._poll_lock:
            self.polls += 1
            for name in self._model_names():
                try:
                    self._poll_model(name)
                except Exception as err:  # a broken folder must not stop the others or the watcher
                    log.error("%s: could not read its serving folder: %s", name, err)

    def _model_names(self) -> list[str]:
        if not fs.isdir(self.serving_dir):
            return []
        return sorted(
            name
            for name in fs.listdir(self.serving_dir)
            if not name.startswith((".", "_")) and version_numbers(fs.join(self.serving_dir, name))
        )

    def _poll_model(self, name: str) -> None:
        root = fs.join(self.serving_dir, name)
        complete = {v.number: v.path for v in complete_versions(root)}
        present = set(version_numbers(root))
        for key, (_, marked) in list(self._failed.items()):
            if key[0] == name and (key[1] not in present or _marker_time(complete.get(key[1])) != marked):
                del self._failed[key]  # removed, or replaced by a new push: no longer reported, tried again
        for number in present - set(complete):
            if (name, number) not in self._waiting:
                self._waiting.add((name, number))
                log.info("%s: version %s is not complete yet (no marker); not loaded", name, number)
        try:
            labels = {k: v for k, v in read_labels(root).items() if v in complete}
        except ValueError as err:
            log.error("%s: %s; labels ignored, serving the newest version", name, err)
            labels = {}
        wanted = set(labels.values()) if labels else ({max(complete)} if complete else set())
        current = self.state(name)
        versions = {n: m for n, m in current.versions.items() if n in wanted}
        for number in sorted(wanted - set(versions)):
            model = self._load(name, number, complete[number])
            if model is not None:
                versions[number] = model
        if not versions:  # nothing wanted could be loaded: keep serving what was served
            if current.versions and wanted - set(current.versions):
                kept = (sorted(current.versions), sorted(wanted - set(current.versions)))
                if self._kept.get(name) != kept:  # once per situation, not on every poll while it lasts
                    self._kept[name] = kept
                    log.warning("%s: keeping version(s) %s instead of %s", name, *kept)
            versions, labels = dict(current.versions), current.labels
        else:
            self._kept.pop(name, None)
        if versions != current.versions or labels != current.labels:
            self._states[name] = ModelState(versions, labels)  # one assignment: requests see old or new
            log.info("%s: serving version(s) %s%s", name, sorted(versions), f", labels {labels}" if labels else "")

    def _load(self, name: str, number: int, path: str) -> ServedModel | None:
        if (name, number) in self._failed:
            return None
        try:
            model = self._loader(path)
            model.warm_up()
        except Exception as err:
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
            self._failed[(name, number)] = (reason, _marker_time(path))
            log.error("%s: version %s cannot be served and is skipped: %s", name, number, reason)
            return None
        log.info("%s: version %s loaded and warmed", name, number)
        return model

    def start(self, poll_seconds: float) -> None:
        """Poll once now, then every ``poll_seconds`` in a daemon thread until ``stop``."""
        self.poll()

        def watch() -> None:
            while not self._stop.wait(poll_seconds):
                self.poll()

        self._thread = threading.Thread(target=watch, name="twinflow-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _marker_time(version_path: str | None) -> int | None:
    """When the version's completion marker was written; None when there is none (or it just went)."""
    if version_path is None:
        return None
    try:
        return fs.modified_ns(fs.join(version_path, COMPLETE_MARKER))
    except Exception as err:  # removed between listing and stat (OSError here, NotFoundError remote)
        log.debug("no completion marker time for %s: %s", version_path, err)
        return None
