"""What ImageExampleGen found in the data, and the checks that stop a run before anything trains.

Written beside the examples as ``ingest_report.json``; the run's report shows it. The checks
name the files and classes they are about: every unreadable file at once, classes a model
cannot learn or be judged on, and identical images under two classes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from twinflow.components.image_example_gen.listing import BadFile
from twinflow.core.contract import SPLITS
from twinflow.core.errors import ImageFolderError

INGEST_REPORT_FILE = "ingest_report.json"
SHOWN = 20  # files named in one message before "… and N more"
EXAMPLES_SHOWN = 3  # paths shown per duplicate group


class DuplicateGroup(BaseModel):
    model_config = ConfigDict(frozen=True)

    paths: list[str]
    labels: list[str]
    splits: list[str]


class IngestReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    images: int = Field(description="image files read into examples")
    class_counts: dict[str, dict[str, int]] = Field(description="class → examples per split")
    bad_files: list[str] = Field(default_factory=list, description="files left out (within --max-bad-images)")
    skipped: dict[str, int] = Field(default_factory=dict, description="files that are not images, by extension")
    converted: dict[str, int] = Field(default_factory=dict, description="images re-encoded as PNG, by source format")
    duplicates: int = Field(0, description="extra copies of identical images (same class)")
    duplicate_examples: list[DuplicateGroup] = Field(default_factory=list)
    leaks: int = Field(0, description="identical images in both training data (train/eval) and test")
    leak_examples: list[DuplicateGroup] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def bad_file_limit(max_bad_images: float, total_files: int) -> int:
    """``--max-bad-images``: below 1 a fraction of all image files, from 1 up a count."""
    return int(max_bad_images * total_files) if max_bad_images < 1 else int(max_bad_images)


def check_bad_files(bad: list[BadFile], total_files: int, max_bad_images: float) -> None:
    """Every unreadable file in one error, unless they are few enough to leave out."""
    limit = bad_file_limit(max_bad_images, total_files)
    if len(bad) <= limit:
        return
    listed = "\n  - ".join(b.describe() for b in sorted(bad, key=lambda b: b.path)[:SHOWN])
    more = f"\n  … and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    allowance = f"at most {limit} may be left out" if limit else "none may be left out by default"
    raise ImageFolderError(
        f"{len(bad)} of {total_files} files cannot be used as images ({allowance}; "
        f"fix or remove them, or pass --max-bad-images N or a fraction to leave them out):\n  - {listed}{more}"
    )


def check_classes(class_names: list[str], counts: Mapping[str, Mapping[str, int]], where: str) -> list[str]:
    """Stop on classes a model cannot learn; warn about classes it cannot be judged on. Returns the warnings.

    ``counts`` is class → images per split ('train', 'eval', 'test', or source folders).
    """
    if len(class_names) < 2:
        found = f"only {class_names[0]!r}" if class_names else "none"
        raise ImageFolderError(f"{where}: a classifier needs at least 2 classes (class folders); found {found}")
    untrainable = [name for name in class_names if counts.get(name, {}).get("train", 0) == 0]
    if untrainable:
        detail = "; ".join(f"{name!r} has {_split_counts(counts.get(name, {}))}" for name in untrainable)
        raise ImageFolderError(
            f"{where}: every class needs training images, and {len(untrainable)} class(es) have none: {detail}. "
            "Add images to their training folders (a class's only image may hash into eval or test: add more)."
        )
    warnings = []
    for split, consequence in (("eval", "early stopping ignores it"), ("test", "its test accuracy cannot be judged")):
        missing = [name for name in class_names if counts.get(name, {}).get(split, 0) == 0]
        if missing and split in _splits_present(counts):
            warnings.append(f"no {split} images for class(es) {missing}: {consequence}")
    return warnings


def check_split_sizes(split_totals: Mapping[str, int], where: str) -> None:
    """Training stops early on eval loss and models are judged on test: neither may be empty."""
    empty = [split for split in SPLITS if split_totals.get(split, 0) == 0]
    if empty:
        counts = ", ".join(f"{split_totals.get(s, 0)} {s}" for s in SPLITS)
        raise ImageFolderError(
            f"{where}: the {' and '.join(empty)} split(s) would be empty ({counts} images): "
            "add images (each split takes about a tenth of a folder without test/), or raise --eval-buckets"
        )


def check_conflicting_labels(groups: Iterable[DuplicateGroup]) -> None:
    conflicting = [g for g in groups if len(set(g.labels)) > 1]
    if not conflicting:
        return
    shown = "\n  - ".join(
        ", ".join(f"{path} ({label})" for path, label in zip(g.paths, g.labels, strict=True))
        for g in conflicting[:SHOWN]
    )
    raise ImageFolderError(
        f"{len(conflicting)} image(s) appear under two or more classes with identical content; a model cannot "
        f"learn both labels. Keep each image in one class:\n  - {shown}"
    )


def _split_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts.get(split, 0)} {split}" for split in (*SPLITS,) if split in counts or split == "train")


def _splits_present(counts: Mapping[str, Mapping[str, int]]) -> set[str]:
    return {split for per_split in counts.values() for split, n in per_split.items() if n}


def read_ingest_report(examples_uri: str) -> IngestReport | None:
    from twinflow.core import fs

    path = fs.join(examples_uri, INGEST_REPORT_FILE)
    if not fs.gfile().exists(path):
        return None
    return IngestReport.model_validate(json.loads(fs.read_text(path)))
