"""The torch twin of ``keras_mobilenet_v2``: Keras applications' MobileNetV2 in plain torch.nn.

torchvision does not import beside this project's CPU torch, and its MobileNetV2 differs from
Keras's anyway (symmetric padding, batch-norm epsilon 1e-5): this module mirrors Keras's
builder through ``mobilenet_v2_spec``. Module names follow Keras's layer names (a block's
``keras_prefix`` plus the attribute name: ``blocks.3.expand_BN`` is Keras's
``block_3_expand_BN``), which is how ``port`` pairs the twins' tensors without a hand-made list.

Input layout: the torch twins take what today's CNN twin takes, an NCHW float tensor that is
the Transform's NHWC batch permuted (``images.permute(0, 3, 1, 2)``, channels_last memory), in
the 0..255 range; the ONNX serving wrapper does that permutation. The model is built for one
input size, as the Keras twin is: the stride-2 paddings depend on it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from twinflow.trainers.backbones import mobilenet_v2_spec as spec

Padding = Literal["keras", "symmetric"]  # "symmetric" (torchvision's) exists to show the parity test fails


class InputScaling(nn.Module):
    """The Keras twin's ``input_scaling`` and ``grey_to_rgb`` layers: x / 127.5 − 1, grey repeated to RGB."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32) * spec.INPUT_SCALE + spec.INPUT_OFFSET
        return torch.cat([x, x, x], dim=1) if self.channels == 1 else x


def _bn(channels: int, epsilon: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=epsilon, momentum=spec.TORCH_BN_MOMENTUM)


def _pad(size: tuple[int, int], padding: Padding, keras_rule) -> tuple[nn.Module, int, tuple[int, int]]:
    """(padding module, conv padding, padded size) for a stride-2 3x3 convolution over ``size``."""
    if padding == "symmetric":
        return nn.Identity(), 1, (size[0] + 2, size[1] + 2)
    (top, bottom), (left, right) = keras_rule(size[0]), keras_rule(size[1])
    return nn.ZeroPad2d((left, right, top, bottom)), 0, (size[0] + top + bottom, size[1] + left + right)


def _strided(padded: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple(spec.conv_output_size(s, 3, stride) for s in padded)  # type: ignore[return-value]


class Stem(nn.Module):
    """``Conv1`` (3x3, stride 2, TensorFlow 'same' padding) → ``bn_Conv1`` → ReLU6."""

    keras_prefix = ""

    def __init__(self, filters: int, size: tuple[int, int], padding: Padding, bn_epsilon: float):
        super().__init__()
        self.pad, conv_padding, padded = _pad(size, padding, lambda n: spec.same_padding(n, 3, 2))
        self.Conv1 = nn.Conv2d(3, filters, 3, stride=2, padding=conv_padding, bias=False)
        self.bn_Conv1 = _bn(filters, bn_epsilon)
        self.relu = nn.ReLU6()
        self.output_size = _strided(padded, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn_Conv1(self.Conv1(self.pad(x))))


class InvertedResidual(nn.Module):
    """``_inverted_res_block``: 1x1 expand (not in block 0) → 3x3 depthwise → 1x1 project, residual if shapes allow."""

    def __init__(
        self,
        block_id: int,
        block: spec.Block,
        in_channels: int,
        alpha: float,
        size: tuple[int, int],
        padding: Padding,
        bn_epsilon: float,
    ):
        super().__init__()
        self.keras_prefix = spec.block_prefix(block_id)
        out_channels = spec.block_output_filters(block, alpha)
        hidden = in_channels
        if block_id:
            hidden = block.expansion * in_channels
            self.expand = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_BN = _bn(hidden, bn_epsilon)
        if block.stride == 2:
            self.pad, conv_padding, padded = _pad(size, padding, lambda n: spec.correct_pad(n, 3))
        else:
            self.pad, conv_padding, padded = nn.Identity(), 1, (size[0] + 2, size[1] + 2)
        self.depthwise = nn.Conv2d(
            hidden, hidden, 3, stride=block.stride, padding=conv_padding, groups=hidden, bias=False
        )
        self.depthwise_BN = _bn(hidden, bn_epsilon)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_BN = _bn(out_channels, bn_epsilon)
        self.relu = nn.ReLU6()
        self.residual = in_channels == out_channels and block.stride == 1
        self.out_channels = out_channels
        self.output_size = _strided(padded, block.stride)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if hasattr(self, "expand"):
            x = self.relu(self.expand_BN(self.expand(x)))
        x = self.relu(self.depthwise_BN(self.depthwise(self.pad(x))))
        x = self.project_BN(self.project(x))
        return inputs + x if self.residual else x


class Top(nn.Module):
    """``Conv_1`` (1x1 to 1280 channels, wider only above alpha 1.0) → ``Conv_1_bn`` → ReLU6."""

    keras_prefix = ""

    def __init__(self, in_channels: int, filters: int, bn_epsilon: float):
        super().__init__()
        self.Conv_1 = nn.Conv2d(in_channels, filters, 1, bias=False)
        self.Conv_1_bn = _bn(filters, bn_epsilon)
        self.relu = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.Conv_1_bn(self.Conv_1(x)))


