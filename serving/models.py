"""One pushed version loaded for serving, the same two signatures and outputs whatever the framework.

Keras versions are SavedModels whose signatures hold the transform graph; Lightning versions
(and the int8 Keras variant) are ONNX (TFLite) models behind their copied transform graph
(``twinflow.trainers.transformed_model``). Both answer
``serving_default`` (serialized raw tf.Examples) and ``serving_image_bytes`` (encoded images)
with ``probabilities``, ``class_index``, ``class_name`` and ``class_names``, and both describe
those signatures as TF Serving's ``SignatureDef`` protos for the metadata endpoints.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from twinflow.core import fs
from twinflow.core.contract import PROBABILITIES_KEY, SERVING_IMAGE_BYTES_SIGNATURE, SIGNATURE_INPUTS
from twinflow.core.model_card import ModelCard, read_model_card
from twinflow.serving.inputs import decode_failure

PREDICT_METHOD = "tensorflow/serving/predict"
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorInfo:
    dtype: int  # types_pb2 enum
    shape: tuple[int, ...]  # -1: any size


def _outputs_info(num_classes: int) -> dict[str, TensorInfo]:
    return {
        PROBABILITIES_KEY: TensorInfo(types_pb2.DT_FLOAT, (-1, num_classes)),
        "class_index": TensorInfo(types_pb2.DT_INT64, (-1,)),
        "class_name": TensorInfo(types_pb2.DT_STRING, (-1,)),
        "class_names": TensorInfo(types_pb2.DT_STRING, (-1, num_classes)),
    }


def _signature_def(input_name: str, outputs: dict[str, TensorInfo]) -> meta_graph_pb2.SignatureDef:
    """A SignatureDef as TF's SavedModel writer makes it (tensor names ``<name>:0`` as placeholders)."""

    def info(name: str, spec: TensorInfo) -> meta_graph_pb2.TensorInfo:
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in spec.shape]
        )
        return meta_graph_pb2.TensorInfo(name=name, dtype=spec.dtype, tensor_shape=shape)

    signature = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    signature.inputs[input_name].CopyFrom(info(f"{input_name}:0", TensorInfo(types_pb2.DT_STRING, (-1,))))
    for name, spec in outputs.items():
        signature.outputs[name].CopyFrom(info(f"{name}:0", spec))
    return signature


class ServedModel:
    """What the APIs call: ``predict(signature, values)`` and the signature descriptions."""

    framework: str
    platform: str  # the V2 metadata's platform name
    card: ModelCard
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    def predict(self, signature: str, values: list[bytes]) -> Outputs:
        raise NotImplementedError

    def warm_up(self) -> None:
        """One prediction through each signature, so tracing and first-call costs never meet a client."""
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buffer, "PNG")
        png = buffer.getvalue()
        example = tf.train.Example()
        example.features.feature["image"].bytes_list.value.append(png)
        for signature in SIGNATURE_INPUTS:
            value = png if signature == SERVING_IMAGE_BYTES_SIGNATURE else example.SerializeToString()
            outputs = self.predict(signature, [value])
            if outputs[PROBABILITIES_KEY].shape != (1, len(self.class_names)):
                raise ValueError(f"{signature} answered probabilities of shape {outputs[PROBABILITIES_KEY].shape}")


def _named_outputs(probabilities: np.ndarray, class_names: list[str]) -> Outputs:
    names = np.asarray([n.encode() for n in class_names], dtype=object)
    best = probabilities.argmax(axis=1).astype(np.int64)
    return {
        PROBABILITIES_KEY: probabilities.astype(np.float32),
        "class_index": best,
        "class_name": names[best],
        "class_names": np.tile(names, (len(probabilities), 1)),
    }


class KerasModel(ServedModel):
    """A SavedModel's own signatures; the metadata is read from its saved_model.pb, as TF Serving reads it."""

    framework = "keras"
    platform = "tensorflow_savedmodel"

    def __init__(self, path: str, card: ModelCard):
        self.card = card
        self._model = tf.saved_model.load(path)
        self._functions = {name: self._model.signatures[name] for name in SIGNATURE_INPUTS}
        saved = saved_model_pb2.SavedModel()
        with fs.gfile().GFile(fs.join(path, "saved_model.pb"), "rb") as handle:
            saved.ParseFromString(handle.read())
        self.signature_defs = dict(saved.meta_graphs[0].signature_def)

    def predict(self, signature: str, values: list[bytes]) -> Outputs:
        try:
            outputs = self._functions[signature](**{SIGNATURE_INPUTS[signature]: tf.constant(values, dtype=tf.string)})
        except tf.errors.InvalidArgumentError as err:
            raise decode_failure(signature, values, err.message) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}


class TransformGraphModel(ServedModel):
    """ONNX Runtime or TFLite behind the pushed transform graph; its signatures are described as the Keras ones are."""

    framework = "lightning"
    PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}

    def __init__(self, path: str, card: ModelCard):
        from twinflow.trainers.formats.load import load_transformed_classifier

        self.card = card
        self.platform = self.PLATFORMS[card.format]
        # Requests come with gaps between them: ONNX Runtime's threads sleep then, not spin against the event loop.
        self._classifier = load_transformed_classifier(path, spin=False)
        outputs = _outputs_info(len(card.class_names))
        self.signature_defs = {name: _signature_def(SIGNATURE_INPUTS[name], outputs) for name in SIGNATURE_INPUTS}

    def predict(self, signature: str, values: list[bytes]) -> Outputs:
        try:
            if signature == SERVING_IMAGE_BYTES_SIGNATURE:
                probabilities = self._classifier.predict_image_bytes(values)
            else:
                probabilities = self._classifier.predict_examples(values)
        except tf.errors.InvalidArgumentError as err:
            raise decode_failure(signature, values, err.message) from None
        return _named_outputs(probabilities, self.class_names)


def load_version(path: str) -> ServedModel:
    """Load the version at ``path`` by its model.json; raises with the reason when it cannot be served."""
    card = read_model_card(path)
    if card.format == "saved_model":
        model: ServedModel = KerasModel(fs.join(path, card.artifact) if card.artifact != "." else path, card)
    elif card.format in TransformGraphModel.PLATFORMS:
        model = TransformGraphModel(path, card)
    else:
        raise ValueError(
            f"{path}: model.json names format {card.format!r}; this server loads saved_model, onnx and tflite"
        )
    model.framework = card.framework
    return model
