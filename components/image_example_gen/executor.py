"""Beam work of ImageExampleGen: stream image files into gzipped TFRecords of tf.Examples.

Only file paths are held in memory; image bytes are read inside the Beam pipeline. Every
file that cannot be used is collected, not raised at once, so one run names them all; what
the data holds (per-class counts, duplicates, skipped files) is checked after the pass,
before anything downstream can train on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen import write_split
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from twinflow.components.image_example_gen.file_hashes import UNREADABLE, data_fingerprint, relative_path
from twinflow.components.image_example_gen.images import DEFAULT_MAX_PIXELS, UnusableImage, ingest
from twinflow.components.image_example_gen.ingest import (
    EXAMPLES_SHOWN,
    INGEST_REPORT_FILE,
    DuplicateGroup,
    IngestReport,
    check_bad_files,
    check_classes,
    check_conflicting_labels,
    check_split_sizes,
)
from twinflow.components.image_example_gen.listing import BadFile, SourceFile, list_input
from twinflow.core import fs
from twinflow.core.contract import FILENAME_KEY, IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, SPLITS
from twinflow.core.spans import Span, describe_spans

NUM_BUCKETS = 10
CLASS_NAMES_FILE = "class_names.json"
_SCRATCH = "_ingest"  # per-run side outputs of the Beam pass, read back by the executor


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_example(
    image: bytes,
    label: int,
    label_name: str,
    filename: str,
    *,
    properties: dict[str, int | float | bytes] | None = None,
) -> tf.train.Example:
    """The Example contract: image bytes, int64 label, label name, source filename, the image's properties.

    ``properties`` are the source file's (``IngestedImage.properties.features()``); without
    them they are measured from ``image`` itself, so every Example carries the whole contract.
    """
    if properties is None:
        properties = ingest(image).properties.features()
    feature = {
        IMAGE_KEY: _bytes_feature(image),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        LABEL_NAME_KEY: _bytes_feature(label_name.encode()),
        FILENAME_KEY: _bytes_feature(filename.encode()),
    }
    for key, value in properties.items():
        if isinstance(value, bytes):
            feature[key] = _bytes_feature(value)
        elif isinstance(value, float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def split_of(digest: bytes, source_split: str, eval_buckets: int, test_buckets: int) -> str:
    """Deterministic split by content hash, out of NUM_BUCKETS buckets."""
    if source_split == "test":
        return "test"
    bucket = int.from_bytes(digest[:8], "big") % NUM_BUCKETS
    if bucket < eval_buckets:
        return "eval"
    if test_buckets and bucket < eval_buckets + test_buckets:
        return "test"
    return "train"


class _ReadImage(beam.DoFn):
    """A file → (split, Example) on the main output; a ``bad`` record, or a ``seen`` record per good image."""

    def __init__(self, input_base: str, class_index: dict[str, int], buckets: tuple[int, int], max_pixels: int):
        self._input_base = input_base
        self._class_index = class_index
        self._eval_buckets, self._test_buckets = buckets
        self._max_pixels = max_pixels

    def process(self, source: SourceFile):
        named = (relative_path(source.path, self._input_base), source.label_name, source.source_split)
        try:
            with tf.io.gfile.GFile(source.path, "rb") as handle:
                data = handle.read()
        except (tf.errors.OpError, OSError) as err:
            yield beam.pvalue.TaggedOutput("hashed", (*named, UNREADABLE))
            yield beam.pvalue.TaggedOutput("bad", (source.path, source.size, f"cannot be read: {err}"))
            return
        digest = hashlib.sha256(data).digest()
        yield beam.pvalue.TaggedOutput("hashed", (*named, digest.hex()))
        try:
            image = ingest(data, self._max_pixels)
        except UnusableImage as err:
            yield beam.pvalue.TaggedOutput("bad", (source.path, source.size, str(err)))
            return
        except (tf.errors.OpError, OSError) as err:
            yield beam.pvalue.TaggedOutput("bad", (source.path, source.size, f"cannot be read: {err}"))
            return
        split = split_of(digest, source.source_split, self._eval_buckets, self._test_buckets)
        filename = os.path.relpath(source.path, self._input_base) if "://" not in source.path else source.path
        label = self._class_index[source.label_name]
        yield (
            split,
            make_example(image.data, label, source.label_name, filename, properties=image.properties.features()),
        )
        fmt = image.source_format if image.converted else ""
        yield beam.pvalue.TaggedOutput("seen", (digest.hex(), (source.path, source.label_name, split, fmt)))


def _write_json(path: str):
    def write(value: Any) -> None:
        fs.write_text(path, json.dumps(value))

    return write


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the folders, then reads, checks, encodes, splits and writes the images with Beam."""

    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        input_base = exec_properties["input_base"]
        eval_buckets = int(exec_properties["eval_buckets"])
        max_bad_images = float(exec_properties.get("max_bad_images") or 0)
        max_pixels = int(exec_properties.get("max_image_pixels") or DEFAULT_MAX_PIXELS)
        listing, spans = list_input(
            input_base, exec_properties.get("span_pattern") or "", int(exec_properties.get("spans") or 1)
        )
        if spans:
            print(f"[data] {describe_spans(spans)} of {input_base}: {len(listing.files):,} files", flush=True)
        class_names = listing.class_names
        check_classes(class_names, listing.class_counts(), input_base)
        test_buckets = 0 if listing.has_test_folder else int(exec_properties["test_buckets"])
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
        class_index = {name: index for index, name in enumerate(class_names)}
        # Folder order groups images by class, and the DirectRunner's reshuffle keeps
        # that order; a fixed pseudo-random order makes every written split well mixed,
        # so a trainer's bounded shuffle buffer sees all classes.
        files = sorted(listing.files, key=lambda f: hashlib.sha256(f.path.encode("utf-8", "replace")).digest())
        scratch = fs.join(examples.uri, _SCRATCH)
        fs.gfile().makedirs(scratch)

        with self._make_beam_pipeline() as pipeline:
            read = (
                pipeline
                | "ListFiles" >> beam.Create(files, reshuffle=True)
                | "ReadImages"
                >> beam.ParDo(
                    _ReadImage(input_base, class_index, (eval_buckets, test_buckets), max_pixels)
                ).with_outputs("bad", "seen", "hashed", main="examples")
            )
            parts = read.examples | "Partition" >> beam.Partition(lambda kv, _: SPLITS.index(kv[0]), len(SPLITS))
            for split, part in zip(SPLITS, parts, strict=True):
                _ = (
                    part
                    | f"Drop key {split}" >> beam.Values()
                    | f"Write {split}"
                    >> write_split.WriteSplit(
                        artifact_utils.get_split_uri([examples], split), example_gen_pb2.FORMAT_TFRECORDS_GZIP
                    )
                )
            _ = (
                read.bad
                | "Bad files" >> beam.combiners.ToList()
                | "Write bad" >> beam.Map(_write_json(fs.join(scratch, "bad.json")))
            )
            by_content = read.seen | "By content" >> beam.GroupByKey() | "Members" >> beam.Map(lambda kv: list(kv[1]))
            _ = (
                by_content
                | "Repeated" >> beam.Filter(lambda members: len(members) > 1)
                | "All repeated" >> beam.combiners.ToList()
                | "Write repeated" >> beam.Map(_write_json(fs.join(scratch, "repeated.json")))
            )
            _ = (
                read.hashed
                | "All hashes" >> beam.combiners.ToList()
                | "Write hashes" >> beam.Map(_write_json(fs.join(scratch, "hashes.json")))
            )
            _ = (
                read.seen
                | "Count key" >> beam.Map(lambda kv: (json.dumps(kv[1][1:]), 1))
                | "Count" >> beam.CombinePerKey(sum)
                | "All counts" >> beam.combiners.ToList()
                | "Write counts" >> beam.Map(_write_json(fs.join(scratch, "counts.json")))
            )

        report = self._check_and_report(input_base, listing, class_names, scratch, max_bad_images)
        # The fingerprint of what was read (the runner's, from its hash cache, agrees when nothing changed since).
        fingerprint = data_fingerprint(
            (tuple(row) for row in _read_scratch(scratch, "hashes.json")),
            (relative_path(bad.path, input_base) for bad in listing.bad),
        )
        fs.write_text(fs.join(examples.uri, INGEST_REPORT_FILE), report.to_json())
        fs.gfile().rmtree(scratch)
        fs.write_text(fs.join(examples.uri, CLASS_NAMES_FILE), json.dumps({"class_names": class_names}, indent=1))
        examples.set_string_custom_property("class_names", json.dumps(class_names))
        examples.set_string_custom_property(
            "payload_format", example_gen_pb2.PayloadFormat.Name(example_gen_pb2.FORMAT_TF_EXAMPLE)
        )
        examples.set_string_custom_property("file_format", "tfrecords_gzip")
        examples.set_int_custom_property("num_files", report.images)
        _record_input(examples, input_base, spans, fingerprint)
        for warning in report.warnings:
            print(f"[data] warning: {warning}", flush=True)

    @staticmethod
    def _check_and_report(
        input_base: str, listing: Any, class_names: list[str], scratch: str, max_bad_images: float
    ) -> IngestReport:
        bad = listing.bad + [BadFile(path, size, reason) for path, size, reason in _read_scratch(scratch, "bad.json")]
        check_bad_files(bad, len(listing.files) + len(listing.bad), max_bad_images)

        counts: dict[str, Counter[str]] = {name: Counter() for name in class_names}
        converted: Counter[str] = Counter()
        for key, count in _read_scratch(scratch, "counts.json"):
            label_name, split, fmt = json.loads(key)
            counts[label_name][split] += count
            if fmt:
                converted[fmt] += count
        repeated = []
        for members in _read_scratch(scratch, "repeated.json"):
            paths, labels, splits, _ = (list(column) for column in zip(*sorted(members), strict=True))
            repeated.append(DuplicateGroup(paths=paths, labels=labels, splits=splits))
        repeated.sort(key=lambda g: g.paths)
        check_conflicting_labels(repeated)
        warnings = check_classes(class_names, counts, input_base)
        check_split_sizes({split: sum(c[split] for c in counts.values()) for split in SPLITS}, input_base)

        leaks = [g for g in repeated if "test" in g.splits and {"train", "eval"} & set(g.splits)]
        copies = sum(len(g.paths) - 1 for g in repeated)
        if leaks:
            warnings.append(
                f"{len(leaks)} image(s) sit both in training data and in test (identical content), e.g. "
                + "; ".join(" = ".join(g.paths[:2]) for g in leaks[:EXAMPLES_SHOWN])
                + ": test accuracy is optimistic for them"
            )
        if copies:
            warnings.append(f"{copies} extra copies of identical images (same class)")
        if bad:
            warnings.append(f"{len(bad)} unusable file(s) left out (--max-bad-images)")
        return IngestReport(
            images=sum(sum(c.values()) for c in counts.values()),
            class_counts={name: {split: counts[name][split] for split in SPLITS} for name in class_names},
            bad_files=[b.describe() for b in sorted(bad, key=lambda b: b.path)],
            skipped=dict(sorted(listing.skipped.items())),
            converted=dict(sorted(converted.items())),
            duplicates=copies,
            duplicate_examples=repeated[:EXAMPLES_SHOWN],
            leaks=len(leaks),
            leak_examples=leaks[:EXAMPLES_SHOWN],
            warnings=warnings,
        )


def _record_input(examples: Artifact, input_base: str, spans: list[Span], fingerprint: str) -> None:
    """As TFX's file-based ExampleGen does: ``span`` and ``version`` (the latest span's), and the input's fingerprint.

    The whole window goes in ``spans`` (a JSON list), which the pusher copies into the model card.
    """
    latest = spans[-1] if spans else None
    examples.span = latest.number if latest else 0
    if latest is not None and latest.version is not None:
        examples.version = latest.version
    examples.set_string_custom_property("spans", json.dumps([s.number for s in spans]))
    examples.set_string_custom_property("input_base", input_base)
    examples.set_string_custom_property("input_fingerprint", fingerprint)


def _read_scratch(folder: str, name: str) -> list[Any]:
    """A side output the Beam pass wrote (ToList writes [] for none; a missing file reads as none)."""
    path = fs.join(folder, name)
    return json.loads(fs.read_text(path)) if fs.gfile().exists(path) else []
