"""Any twinflow model folder, loaded by its model.json, as a classifier of serialized raw tf.Examples.

The TFMA hooks, the Evaluator's comparison with the served model and the report all predict
through here, so the same model gives the same answers to each of them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from twinflow.core.model_card import read_model_card
from twinflow.trainers.formats.saved_model import SavedModelClassifier
from twinflow.trainers.formats.transform_graph import TransformGraphClassifier

PREDICT_BATCH = 256


class Classifier(Protocol):
    class_names: list[str]

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray: ...


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


def load_transformed_classifier(
    model_dir: str, threads: int | None = None, spin: bool = True
) -> TransformGraphClassifier:
    """The classifier for a folder's card format (onnx or tflite); ``threads`` caps the runtime's threads, and
    ``spin=False`` lets ONNX Runtime's idle threads sleep at once (``formats.onnx_model.onnx_session``)."""
    card = read_model_card(model_dir)
    if card.format == "onnx":
        from twinflow.trainers.formats.onnx_model import OnnxImageClassifier

        return OnnxImageClassifier(model_dir, threads=threads, spin=spin)
    if card.format == "tflite":
        from twinflow.trainers.formats.tflite_model import TfliteImageClassifier

        return TfliteImageClassifier(model_dir, threads=threads)
    raise ValueError(f"{model_dir}: a {card.format} model is not served behind a copied transform graph")
