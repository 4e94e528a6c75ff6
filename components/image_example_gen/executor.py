"""Beam work of ImageExampleGen: stream image files into gzipped TFRecords of tf.Examples.

Only file paths are held in memory; image bytes are read inside the Beam pipeline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import tensorflow as tf
from PIL import Image, UnidentifiedImageError
from tfx.components.example_gen import write_split
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import io_utils

from components.errors import ImageFolderError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "eval", "test")
NUM_BUCKETS = 10
CLASS_NAMES_FILE = "class_names.json"


@dataclass(frozen=True)
class SourceFile:
    path: str
    label_name: str
    source_split: str  # "train" (to be hashed into train/eval[/test]) or "test"


def _sub_dirs(path: str) -> list[str]:
    return sorted(
        name
        for name in tf.io.gfile.listdir(path)
        if not name.startswith(".") and tf.io.gfile.isdir(os.path.join(path, name.rstrip("/")))
    )


def list_sources(input_base: str) -> tuple[list[str], list[SourceFile]]:
    """Class names (sorted folder names, all splits together) and every image file to read."""
    if not tf.io.gfile.isdir(input_base):
        raise ImageFolderError(f"input folder {input_base} does not exist or is not a directory")
    top = [name.rstrip("/") for name in _sub_dirs(input_base)]
    roots = {"train": os.path.join(input_base, "train"), "test": os.path.join(input_base, "test")}
    if "train" not in top:
        roots = {"train": input_base}
    elif set(top) - {"train", "test"}:
        extra = sorted(set(top) - {"train", "test"})
        raise ImageFolderError(
            f"{input_base}: has a train/ folder, so only train/ and test/ may sit beside it; found {extra}"
        )
    files: list[SourceFile] = []
    for source_split, root in roots.items():
        class_dirs = [name.rstrip("/") for name in _sub_dirs(root)]
        if not class_dirs:
            raise ImageFolderError(f"{root}: no class sub-folders found (expected {root}/<class name>/<image files>)")
        for label_name in class_dirs:
            class_dir = os.path.join(root, label_name)
            images = sorted(
                name
                for name in tf.io.gfile.listdir(class_dir)
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
            )
            if not images:
                raise ImageFolderError(f"{class_dir}: class folder holds no {'/'.join(IMAGE_EXTENSIONS)} files")
            files.extend(SourceFile(os.path.join(class_dir, name), label_name, source_split) for name in images)
    class_names = sorted({f.label_name for f in files})
    return class_names, files


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def make_example(image: bytes, label: int, label_name: str, filename: str) -> tf.train.Example:
    """The Example contract: image bytes, int64 label, label name, source filename."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": _bytes_feature(image),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "label_name": _bytes_feature(label_name.encode()),
                "filename": _bytes_feature(filename.encode()),
            }
        )
    )


def check_decodable(image: bytes, path: str) -> None:
    """Fail fast, naming the file, on bytes that are not a complete JPEG or PNG image."""
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            if decoded.format not in ("PNG", "JPEG"):
                raise ImageFolderError(f"{path}: is a {decoded.format} image; only JPEG and PNG are accepted")
            decoded.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageFolderError(f"{path}: corrupt or not an image ({len(image)} bytes): {err}") from err


def split_of(image: bytes, source_split: str, eval_buckets: int, test_buckets: int) -> str:
    """Deterministic split by content hash, out of NUM_BUCKETS buckets."""
    if source_split == "test":
        return "test"
    bucket = int.from_bytes(hashlib.sha256(image).digest()[:8], "big") % NUM_BUCKETS
    if bucket < eval_buckets:
        return "eval"
    if source_split == "train" and test_buckets and bucket < eval_buckets + test_buckets:
        return "test"
    return "train"


class _ReadImage(beam.DoFn):
    def __init__(self, input_base: str, class_index: dict[str, int], eval_buckets: int, test_buckets: int):
        self._input_base = input_base
        self._class_index = class_index
        self._eval_buckets = eval_buckets
        self._test_buckets = test_buckets

    def process(self, source: SourceFile):
        with tf.io.gfile.GFile(source.path, "rb") as handle:
            image = handle.read()
        check_decodable(image, source.path)
        filename = os.path.relpath(source.path, self._input_base)
        example = make_example(image, self._class_index[source.label_name], source.label_name, filename)
        yield split_of(image, source.source_split, self._eval_buckets, self._test_buckets), example


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the folders, then reads, encodes, splits and writes the images with Beam."""

    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        input_base = exec_properties["input_base"]
        eval_buckets = int(exec_properties["eval_buckets"])
        test_buckets = int(exec_properties["test_buckets"])
        class_names, files = list_sources(input_base)
        has_test_folder = any(f.source_split == "test" for f in files)
        if has_test_folder:
            test_buckets = 0
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
        class_index = {name: index for index, name in enumerate(class_names)}
        # Folder order groups images by class, and the DirectRunner's reshuffle keeps
        # that order; a fixed pseudo-random order makes every written split well mixed,
        # so a trainer's bounded shuffle buffer sees all classes.
        files.sort(key=lambda f: hashlib.sha256(f.path.encode()).digest())

        with self._make_beam_pipeline() as pipeline:
            keyed = (
                pipeline
                | "ListFiles" >> beam.Create(files, reshuffle=True)
                | "ReadImages" >> beam.ParDo(_ReadImage(input_base, class_index, eval_buckets, test_buckets))
            )
            parts = keyed | "Partition" >> beam.Partition(lambda kv, _: SPLITS.index(kv[0]), len(SPLITS))
            for split, part in zip(SPLITS, parts, strict=True):
                _ = (
                    part
                    | f"Drop key {split}" >> beam.Values()
                    | f"Write {split}"
                    >> write_split.WriteSplit(
                        artifact_utils.get_split_uri([examples], split),
                        example_gen_pb2.FORMAT_TFRECORDS_GZIP,
                    )
                )

        io_utils.write_string_file(
            os.path.join(examples.uri, CLASS_NAMES_FILE), json.dumps({"class_names": class_names}, indent=1)
        )
        examples.set_string_custom_property("class_names", json.dumps(class_names))
        examples.set_string_custom_property(
            "payload_format", example_gen_pb2.PayloadFormat.Name(example_gen_pb2.FORMAT_TF_EXAMPLE)
        )
        examples.set_string_custom_property("file_format", "tfrecords_gzip")
        examples.set_int_custom_property("num_files", len(files))
