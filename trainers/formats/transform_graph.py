"""A served model that reads ``image_xf`` behind a copy of the Transform graph (ONNX, TFLite).

Raw inputs go through the very ``tft`` graph the trainer read, copied beside the model file,
so preprocessing is never re-written outside TensorFlow. Subclasses load one model format
and answer ``predict_transformed``; the TFMA hooks, the comparison and the server use them.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core import fs
from twinflow.core.contract import IMAGE_KEY, IMAGE_XF_KEY
from twinflow.core.model_card import ModelCard, read_model_card


class TransformGraphClassifier:
    """``<artifact>`` + ``transform_graph/`` from one serving directory; ``format`` names the card format read."""

    format: str = ""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = str(model_dir)
        self.card = read_model_card(self.model_dir)
        if self.card.format != self.format or self.card.transform_graph is None:
            raise ValueError(
                f"{model_dir}: holds a {self.card.format} model, not a {self.format} model with a transform graph"
            )
        self.class_names: list[str] = list(self.card.class_names)
        with fs.gfile().GFile(fs.join(self.model_dir, self.card.artifact), "rb") as handle:
            self._load(handle.read(), self.card)  # runtimes read local files only; the model may sit in a bucket
        self._tft_output = tft.TFTransformOutput(fs.join(self.model_dir, self.card.transform_graph))
        layer = self._tft_output.transform_features_layer()
        image_spec = {IMAGE_KEY: self._tft_output.raw_feature_spec()[IMAGE_KEY]}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def transform_examples(serialized: tf.Tensor) -> tf.Tensor:
            return layer(tf.io.parse_example(serialized, image_spec))[IMAGE_XF_KEY]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def transform_image_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
            return layer({IMAGE_KEY: image_bytes})[IMAGE_XF_KEY]

        self._tft_layer = layer
        self._transform_examples = transform_examples
        self._transform_image_bytes = transform_image_bytes

    def _load(self, model_bytes: bytes, card: ModelCard) -> None:
        raise NotImplementedError

    def predict_transformed(self, image_xf: np.ndarray) -> np.ndarray:
        """``image_xf`` [N,H,W,C] → class probabilities [N,K]."""
        raise NotImplementedError

    def transform_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        """Serialized raw tf.Examples → ``image_xf`` [N,H,W,C] float32, through the transform graph."""
        return (
            self._transform_examples(tf.constant(np.asarray(serialized, dtype=object).reshape(-1)))
            .numpy()
            .astype(np.float32, copy=False)
        )

    def transform_image_bytes(self, image_bytes: list[bytes] | np.ndarray) -> np.ndarray:
        """Encoded JPEG/PNG images → ``image_xf`` [N,H,W,C] float32."""
        return (
            self._transform_image_bytes(tf.constant(np.asarray(image_bytes, dtype=object).reshape(-1)))
            .numpy()
            .astype(np.float32, copy=False)
        )

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        return self.predict_transformed(self.transform_examples(serialized))

    def predict_image_bytes(self, image_bytes: list[bytes] | np.ndarray) -> np.ndarray:
        return self.predict_transformed(self.transform_image_bytes(image_bytes))
