"""Publishing a model folder as a new version: the one way pushes and rollbacks make a version appear.

Locally the version is assembled in a hidden staging folder and appears in one rename, so
a stock TF Serving watching the folder never loads a partial model. On object stores
(gs://, s3://), where a folder cannot appear in one rename, the version is written in
place and the completion marker is written last; every twinflow reader ignores versions
without it (twinflow.model_store.layout). Imports no TensorFlow/TFX module at load time, so the command
line's rollback stays fast.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Mapping
from typing import Any

from twinflow.core import fs
from twinflow.core.errors import ModelCardError
from twinflow.core.model_card import ModelCard, read_model_card, write_model_card
from twinflow.model_store.layout import (
    COMPLETE_MARKER,
    Version,
    complete_versions,
    read_labels,
    version_numbers,
    write_marker,
)

PAUSE_ENV = "TWINFLOW_PAUSE_BEFORE_PUBLISH"
STAGING_PREFIX = ".staging-"
REMOVING_PREFIX = ".removing-"
_RENAME_ATTEMPTS = 20


def next_version(model_root: str) -> int:
    """A Unix-time version number, strictly above every version folder already there (complete or not)."""
    return max([int(time.time()), *(v + 1 for v in version_numbers(model_root))])


def find_pushed(model_root: str, source: str) -> Version | None:
    """The complete version already pushed from ``source``, if any: a re-blessed model is not pushed twice."""
    for version in complete_versions(model_root):
        try:
            if read_model_card(version.path).source_model == str(source):
                return version
        except ModelCardError:
            continue
    return None


def _stamped_card(model_dir: str, version: int, stamp: Mapping[str, Any]) -> ModelCard:
    card = read_model_card(model_dir)
    now = {"version": version, "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return ModelCard.model_validate({**card.model_dump(), **stamp, **now})


def _copy_model(source: str, target: str, extra_files: Mapping[str, str]) -> None:
    """Every folder and file of ``source`` but its completion marker (a re-published version gets a new one, last)."""
    io = fs.gfile()
    source = str(source).rstrip("/")
    for directory, _, files in io.walk(source):
        relative = directory[len(source) :].strip("/")
        destination = fs.join(target, relative) if relative else str(target)
        io.makedirs(destination)
        for name in files:
            if relative or name != COMPLETE_MARKER:
                io.copy(fs.join(directory, name), fs.join(destination, name), overwrite=True)
    for relative, path in extra_files.items():
        destination = fs.join(target, *relative.split("/"))
        io.makedirs(os.path.dirname(destination))
        io.copy(path, destination, overwrite=True)


def _finish(target: str, version: int, stamp: Mapping[str, Any]) -> None:
    """Stamp the card with its version, then write the completion marker: always the last file."""
    write_model_card(target, _stamped_card(target, version, stamp))
    write_marker(target, fs.list_files(target))


def publish(
    source: str, model_root: str, stamp: Mapping[str, Any], extra_files: Mapping[str, str] | None = None
) -> Version:
    """Publish ``source`` (a model folder or a version) as a new, highest, complete version; returns it.

    ``stamp``: model card fields to set (``version`` and ``pushed_at`` are always set here);
    ``extra_files``: path inside the version → file to copy there, before the marker.
    """
    extra_files = dict(extra_files or {})
    fs.gfile().makedirs(model_root)
    if fs.is_remote(model_root):
        version = next_version(model_root)
        target = fs.join(model_root, str(version))
        _copy_model(source, target, extra_files)
        _finish(target, version, stamp)
        return Version(version, target)
    return _publish_by_rename(source, model_root, stamp, extra_files)


def _abandoned(staging: str) -> bool:
    """A staging folder whose pushing process has died (a crash mid-push); live pushes keep theirs."""
    try:
        pid = int(os.path.basename(staging).split("-")[2])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_abandoned(model_root: str) -> None:
    """Staging and removal folders left by a pushing process that died (a crash or kill mid-push); local only."""
    if fs.is_remote(model_root) or not os.path.isdir(model_root):
        return
    for prefix in (STAGING_PREFIX, REMOVING_PREFIX):
        for leftover in fs.gfile().glob(os.path.join(model_root, f"{prefix}*")):
            if _abandoned(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def _publish_by_rename(source: str, model_root: str, stamp: Mapping[str, Any], extra_files: dict[str, str]) -> Version:
    remove_abandoned(model_root)
    version = next_version(model_root)
    staging = os.path.join(model_root, f"{STAGING_PREFIX}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _copy_model(source, staging, extra_files)
        _finish(staging, version, stamp)
        _pause_before_publish()
        for _ in range(_RENAME_ATTEMPTS):
            final = os.path.join(model_root, str(version))
            try:
                os.rename(staging, final)  # atomic on one filesystem; fails when final exists
                return Version(version, final)
            except OSError:
                if not os.path.exists(final):
                    raise
            # Another push took this number (two in one second): take the next free one.
            version = next_version(model_root)
            _finish(staging, version, stamp)
        raise RuntimeError(f"could not find a free version number under {model_root}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pause_before_publish() -> None:
    """Fault injection for the crash tests: hold a complete staging folder for $TWINFLOW_PAUSE_BEFORE_PUBLISH seconds.

    A process killed here must leave the served version untouched and its staging folder
    to be cleaned by the next push; the tests kill a real run at this point.
    """
    seconds = float(os.environ.get(PAUSE_ENV) or 0)
    if seconds > 0:
        print(f"[push] pausing {seconds:g} s before publishing (${PAUSE_ENV})", flush=True)
        time.sleep(seconds)


def remove_oldest(model_root: str, keep: int) -> list[int]:
    """Remove the oldest complete versions so that ``keep`` (at least the served one) remain; returns those removed.

    Labelled versions (``stable``, ``canary``) are never removed.

    A removed version first loses its marker (object stores) or leaves in one rename (locally),
    so no reader sees it half deleted. Incomplete folders are left: on an object store a push
    in progress looks just like one.
    """
    versions = complete_versions(model_root)
    labelled = set(read_labels(model_root).values())  # a stable version outlives any number of canaries
    doomed = [v for v in versions[: max(len(versions) - max(keep, 1), 0)] if v.number not in labelled]
    io = fs.gfile()
    for version in doomed:
        if fs.is_remote(model_root):
            io.remove(fs.join(version.path, COMPLETE_MARKER))
            io.rmtree(version.path)
        else:
            hidden = os.path.join(model_root, f"{REMOVING_PREFIX}{version.number}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(version.path, hidden)
            shutil.rmtree(hidden, ignore_errors=True)
    return [v.number for v in doomed]
