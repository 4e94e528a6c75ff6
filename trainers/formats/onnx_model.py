"""An ONNX model (the Lightning twin and its variants) loaded for prediction: ONNX Runtime behind the
Transform graph.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

from twinflow.core.model_card import ModelCard
from twinflow.trainers.formats.transform_graph import TransformGraphClassifier

# The Lightning serving layout: <model dir>/{model.json, model.onnx, transform_graph/}.


def onnx_session(onnx_bytes: bytes, threads: int | None = None, spin: bool = True) -> ort.InferenceSession:
    """``spin=False``: pool threads sleep as soon as a call ends instead of spinning for the next one. Back-to-back
    calls (evaluation) gain from spinning; a server, whose calls come with gaps, loses the CPU it burns."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxImageClassifier(TransformGraphClassifier):
    """``model.onnx`` + ``transform_graph/`` from one serving directory."""

    format = "onnx"

    def __init__(self, model_dir: str | os.PathLike, threads: int | None = None, spin: bool = True):
        self._threads = threads
        self._spin = spin
        super().__init__(model_dir)

    def _load(self, model_bytes: bytes, card: ModelCard) -> None:
        if card.onnx is None:
            raise ValueError(f"{self.model_dir}: model.json describes no ONNX graph")
        self.session = onnx_session(model_bytes, self._threads, self._spin)
        (self._input,) = (i.name for i in self.session.get_inputs())
        (self._output,) = (o.name for o in self.session.get_outputs())

    def predict_transformed(self, image_xf: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run([self._output], {self._input: image_xf.astype(np.float32)})
        return probabilities
