"""A Lightning serving model loaded for prediction: ONNX Runtime behind the Transform graph.

Raw inputs go through the very ``tft`` graph the trainer read (copied beside model.onnx),
so preprocessing is never re-written for torch models. Used by the TFMA evaluator hooks
and by anything that serves or checks a pushed Lightning model.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tensorflow_transform as tft

from core import fs
from core.contract import IMAGE_KEY, IMAGE_XF_KEY
from core.model_card import read_model_card

# The Lightning serving layout: <model dir>/{model.json, model.onnx, transform_graph/}.
ONNX_FILE = "model.onnx"
TRANSFORM_GRAPH_DIR = "transform_graph"


class OnnxImageClassifier:
    """``model.onnx`` + ``transform_graph/`` from one serving directory."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = str(model_dir)
        self.card = read_model_card(self.model_dir)
        if self.card.format != "onnx" or self.card.onnx is None or self.card.transform_graph is None:
            raise ValueError(f"{model_dir}: holds a {self.card.format} model, not an ONNX model with a transform graph")
        self.class_names: list[str] = list(self.card.class_names)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        with fs.gfile().GFile(fs.join(self.model_dir, self.card.artifact), "rb") as handle:
            onnx_bytes = handle.read()  # ONNX Runtime reads local files only; the model may sit in a bucket
        self.session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        (self._input,) = (i.name for i in self.session.get_inputs())
        (self._output,) = (o.name for o in self.session.get_outputs())
        self._tft_output = tft.TFTransformOutput(fs.join(self.model_dir, self.card.transform_graph))
        self._tft_layer = self._tft_output.transform_features_layer()
        image_spec = {IMAGE_KEY: self._tft_output.raw_feature_spec()[IMAGE_KEY]}
        layer = self._tft_layer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def transform_examples(serialized: tf.Tensor) -> tf.Tensor:
            return layer(tf.io.parse_example(serialized, image_spec))[IMAGE_XF_KEY]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def transform_image_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
            return layer({IMAGE_KEY: image_bytes})[IMAGE_XF_KEY]

        self._transform_examples = transform_examples
        self._transform_image_bytes = transform_image_bytes

    def transform_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        """Serialized raw tf.Examples → ``image_xf`` [N,H,W,C] float32, through the transform graph."""
        return self._transform_examples(tf.constant(np.asarray(serialized, dtype=object).reshape(-1))).numpy()

    def transform_image_bytes(self, image_bytes: list[bytes] | np.ndarray) -> np.ndarray:
        """Encoded JPEG/PNG images → ``image_xf`` [N,H,W,C] float32."""
        return self._transform_image_bytes(tf.constant(np.asarray(image_bytes, dtype=object).reshape(-1))).numpy()

    def predict_transformed(self, image_xf: np.ndarray) -> np.ndarray:
        """``image_xf`` [N,H,W,C] → class probabilities [N,K]."""
        (probabilities,) = self.session.run([self._output], {self._input: image_xf.astype(np.float32)})
        return probabilities

    def predict_examples(self, serialized: list[bytes] | np.ndarray) -> np.ndarray:
        return self.predict_transformed(self.transform_examples(serialized))

    def predict_image_bytes(self, image_bytes: list[bytes] | np.ndarray) -> np.ndarray:
        return self.predict_transformed(self.transform_image_bytes(image_bytes))
