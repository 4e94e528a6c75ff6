"""The Lightning serving export: model.onnx (input ``image_xf`` in the Transform's NHWC layout, output
probabilities) beside a copy of the Transform graph, so raw bytes are served through the same tft graph.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import torch
from torch import nn

from twinflow.core import fs
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import IMAGE_XF_KEY, ONNX_FILE, PROBABILITIES_KEY, TRANSFORM_GRAPH_DIR
from twinflow.core.model_card import OnnxGraph
from twinflow.trainers.base import Exported

ONNX_OPSET = 17
STATE_DICT_FILE = "state_dict.pt"  # beside model.onnx (trainers.backbones.weights reads it)


class ServingModel(nn.Module):
    """What ONNX exports: NHWC ``image_xf`` (the Transform layout) → class probabilities."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image_xf: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image_xf.permute(0, 3, 1, 2)), dim=-1)


def export_onnx(model: nn.Module, image_size: int, channels: int, path: str | BinaryIO) -> None:
    """ONNX graph with a dynamic batch axis: ``image_xf`` [N,H,W,C] float32 → ``probabilities`` [N,K]."""
    serving = ServingModel(model).to("cpu").eval()
    example = torch.zeros(2, image_size, image_size, channels)
    torch.onnx.export(
        serving,
        (example,),
        path,
        input_names=[IMAGE_XF_KEY],
        output_names=[PROBABILITIES_KEY],
        dynamic_axes={IMAGE_XF_KEY: {0: "batch"}, PROBABILITIES_KEY: {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def export_serving_model(model: nn.Module, transform_output: str, config: TrainingConfig, path: str) -> Exported:
    """model.onnx beside a copy of the transform graph: raw bytes are served through the same tft graph."""
    onnx = io.BytesIO()
    export_onnx(model, config.image_size, config.channels, onnx)
    fs.gfile().makedirs(path)
    with fs.gfile().GFile(fs.join(path, ONNX_FILE), "wb") as handle:
        handle.write(onnx.getvalue())
    fs.copy_tree(transform_output, fs.join(path, TRANSFORM_GRAPH_DIR))
    # The weights in torch's own form too (tensors only: torch.load(weights_only=True) reads them back), for a
    # warm start from this folder (--weights served): ONNX folds batch norm into the convolutions.
    state = io.BytesIO()
    torch.save({key: value.detach().cpu() for key, value in model.state_dict().items()}, state)
    with fs.gfile().GFile(fs.join(path, STATE_DICT_FILE), "wb") as handle:
        handle.write(state.getvalue())
    return Exported(
        format="onnx",
        artifact=ONNX_FILE,
        onnx=OnnxGraph(input=IMAGE_XF_KEY, layout="NHWC", output=PROBABILITIES_KEY, opset=ONNX_OPSET),
        transform_graph=TRANSFORM_GRAPH_DIR,
    )
