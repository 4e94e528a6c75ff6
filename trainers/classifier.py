"""Any twinflow model folder, loaded by its model.json, as a classifier of serialized raw tf.Examples.

A SavedModel answers through its ``serving_default`` signature (the Transform graph inside it);
ONNX and TFLite models through their copied transform graph (``twinflow.trainers.transformed_model``).
The TFMA hooks, the Evaluator's comparison with the served model and the report all predict
through here, so the same model gives the same answers to each of them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import tensorflow as tf

from twinflow.core.contract import PROBABILITIES_KEY, SERVING_EXAMPLES_SIGNATURE, SIGNATURE_INPUTS
from twinflow.core.model_card import read_model_card
from twinflow.trainers.transformed_model import load_transformed_classifier

PREDICT_BATCH = 256


class Classifier(Protocol):
    class_names: list[str]

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray: ...


class SavedModelClassifier:
    """A twinflow SavedModel's serialized-examples signature, answering probabilities like the others."""

    def __init__(self, model_dir: str):
        self.card = read_model_card(model_dir)
        self.class_names = list(self.card.class_names)
        self._signature = tf.saved_model.load(model_dir).signatures[SERVING_EXAMPLES_SIGNATURE]

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        values = tf.constant(np.asarray(serialized, dtype=object).reshape(-1))
        return self._signature(**{SIGNATURE_INPUTS[SERVING_EXAMPLES_SIGNATURE]: values})[PROBABILITIES_KEY].numpy()


def load_classifier(model_dir: str) -> Classifier:
    """The classifier for a model folder's card format (saved_model, onnx or tflite)."""
    if read_model_card(model_dir).format == "saved_model":
        return SavedModelClassifier(model_dir)
    return load_transformed_classifier(model_dir)


def predict_probabilities(model_dir: str, examples: list[bytes]) -> np.ndarray:
    """Class probabilities [N, K] of the model in ``model_dir`` for serialized raw examples, in batches."""
    classifier = load_classifier(model_dir)
    chunks = [
        classifier.predict_examples(examples[i : i + PREDICT_BATCH]) for i in range(0, len(examples), PREDICT_BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(classifier.class_names)), np.float32)
