"""A file lock beside a target (a metadata file, a serving folder) that says who holds it: one process at a time,
refused at once, never waited for."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from twinflow.core.errors import RunLockedError

LOCK_SUFFIX = ".twinflow.lock"
BUSY = (
    "another twinflow run is using {target}: {holder}. Wait for it to finish, or stop it; "
    "two runs on one metadata store or serving folder would mix their results"
)


def _lock_path(target: str, suffix: str = LOCK_SUFFIX) -> str:
    """The lock file sits beside the metadata file or serving folder (a server watching the folder never sees it)."""
    return os.path.normpath(target) + suffix


@contextlib.contextmanager
def hold(target: str, *, suffix: str = LOCK_SUFFIX, busy: str = BUSY) -> Iterator[None]:
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
