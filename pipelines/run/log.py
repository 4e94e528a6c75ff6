"""A run's full log in a file, and only twinflow's own lines on the terminal.

TensorFlow, absl, Beam and TFX write INFO lines, deprecation notices and CUDA-factory
warnings to stderr by the hundred. During a run, file descriptor 2 (where both Python and
TensorFlow's C++ core write) goes to the log file; standard output, where twinflow prints
its progress and the trainers their epochs, goes to the terminal and into the log too.
With ``verbose`` the terminal also shows everything the log gets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from twinflow.core import fs
from twinflow.core.config import PipelineConfig


class _Tee(threading.Thread):
    """Copies what is written to a pipe into the log and, optionally, to a terminal descriptor."""

    def __init__(self, read_fd: int, log: BinaryIO, echo_fd: int | None):
        super().__init__(daemon=True)
        self._read_fd, self._log, self._echo_fd = read_fd, log, echo_fd

    def run(self) -> None:
        while chunk := os.read(self._read_fd, 65536):
            self._log.write(chunk)
            self._log.flush()
            if self._echo_fd is not None:
                os.write(self._echo_fd, chunk)
        os.close(self._read_fd)


@contextlib.contextmanager
def _redirect(fd: int, log: BinaryIO, echo: bool) -> Iterator[None]:
    saved = os.dup(fd)
    read_fd, write_fd = os.pipe()
    tee = _Tee(read_fd, log, saved if echo else None)
    tee.start()
    os.dup2(write_fd, fd)
    os.close(write_fd)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved, fd)  # closes the pipe's last write end: the tee sees end of file
        tee.join(timeout=10)
        os.close(saved)


@contextlib.contextmanager
def _info_logging(stream: TextIO) -> Iterator[None]:
    """Python logging (absl, TFX, Beam) at INFO to ``stream``: the log file gets the whole story."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


@contextlib.contextmanager
def run_log(path: str | Path, verbose: bool = False) -> Iterator[Path]:
    """Send stderr (and a copy of stdout) to ``path`` for the duration; yields the log's path.

    An exception leaving the run is written to the log with its traceback before it goes
    on to the caller, which shows the user its message alone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Logging and tracebacks go to descriptor 2 itself, not to sys.stderr (a host such as pytest may replace it).
    with (
        path.open("ab") as log,
        _redirect(1, log, echo=True),
        _redirect(2, log, echo=verbose),
        os.fdopen(os.dup(2), "w", buffering=1) as stderr,
        _info_logging(stderr),
    ):
        try:
            yield path
        except BaseException:
            traceback.print_exc(file=stderr)
            raise


def log_path(config: PipelineConfig, run_id: str) -> Path:
    """``<pipeline_root>/logs/<run id>.log``; under work/logs when the pipeline root is a URI (copied up after)."""
    base = Path("work") if fs.is_remote(config.pipeline_root) else Path(config.pipeline_root)
    return base / "logs" / f"{run_id.replace(':', '-')}.log"
