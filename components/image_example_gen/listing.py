"""What an image folder holds: its classes, its image files, and every file that is not one.

Layouts: ``<class>/<image>``, or ``train/<class>/<image>`` with an optional ``test/<class>/<image>``.
Images may sit in sub-folders of a class folder. Local folders are listed with ``os.scandir``,
so a file name that is not UTF-8 or a broken symbolic link is reported by path instead of
ending the listing; URIs go through TensorFlow's file layer. Neither TensorFlow nor Beam is
imported here, so the command line can check a folder before they load.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from PIL import Image

from twinflow.components.image_example_gen.file_hashes import FileHashes, FileStamp, data_fingerprint, relative_to
from twinflow.core.contract import PREPARED_MARKER
from twinflow.core.errors import ImageFolderError
from twinflow.core.spans import Span, latest_spans

# Formats Pillow only identifies (their data needs plugins or tools not installed here).
_STUB_FORMATS = {"BUFR", "GRIB", "HDF5", "MPEG", "WMF", "EPS"}
HIDDEN = "(hidden)"


def image_extensions() -> frozenset[str]:
    """Every file extension Pillow can open and decode here."""
    Image.init()
    return frozenset(
        ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in _STUB_FORMATS
    )


@dataclass(frozen=True)
class SourceFile:
    path: str
    label_name: str
    source_split: str  # "train" (to be hashed into train/eval[/test]) or "test"
    size: int
    mtime_ns: int = 0  # 0 where the file system does not say
    ctime_ns: int = 0
    inode: int = 0

    @property
    def stamp(self) -> FileStamp:
        return FileStamp(self.size, self.mtime_ns, self.ctime_ns, self.inode)


@dataclass(frozen=True)
class BadFile:
    """A file that cannot become an example, and why, in plain words."""

    path: str
    size: int | None
    reason: str

    def describe(self) -> str:
        size = "" if self.size is None else f" ({self.size:,} bytes)"
        return f"{self.path}{size}: {self.reason}"


@dataclass
class Listing:
    input_base: str
    files: list[SourceFile] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)  # found while listing: broken links, undecodable names
    skipped: Counter[str] = field(default_factory=Counter)  # extension → files that are not images

    @property
    def class_names(self) -> list[str]:
        """Sorted folder names of every split: the label domain, numbered 0..K-1."""
        return sorted({f.label_name for f in self.files})

    @property
    def has_test_folder(self) -> bool:
        return any(f.source_split == "test" for f in self.files)

    def fingerprint(self, hashes: FileHashes | None = None) -> str:
        """The files' contents, classes and names below ``input_base``: changes when the data does, and only then.

        ImageExampleGen's cache key includes it, so a re-run over changed folders is not served
        from TFX's cache while an unchanged one is, however often its files were touched or
        copied. ``hashes`` (with its cache file) spares reading files whose stamp did not change.
        """
        hashes = hashes or FileHashes()
        relative = relative_to(self.input_base)
        return data_fingerprint(
            ((relative(f.path), f.label_name, f.source_split, hashes.digest(f.path, f.stamp)) for f in self.files),
            (relative(b.path) for b in self.bad),
        )

    def class_counts(self) -> dict[str, Counter[str]]:
        """Class → images per source folder ('train', 'test')."""
        counts: dict[str, Counter[str]] = {}
        for source in self.files:
            counts.setdefault(source.label_name, Counter())[source.source_split] += 1
        return counts


@dataclass(frozen=True)
class _Entry:
    name: str
    path: str
    is_dir: bool
    size: int | None
    problem: str | None = None
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0


def _display(path: str) -> str:
    """A path that prints even when its bytes are not UTF-8 (shown as \\xNN escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace") if "://" not in path else path


def _local_entries(folder: str) -> Iterator[_Entry]:
    with os.scandir(folder) as scan:
        for entry in scan:
            path = entry.path
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                yield _Entry(entry.name, path, False, None, "the file name is not valid UTF-8; rename the file")
                continue
            if entry.is_symlink() and not os.path.exists(path):
                target = os.readlink(path)
                yield _Entry(entry.name, path, False, None, f"broken symbolic link to {target}")
                continue
            if entry.is_dir():
                yield _Entry(entry.name, path, True, None)
            else:
                stat = entry.stat()
                yield _Entry(
                    entry.name, path, False, stat.st_size, None, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino
                )


def _remote_entries(folder: str) -> Iterator[_Entry]:
    import tensorflow as tf

    for name in tf.io.gfile.listdir(folder):
        path = posixpath.join(folder, name.rstrip("/"))
        if name.endswith("/") or tf.io.gfile.isdir(path):
            yield _Entry(name.rstrip("/"), path, True, None)
        else:
            stat = tf.io.gfile.stat(path)
            yield _Entry(name, path, False, stat.length, mtime_ns=stat.mtime_nsec)


def _entries(folder: str) -> list[_Entry]:
    entries = _remote_entries(folder) if "://" in folder else _local_entries(folder)
    return sorted(entries, key=lambda e: e.name)


def _check_folder(input_base: str) -> None:
    if "://" in input_base:
        import tensorflow as tf

        if not tf.io.gfile.isdir(input_base):
            raise ImageFolderError(f"input folder {input_base} does not exist")
        return
    if os.path.isfile(input_base):
        raise ImageFolderError(f"input folder {input_base} is a file, not a folder of class sub-folders of images")
    if not os.path.isdir(input_base):
        raise ImageFolderError(f"input folder {input_base} does not exist")


def list_sources(input_base: str) -> Listing:
    """Every image file under ``input_base`` with its class; what is not an image is counted or reported."""
    input_base = str(input_base)
    _check_folder(input_base)
    extensions = image_extensions()
    listing = Listing(input_base)
    top = _entries(input_base)
    folders = {e.name: e.path for e in top if e.is_dir and not e.name.startswith(".")}
    if "train" in folders:
        extra = sorted(set(folders) - {"train", "test"})
        if extra:
            raise ImageFolderError(
                f"{input_base}: has a train/ folder, so only train/ and test/ may sit beside it; found {extra}"
            )
        roots = {split: folders[split] for split in ("train", "test") if split in folders}
    elif "test" in folders:  # a test split without its train split, not a class named "test"
        raise ImageFolderError(
            f"{input_base}: has a test/ folder but no train/ folder; put the training images in "
            f"{posixpath.join(input_base, 'train')}/<class>/ beside it (train and test are not class names)"
        )
    else:
        roots = {"train": input_base}
    for entry in top:
        if not entry.is_dir:
            _skip_or_report(entry, listing, extensions)
    for source_split, root in roots.items():
        class_dirs = [e for e in _entries(root) if e.is_dir and not e.name.startswith(".")]
        if root != input_base:
            for entry in _entries(root):
                if not entry.is_dir:
                    _skip_or_report(entry, listing, extensions)
        if not class_dirs:
            raise ImageFolderError(f"{root}: no class sub-folders found (expected {root}/<class name>/<image files>)")
        for class_dir in class_dirs:
            found = _list_class(class_dir.path, class_dir.name, source_split, listing, extensions)
            if not found:
                skipped = ", ".join(f"{count} {ext}" for ext, count in sorted(listing.skipped.items()))
                raise ImageFolderError(
                    f"{class_dir.path}: class folder holds no image files"
                    + (f" (files skipped so far: {skipped})" if skipped else "")
                )
    return listing


def _list_class(folder: str, label_name: str, source_split: str, listing: Listing, extensions: frozenset[str]) -> int:
    """Add the images under one class folder (sub-folders included); returns how many."""
    found = 0
    for entry in _entries(folder):
        if entry.is_dir:
            if entry.name.startswith("."):
                listing.skipped[HIDDEN] += 1
            else:
                found += _list_class(entry.path, label_name, source_split, listing, extensions)
        elif _is_image(entry, listing, extensions):
            listing.files.append(
                SourceFile(
                    entry.path, label_name, source_split, entry.size or 0, entry.mtime_ns, entry.ctime_ns, entry.inode
                )
            )
            found += 1
    return found


def _is_image(entry: _Entry, listing: Listing, extensions: frozenset[str]) -> bool:
    if entry.problem is not None:
        listing.bad.append(BadFile(_display(entry.path), entry.size, entry.problem))
        return False
    if entry.name.startswith("."):
        listing.skipped[HIDDEN] += 1
        return False
    extension = os.path.splitext(entry.name)[1].lower()
    if extension not in extensions:
        listing.skipped[extension or "(no extension)"] += 1
        return False
    return True


def _skip_or_report(entry: _Entry, listing: Listing, extensions: frozenset[str]) -> None:
    """A file outside any class folder: an image there has no class, so it is reported; others are counted
    (except the marker prepare-data writes there: it belongs to the folder)."""
    if entry.name == PREPARED_MARKER:
        return
    if entry.problem is not None:
        listing.bad.append(BadFile(_display(entry.path), entry.size, entry.problem))
    elif entry.name.startswith("."):
        listing.skipped[HIDDEN] += 1
    elif os.path.splitext(entry.name)[1].lower() in extensions:
        listing.skipped["(image outside a class folder)"] += 1
    else:
        listing.skipped[os.path.splitext(entry.name)[1].lower() or "(no extension)"] += 1


def list_span_sources(input_base: str, spans: Sequence[Span]) -> Listing:
    """Every image of the given span folders as one listing (a class may appear in any of them).

    Each span folder has the layout :func:`list_sources` reads; ``input_base`` (the data root)
    stays the listing's base, so file names keep their span folder and stay distinct.
    """
    merged = Listing(str(input_base))
    for span in spans:
        part = list_sources(span.path)
        merged.files.extend(part.files)
        merged.bad.extend(part.bad)
        merged.skipped.update(part.skipped)
    return merged


def list_input(input_base: str, span_pattern: str = "", window: int = 1) -> tuple[Listing, list[Span]]:
    """What a run reads: the latest ``window`` spans of a data root, or (no pattern) one fixed folder."""
    if not span_pattern:
        return list_sources(input_base), []
    spans = latest_spans(str(input_base), span_pattern, window)
    return list_span_sources(input_base, spans), spans
