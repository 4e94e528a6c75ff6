"""Is one framework really better here, and where? Both models predict the very same test images.

Both trained models predict every test-split example of the run (the raw examples
ImageExampleGen wrote, through each model's ``serving_default`` signature, so the
preprocessing is the pushed one); the statistics of the two lists of right and wrong answers
are ``core.statistics``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from core import fs
from core.contract import FILENAME_KEY, LABEL_KEY, SERVING_EXAMPLES_SIGNATURE

PREDICT_BATCH = 256


@dataclass(frozen=True)
class TestSet:
    examples: list[bytes]  # serialized raw tf.Examples, in file order
    labels: np.ndarray  # int class index per example
    filenames: list[str]


def read_test_split(examples_uri: str, split: str = "test") -> TestSet:
    """The raw test examples of one ImageExampleGen output."""
    pattern = fs.join(examples_uri, f"Split-{split}", "*")
    files = sorted(tf.io.gfile.glob(pattern) if fs.is_remote(pattern) else glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri}")
    examples, labels, names = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        examples.append(record)
        labels.append(example.features.feature[LABEL_KEY].int64_list.value[0])
        names.append(example.features.feature[FILENAME_KEY].bytes_list.value[0].decode("utf-8", errors="replace"))
    return TestSet(examples, np.asarray(labels, dtype=np.int64), names)


def predict_classes(model_dir: str, test: TestSet) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class index, probabilities) of the model in ``model_dir`` for every test example."""
    from serving.models import load_version

    model = load_version(model_dir)
    chunks = [
        model.predict(SERVING_EXAMPLES_SIGNATURE, test.examples[i : i + PREDICT_BATCH])["probabilities"]
        for i in range(0, len(test.examples), PREDICT_BATCH)
    ]
    probabilities = np.concatenate(chunks) if chunks else np.zeros((0, len(model.class_names)), np.float32)
    return probabilities.argmax(axis=1), probabilities
