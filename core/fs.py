"""File I/O through TensorFlow's file layer, so every path may be a ``gs://`` or ``s3://`` URI.

TensorFlow is imported on first use, not at import time (the command line stays fast).
"""

from __future__ import annotations

import os
import posixpath
from types import ModuleType


def gfile() -> ModuleType:
    """``tf.io.gfile``, with the file systems twinflow supports registered."""
    import tensorflow as tf

    return tf.io.gfile


def is_remote(path: str) -> bool:
    """A URI with a scheme (gs://, s3://, ram://) rather than a local path."""
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    base = str(base)
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def read_text(path: str) -> str:
    with gfile().GFile(str(path), "r") as handle:
        return handle.read()


def write_text(path: str, text: str) -> None:
    """Write (replace) a text file. An existing file is removed first: TensorFlow's ram:// appends instead."""
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
