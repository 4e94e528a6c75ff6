"""File I/O through TensorFlow's file layer, so every path may be a ``gs://`` or ``s3://`` URI.

TensorFlow is imported on first use, not at import time (the command line stays fast).
``s3://`` (AWS, or MinIO, the artifact store of a standard Kubeflow install) comes from
tensorflow-io: its S3 file system reads ``S3_ENDPOINT`` (with its ``http://`` scheme for a
local server), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION``; Beam's S3
file system (boto3) reads ``AWS_ENDPOINT_URL_S3``, which is set from ``S3_ENDPOINT`` when missing.

tensorflow-io's S3 client aborts the interpreter as it shuts down ("pure virtual method
called", tensorflow/io#2039, open in 0.37.1, the last release), turning a finished run's exit
status into 134: a process that has touched ``s3://`` leaves through :func:`exit_now`.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

_s3_touched = False


def gfile() -> ModuleType:
    """``tf.io.gfile``, with the file systems twinflow supports registered."""
    import tensorflow as tf
    import tensorflow_io  # noqa: F401  (registers s3:// with tf.io.gfile)

    if os.environ.get("S3_ENDPOINT") and not os.environ.get("AWS_ENDPOINT_URL_S3"):
        os.environ["AWS_ENDPOINT_URL_S3"] = os.environ["S3_ENDPOINT"]
    return tf.io.gfile


def touches_s3(*paths: str | None) -> bool:
    """Note that this process will use ``s3://`` (see :func:`exit_now`); true if any path is on S3."""
    global _s3_touched
    if any(str(path).startswith("s3://") for path in paths if path):
        _s3_touched = True
    return _s3_touched


def exit_now(code: int) -> None:
    """Exit with ``code``; after S3 use, skip the interpreter's teardown that tensorflow-io would abort."""
    if not _s3_touched:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def is_remote(path: str) -> bool:
    """A URI with a scheme (gs://, s3://, ram://) rather than a local path."""
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    base = str(base)
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def unwritable_local_folder(path: str) -> str | None:
    """Why a folder at ``path`` cannot be written or created here (its nearest existing part is a file,
    or read-only), in words; None when it can, or when ``path`` is a URI (its store decides)."""
    if is_remote(str(path)):
        return None
    candidate = os.path.abspath(path)
    while not os.path.exists(candidate) and os.path.dirname(candidate) != candidate:
        candidate = os.path.dirname(candidate)
    if not os.path.isdir(candidate):
        return f"{candidate} is a file, not a folder"
    if not os.access(candidate, os.W_OK | os.X_OK):
        return f"{candidate} is read-only"
    return None


def read_bytes(path: str) -> bytes:
    if not is_remote(str(path)):  # same result; no TensorFlow to load for a local file
        with open(path, "rb") as handle:
            return handle.read()
    with gfile().GFile(str(path), "rb") as handle:
        return handle.read()


def read_text(path: str) -> str:
    if not is_remote(str(path)):  # same result; no TensorFlow to load for a local file
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    with gfile().GFile(str(path), "r") as handle:
        return handle.read()


def exists(path: str) -> bool:
    return os.path.exists(path) if not is_remote(str(path)) else gfile().exists(str(path))


def modified_ns(path: str) -> int:
    """The file's modification time in nanoseconds (a new write of the same name reads differently)."""
    return os.stat(path).st_mtime_ns if not is_remote(str(path)) else gfile().stat(str(path)).mtime_nsec


def isdir(path: str) -> bool:
    return os.path.isdir(path) if not is_remote(str(path)) else gfile().isdir(str(path))


def listdir(path: str) -> list[str]:
    """Entry names (no trailing slashes, which object stores add to folders)."""
    names = os.listdir(path) if not is_remote(str(path)) else gfile().listdir(str(path))
    return [name.rstrip("/") for name in names]


def write_text(path: str, text: str) -> None:
    """Write (replace) a text file. An existing file is removed first: TensorFlow's ram:// appends instead."""
    if not is_remote(str(path)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    io = gfile()
    if io.exists(str(path)):
        io.remove(str(path))
    with io.GFile(str(path), "w") as handle:
        handle.write(text)


def copy_tree(source: str, target: str) -> None:
    """Copy every file under ``source`` to the same place under ``target`` (which may not exist yet)."""
    io = gfile()
    source = str(source).rstrip("/")
    for directory, _, files in io.walk(source):
        relative = os.path.relpath(directory, source) if not is_remote(source) else directory[len(source) :].lstrip("/")
        destination = join(target, relative) if relative not in ("", ".") else str(target)
        io.makedirs(destination)
        for name in files:
            io.copy(join(directory, name), join(destination, name), overwrite=True)


@contextlib.contextmanager
def local_folder_for(target: str) -> Iterator[str]:
    """A local folder standing in for ``target``: itself when local, else a temporary one copied up at the end."""
    if not is_remote(target):
        yield target
        return
    with tempfile.TemporaryDirectory() as local:
        yield local
        copy_tree(local, target)


def list_files(root: str) -> list[str]:
    """Every file under ``root``, as paths relative to it (sorted, '/'-separated)."""
    io = gfile()
    root = str(root).rstrip("/")
    found = []
    for directory, _, files in io.walk(root):
        relative = directory[len(root) :].lstrip("/")
        found += [posixpath.join(relative, name) if relative else name for name in files]
    return sorted(found)


def directory_size(root: str) -> int:
    io = gfile()
    return sum(io.stat(join(str(root), name)).length for name in list_files(root))
