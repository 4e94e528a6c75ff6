"""A twinflow SavedModel (the Keras twin and its pruned variant) loaded for prediction through its
serialized-examples signature, the Transform graph inside it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from twinflow.core.contract import PROBABILITIES_KEY, SERVING_EXAMPLES_SIGNATURE, SIGNATURE_INPUTS
from twinflow.core.model_card import read_model_card


class SavedModelClassifier:
    """A twinflow SavedModel's serialized-examples signature, answering probabilities like the others."""

    def __init__(self, model_dir: str):
        self.card = read_model_card(model_dir)
        self.class_names = list(self.card.class_names)
        self._signature = tf.saved_model.load(model_dir).signatures[SERVING_EXAMPLES_SIGNATURE]

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        values = tf.constant(np.asarray(serialized, dtype=object).reshape(-1))
        return self._signature(**{SIGNATURE_INPUTS[SERVING_EXAMPLES_SIGNATURE]: values})[PROBABILITIES_KEY].numpy()
