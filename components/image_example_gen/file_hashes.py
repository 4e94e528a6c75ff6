"""The data fingerprint by content, and a cache of each file's content hash so an unchanged folder is not read again.

A touched image, a copy without ``-p``, a git checkout or an unzip gives files new
modification times but the same bytes: they are read and hashed again, and the fingerprint
stays what it was. The fingerprint names files by their path *relative to the input folder*,
so the same images under the same names fingerprint alike wherever the folder lies, and a
trailing ``/`` changes nothing.

The cache (``<pipeline_root>/data_hashes.json``) maps a file's path to its size, modification
time, change time, inode and SHA-256. An entry is used only when all of them still match:
the change time cannot be set back by tools (``touch -d``, ``cp -p`` and unzip set it to now),
so bytes rewritten under a restored modification time are read again. A file changed within
:data:`RACY_SECONDS` of being hashed is not cached (it could change again within its
timestamp's granularity, as git's "racy" index entries can). Object stores give no inode or
change time through TensorFlow's file layer, and their ETags are not content hashes for
multipart uploads: remote files are cached by URI, size and modification time (a new upload is
a new modification time), and read once on a cold cache.

The cache is a plain JSON file replaced whole: two runs writing it at once lose only entries,
which are hashed again next time; an unreadable or corrupt file is ignored, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from twinflow.core import fs

CACHE_FILE = "data_hashes.json"
RACY_SECONDS = 2.0  # FAT's timestamps are 2 s coarse; ext4, XFS and btrfs keep nanoseconds
UNREADABLE = "unreadable"  # in place of a hash: the file could not be read (ImageExampleGen reports it)
_CACHE_FORMAT = 1
_FINGERPRINT_FORMAT = b"twinflow data fingerprint 2: relative path, class, source split, sha256\n"


class FileStamp(NamedTuple):
    """What says a file has not changed since it was hashed (0 where the file system does not say)."""

    size: int
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0


def relative_to(base: str) -> Callable[[str], str]:
    """``path`` → its name below ``base``, '/'-separated: the name a file has in the fingerprint."""
    if fs.is_remote(base):
        cut = len(base.rstrip("/"))
        return lambda path: path[cut:].lstrip("/")
    prefix = base.rstrip(os.sep) + os.sep

    def relative(path: str) -> str:
        name = path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, base)  # listed paths: fast
        return name.replace(os.sep, "/")

    return relative


def relative_path(path: str, base: str) -> str:
    return relative_to(base)(path)


def data_fingerprint(files: Iterable[tuple[str, str, str, str]], unlisted: Iterable[str] = ()) -> str:
    """One hash of (relative path, class, source split, content hash) per file, and the relative paths of
    files that could not be listed (broken links, undecodable names), each in sorted order.

    ImageExampleGen computes it from the bytes it read; the local runner from the cache: the two agree.
    """
    digest = hashlib.sha256(_FINGERPRINT_FORMAT)
    for relative, label, split, content in sorted(files):
        digest.update(f"{relative}\0{label}\0{split}\0{content}\n".encode("utf-8", "surrogateescape"))
    for relative in sorted(unlisted):
        digest.update(f"{relative}\0unlisted\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_file(path: str) -> str:
    if not fs.is_remote(path):
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    with fs.gfile().GFile(path, "rb") as handle:
        return hash_bytes(handle.read())


def _key(path: str, cwd: str) -> str:
    """Absolute, so that runs started from other folders share entries (listed paths are already normal)."""
    return path if path[:1] == os.sep or "://" in path else os.path.join(cwd, path)


class FileHashes:
    """Content hashes of files, taken from the cache file when a file's stamp still matches.

    ``read`` and ``reused`` count the files hashed and the files answered from the cache this time.
    """

    def __init__(self, cache_path: str | None = None):
        self.cache_path = cache_path
        self._cwd = os.getcwd()
        self._cached = _load(cache_path)
        self._kept: dict[str, Any] = {}
        self.read = 0
        self.reused = 0

    def digest(self, path: str, stamp: FileStamp) -> str:
        """The SHA-256 of ``path``'s bytes; :data:`UNREADABLE` when it cannot be read."""
        key = _key(path, self._cwd)
        entry = self._cached.get(key)
        if entry is not None and stamp.mtime_ns and _matches(entry, stamp):
            self.reused += 1
            self._kept[key] = entry
            return entry[4]
        started = time.time_ns()
        try:
            content = _hash_file(path)
        except Exception:  # OSError, or TensorFlow's errors for a URI: the executor names the file
            return UNREADABLE
        self.read += 1
        changed = max(stamp.mtime_ns, stamp.ctime_ns)
        if stamp.mtime_ns and changed < started - RACY_SECONDS * 1e9:
            self._kept[key] = [*stamp, content]
        return content

    def save(self, under: str) -> None:
        """Write the entries used or made this time, and the old ones of files outside ``under`` (other data
        folders sharing the pipeline root); entries of files gone from ``under`` are dropped. Never fails a run."""
        if self.cache_path is None:
            return
        prefix = _key(os.path.normpath(under) if not fs.is_remote(under) else under, self._cwd).rstrip("/") + "/"
        entries = {key: value for key, value in self._cached.items() if not key.startswith(prefix)}
        entries.update(self._kept)
        if entries == self._cached:
            return
        text = json.dumps({"format": _CACHE_FORMAT, "entries": entries}, separators=(",", ":"))
        try:
            _replace(self.cache_path, text)
        except Exception as err:  # a cache: the next run hashes again
            print(f"[run] could not write the data hash cache {self.cache_path}: {err}", flush=True)


def _load(path: str | None) -> dict[str, Any]:
    """The cache's entries; {} for a missing, unreadable, corrupt or foreign file (entries are checked as used)."""
    if path is None:
        return {}
    try:
        if not fs.exists(path):
            return {}
        data = json.loads(fs.read_text(path))
        entries = data["entries"] if data.get("format") == _CACHE_FORMAT else {}
        return entries if isinstance(entries, dict) else {}
    except Exception:
        return {}


def _matches(entry: Any, stamp: FileStamp) -> bool:
    """An entry is [size, mtime_ns, ctime_ns, inode, sha256]; anything else (a damaged file) matches nothing."""
    return isinstance(entry, list) and len(entry) == 5 and entry[:4] == list(stamp) and isinstance(entry[4], str)


def _replace(path: str, text: str) -> None:
    """Write aside and rename locally, so a reader never sees half a file; through TensorFlow for a URI."""
    if fs.is_remote(path):
        fs.write_text(path, text)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)