class TorchMobileNetV2(nn.Module):
    """The twin: input scaling → MobileNetV2 backbone → global average pool → dropout → ``logits``.

    ``padding`` and ``bn_epsilon`` exist so a test can show that the parity check catches a
    torchvision-style network; anything but the defaults is not a twin.
    """

    keras_prefix = ""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        alpha: float = 1.0,
        dropout: float = 0.2,
        padding: Padding = "keras",
        bn_epsilon: float = spec.BN_EPSILON,
        bn_momentum: float = spec.KERAS_BN_MOMENTUM,
    ):
        super().__init__()
        height, width, channels = input_shape
        if channels not in (1, 3):
            raise ValueError(f"mobilenet_v2 takes 1 (grey) or 3 (RGB) channels, not {channels}")
        self.input_scaling = InputScaling(channels)
        self.stem = Stem(spec.first_block_filters(alpha), (height, width), padding, bn_epsilon)
        blocks, in_channels, size = [], spec.first_block_filters(alpha), self.stem.output_size
        for block_id, block in enumerate(spec.BLOCKS):
            blocks.append(InvertedResidual(block_id, block, in_channels, alpha, size, padding, bn_epsilon))
            in_channels, size = blocks[-1].out_channels, blocks[-1].output_size
        self.blocks = nn.ModuleList(blocks)
        self.top = Top(in_channels, spec.last_conv_filters(alpha), bn_epsilon)
        self.head_dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(spec.last_conv_filters(alpha), num_classes)
        self.inference_modules: tuple[str, ...] = ()  # paths kept in eval() by train(): see freeze_backbone
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 1 - bn_momentum  # torch weighs the new batch, Keras the running value
        _init_like_keras(self)

    @staticmethod
    def unit_paths() -> list[str]:
        """The freezing units' module paths in mobilenet_v2_spec's numbering: stem, blocks 0..16, top."""
        return ["stem", *(f"blocks.{i}" for i in range(len(spec.BLOCKS))), "top"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_scaling(images))
        for block in self.blocks:
            x = block(x)
        x = self.top(x).mean(dim=(2, 3))
        return self.logits(self.head_dropout(x))

    def train(self, mode: bool = True) -> TorchMobileNetV2:
        """As nn.Module.train, but frozen parts stay in eval(): a LightningModule's train() cannot wake them."""
        super().train(mode)
        for path in self.inference_modules:
            self.get_submodule(path).eval()
        return self


def _init_like_keras(model: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform kernels, zero biases (batch norm's defaults already agree)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def freeze_backbone(model: TorchMobileNetV2, top_blocks: int, train_batch_norm: bool = False) -> None:
    """``keras_mobilenet_v2.set_trainable_blocks`` for the torch twin, same unit numbering.

    Frozen parameters get ``requires_grad = False`` (no gradient is computed for them, nor for
    the layers below the lowest trainable one), and frozen units run in eval() — batch norm on
    its running statistics, which stay unchanged — even when Lightning puts the model in
    train(). Lightning's ``BaseFinetuning.freeze`` would instead leave batch norm on batch
    statistics. Batch norm inside unfrozen units stays frozen too unless ``train_batch_norm``.
    """
    unfrozen = spec.trainable_units(top_blocks)
    inference: list[str] = []
    for index, unit_path in enumerate(model.unit_paths()):
        if index not in unfrozen:
            inference.append(unit_path)
        for path, module in model.get_submodule(unit_path).named_modules(prefix=unit_path):
            is_batch_norm = isinstance(module, nn.BatchNorm2d)
            trains = index in unfrozen and (train_batch_norm or not is_batch_norm)
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(trains)
            if index in unfrozen and is_batch_norm and not trains:
                inference.append(path)
    model.inference_modules = tuple(inference)
    model.train(model.training)


def keras_layer_names(model: nn.Module) -> dict[str, str]:
    """Module path → the Keras twin's layer name, for every module holding parameters or buffers.

    The Keras name is the owning module's ``keras_prefix`` plus the attribute name; modules
    that declare no prefix (a model not built as a Keras mirror) are left out.
    """
    names: dict[str, str] = {}
    for path, module in model.named_modules():
        if not path or not (list(module.parameters(recurse=False)) or list(module.buffers(recurse=False))):
            continue
        parent_path, _, attribute = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        prefix = getattr(parent, "keras_prefix", None)
        if prefix is not None:
            names[path] = prefix + attribute
    return names
