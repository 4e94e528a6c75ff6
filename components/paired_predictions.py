"""Every model's answers on the very same test examples: what the Evaluator's comparison with the
served model and the run's comparison report both start from.

The raw test examples ImageExampleGen wrote are read once; each model folder (any format,
by its model.json: ``trainers.classifier``) predicts all of them, so the preprocessing is the
pushed one, and the statistics of the lists of right and wrong answers are ``core.statistics``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from twinflow.core import fs
from twinflow.core.contract import FILENAME_KEY, LABEL_KEY
from twinflow.trainers.formats.load import predict_probabilities


@dataclass(frozen=True)
class TestSet:
    __test__ = False  # a data class, not something for pytest to collect

    examples: list[bytes]  # serialized raw tf.Examples, in file order
    labels: np.ndarray  # int class index per example
    filenames: list[str]


def read_test_split(examples_uri: str, split: str = "test") -> TestSet:
    """The raw examples of one split of an ImageExampleGen output."""
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
    probabilities = predict_probabilities(model_dir, test.examples)
    return probabilities.argmax(axis=1), probabilities
