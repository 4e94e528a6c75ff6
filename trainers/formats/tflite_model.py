"""A TFLite model (the Keras int8 variant): the TFLite interpreter behind the Transform graph.

The TFLite file reads ``image_xf`` (float, NHWC) and answers probabilities; its inside is
integer. It is always fed the *transformed* image computed here, never raw features, so
TFMA's TFLite extractor (which fills a missing input with -1) is not used for it.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import tensorflow as tf

from twinflow.core.model_card import ModelCard
from twinflow.trainers.formats.transform_graph import TransformGraphClassifier


class TfliteImageClassifier(TransformGraphClassifier):
    """``model.tflite`` + ``transform_graph/``; one interpreter, used by one caller at a time."""

    format = "tflite"

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None):
        self._threads = threads
        super().__init__(model_dir)

    def _load(self, model_bytes: bytes, card: ModelCard) -> None:
        self._interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=self._threads or None)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = -1
        self._lock = threading.Lock()  # an interpreter holds its tensors: one invocation at a time

    def predict_transformed(self, image_xf: np.ndarray) -> np.ndarray:
        image_xf = np.ascontiguousarray(image_xf, dtype=np.float32)
        with self._lock:
            if image_xf.shape[0] != self._batch:  # resizing reallocates: only when the batch size changes
                self._interpreter.resize_tensor_input(self._input["index"], list(image_xf.shape))
                self._interpreter.allocate_tensors()
                self._batch = image_xf.shape[0]
            self._interpreter.set_tensor(self._input["index"], image_xf)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"]).copy()
