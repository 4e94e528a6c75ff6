"""Weights between a Keras twin and its torch twin, both ways, and checked loading of either.

Tensors are paired by a rule, never a hand-written list: a torch twin that mirrors Keras names
(``torch_mobilenet_v2``: a module's ``keras_prefix`` + attribute = the Keras layer name) pairs
by name; one that does not (the twin CNNs' ``nn.Sequential``) pairs its modules holding
parameters with the Keras layers holding weights, in order, checking their kinds. Layouts:
conv kernels HWIO ↔ OIHW, depthwise H W C 1 ↔ C 1 H W, dense kernels transposed (with the
flatten order NHWC ↔ NCHW for a dense layer after a flatten), batch norm gamma, beta,
moving_mean, moving_variance ↔ weight, bias, running_mean, running_var.

Every load is checked before anything is written: a missing tensor or a shape that differs
stops it with one line naming the tensor and both shapes (``ConfigError``). The one mismatch
allowed is the head's class count (or a source without a head): the head keeps its fresh
weights and the returned ``PortResult`` says so, for the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import torch
from torch import nn

from twinflow.core.errors import ConfigError
from twinflow.trainers.backbones.torch_mobilenet_v2 import keras_layer_names

Convert = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PortResult:
    """What a load or port did, worded for the model card."""

    source: str
    tensors: int  # tensors written
    head: str  # "from the source" or "new: <why>"

    @property
    def new_head(self) -> bool:
        return self.head != HEAD_FROM_SOURCE


HEAD_FROM_SOURCE = "from the source"


@dataclass(frozen=True)
class _Pair:
    keras_key: str  # "<layer name>/<weight name>", e.g. "block_3_expand/kernel"
    torch_key: str  # state_dict key, e.g. "blocks.3.expand.weight"
    to_torch: Convert
    to_keras: Convert


def _same(array: np.ndarray) -> np.ndarray:
    return array


def _conv_to_torch(kernel: np.ndarray) -> np.ndarray:
    return kernel.transpose(3, 2, 0, 1)  # H W I O → O I H W


def _conv_to_keras(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # O I H W → H W I O


def _depthwise(array: np.ndarray) -> np.ndarray:
    return array.transpose(2, 3, 0, 1)  # H W C 1 ↔ C 1 H W (the permutation is its own inverse)


def _transpose(array: np.ndarray) -> np.ndarray:
    return array.T


def _flattened_dense(height: int, width: int, channels: int) -> tuple[Convert, Convert]:
    """A dense kernel after a flatten: Keras's rows run over (h, w, c), torch's columns over (c, h, w)."""

    def to_torch(kernel: np.ndarray) -> np.ndarray:
        units = kernel.shape[-1]
        return kernel.reshape(height, width, channels, units).transpose(3, 2, 0, 1).reshape(units, -1)

    def to_keras(weight: np.ndarray) -> np.ndarray:
        units = weight.shape[0]
        return weight.reshape(units, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, units)

    return to_torch, to_keras


_BATCH_NORM = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def _torch_kind(module: nn.Module) -> str:
    if _is_depthwise(module):
        return "DepthwiseConv2D"
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "Conv2D"
    if isinstance(module, nn.Linear):
        return "Dense"
    if isinstance(module, nn.BatchNorm2d):
        return "BatchNormalization"
    return type(module).__name__


def _module_pairs(path: str, module: nn.Module, layer: tf.keras.layers.Layer, flatten: tuple | None) -> list[_Pair]:
    kind = _torch_kind(module)
    if kind != type(layer).__name__:
        raise ConfigError(
            f"port: torch module {path} is a {kind} but Keras layer {layer.name} is a {type(layer).__name__}"
        )
    prefix = f"{path}." if path else ""
    if kind == "BatchNormalization":
        return [_Pair(f"{layer.name}/{k}", prefix + t, _same, _same) for t, k in _BATCH_NORM.items()]
    if kind == "DepthwiseConv2D":
        weight = _Pair(f"{layer.name}/depthwise_kernel", prefix + "weight", _depthwise, _depthwise)
    elif kind == "Conv2D":
        weight = _Pair(f"{layer.name}/kernel", prefix + "weight", _conv_to_torch, _conv_to_keras)
    elif flatten is not None:
        weight = _Pair(f"{layer.name}/kernel", prefix + "weight", *_flattened_dense(*flatten))
    else:
        weight = _Pair(f"{layer.name}/kernel", prefix + "weight", _transpose, _transpose)
    pairs = [weight]
    if getattr(module, "bias", None) is not None:
        pairs.append(_Pair(f"{layer.name}/bias", prefix + "bias", _same, _same))
    return pairs


def _weighted_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    return [layer for layer in model.layers if layer.weights]


def _weighted_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (path, module)
        for path, module in model.named_modules()
        if list(module.parameters(recurse=False)) or list(module.buffers(recurse=False))
    ]


def _flatten_before(model: tf.keras.Model, layer: tf.keras.layers.Layer) -> tuple[int, int, int] | None:
    """(H, W, C) when ``layer`` reads a flattened NHWC feature map (Dropout layers between are skipped)."""
    layers = model.layers
    index = layers.index(layer) - 1
    while index >= 0 and isinstance(layers[index], tf.keras.layers.Dropout):
        index -= 1
    if index >= 0 and isinstance(layers[index], tf.keras.layers.Flatten):
        shape = layers[index].input_shape
        if len(shape) == 4:
            return tuple(int(s) for s in shape[1:])  # type: ignore[return-value]
    return None


def tensor_pairs(keras_model: tf.keras.Model, torch_model: nn.Module) -> list[_Pair]:
    """Every tensor of the twins paired, with its layout conversion each way (see the module docstring)."""
    names = keras_layer_names(torch_model)
    pairs: list[_Pair] = []
    if names:
        keras_layers = {layer.name: layer for layer in keras_model.layers}
        for path, module in _weighted_modules(torch_model):
            if path not in names:
                raise ConfigError(
                    f"port: torch module {path} has no Keras name (is {type(torch_model).__name__} a twin?)"
                )
            layer = keras_layers.get(names[path])
            if layer is None:
                raise ConfigError(
                    f"port: torch module {path} mirrors Keras layer {names[path]}, which the Keras model lacks"
                )
            pairs += _module_pairs(path, module, layer, _flatten_before(keras_model, layer))
        paired = {pair.keras_key for pair in pairs}
        unpaired = [key for key in keras_tensors(keras_model) if key not in paired]
        if unpaired:
            raise ConfigError(f"port: Keras tensor {unpaired[0]} has no torch twin ({len(unpaired)} such tensors)")
        return pairs
    modules, layers = _weighted_modules(torch_model), _weighted_layers(keras_model)
    if len(modules) != len(layers):
        raise ConfigError(
            f"port: the torch model has {len(modules)} modules with weights, the Keras model {len(layers)} layers"
        )
    for (path, module), layer in zip(modules, layers, strict=True):
        pairs += _module_pairs(path, module, layer, _flatten_before(keras_model, layer))
    return pairs


def keras_tensors(model: tf.keras.Model) -> dict[str, tf.Variable]:
    """The model's variables by "<layer>/<weight>", in layer order."""
    return {f"{layer.name}/{_weight_name(w)}": w for layer in model.layers for w in layer.weights}


def _weight_name(variable: tf.Variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def torch_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict's tensors but batch norm's step counters (Keras has none; momentum makes them unused)."""
    return {key: value for key, value in model.state_dict().items() if not key.endswith("num_batches_tracked")}


def keras_head_keys(model: tf.keras.Model) -> list[str]:
    """The head: the last layer with weights, a dense layer (the class count is its last kernel axis)."""
    layer = _weighted_layers(model)[-1]
    return (
        [f"{layer.name}/{_weight_name(w)}" for w in layer.weights] if isinstance(layer, tf.keras.layers.Dense) else []
    )


def torch_head_keys(model: nn.Module) -> list[str]:
    path, module = _weighted_modules(model)[-1]
    prefix = f"{path}." if path else ""
    return (
        [prefix + name for name, _ in module.named_parameters(recurse=False)] if isinstance(module, nn.Linear) else []
    )


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(s) for s in shape))


def check_source(
    target: Mapping[str, tuple[int, ...]],
    source: Mapping[str, np.ndarray],
    head: list[str],
    source_name: str,
    classes_axis: Callable[[str], int],
) -> tuple[dict[str, np.ndarray], str]:
    """The source's tensors for ``target``'s keys, and the head's fate; a mismatch raises one line.

    ``target`` maps each key to its shape; ``source`` is already in the target's naming and
    layout. The head (``head``'s keys) may be missing altogether or differ only along the class
    axis: then it is left out and the head is "new".
    """
    head_shapes = {k: (tuple(source[k].shape) if k in source else None) for k in head}
    head_new = ""
    if head and all(shape is None for shape in head_shapes.values()):
        head_new = "new: the source has no head"
    elif head and all(shape is not None for shape in head_shapes.values()):
        source_classes = {head_shapes[k][classes_axis(k)] for k in head}  # type: ignore[index]
        if _differs_in_classes_only(target, head_shapes, classes_axis) and len(source_classes) == 1:
            target_classes = target[head[0]][classes_axis(head[0])]
            head_new = f"new: the source has {source_classes.pop()} classes, this model {target_classes}"
    unexpected = [key for key in source if key not in target]
    chosen: dict[str, np.ndarray] = {}
    for key, shape in target.items():
        if head_new and key in head:
            continue
        if key not in source:
            raise ConfigError(f"{key}: missing in {source_name} (model shape {_shape(shape)})")
        if tuple(source[key].shape) != tuple(shape):
            raise ConfigError(
                f"{key}: shape {_shape(tuple(source[key].shape))} in {source_name}, {_shape(shape)} in the model"
            )
        chosen[key] = source[key]
    if unexpected and not (head_new and len(unexpected) <= len(head)):
        key = unexpected[0]
        raise ConfigError(
            f"{key}: shape {_shape(tuple(source[key].shape))} in {source_name}, absent from the model "
            f"({len(unexpected)} such tensors: a different architecture?)"
        )
    return chosen, head_new or HEAD_FROM_SOURCE


def _differs_in_classes_only(
    target: Mapping[str, tuple[int, ...]], head_shapes: Mapping[str, tuple | None], classes_axis: Callable[[str], int]
) -> bool:
    for key, shape in head_shapes.items():
        wanted = tuple(target[key])
        if shape is None or len(shape) != len(wanted) or shape == wanted:
            return False
        axis = classes_axis(key) % len(wanted)
        if any(a != b for i, (a, b) in enumerate(zip(shape, wanted, strict=True)) if i != axis):
            return False
    return True


def _keras_classes_axis(key: str) -> int:
    return -1  # kernel (features, classes), bias (classes,)


def _torch_classes_axis(key: str) -> int:
    return 0  # weight (classes, features), bias (classes,)


def assign_keras(model: tf.keras.Model, source: Mapping[str, np.ndarray], source_name: str) -> PortResult:
    """Load tensors named "<layer>/<weight>" (Keras layouts) into ``model``, checked first."""
    variables = keras_tensors(model)
    target = {key: tuple(v.shape) for key, v in variables.items()}
    chosen, head = check_source(target, source, keras_head_keys(model), source_name, _keras_classes_axis)
    for key, value in chosen.items():
        variables[key].assign(np.asarray(value, dtype=variables[key].dtype.as_numpy_dtype))
    return PortResult(source=source_name, tensors=len(chosen), head=head)


def assign_torch(model: nn.Module, source: Mapping[str, np.ndarray | torch.Tensor], source_name: str) -> PortResult:
    """Load a state_dict-named mapping (torch layouts) into ``model``, checked first."""
    tensors = torch_tensors(model)
    target = {key: tuple(t.shape) for key, t in tensors.items()}
    chosen, head = check_source(target, source, torch_head_keys(model), source_name, _torch_classes_axis)
    with torch.no_grad():
        for key, value in chosen.items():
            tensors[key].copy_(torch.as_tensor(np.array(value)))
    return PortResult(source=source_name, tensors=len(chosen), head=head)


def keras_to_torch(
    keras_model: tf.keras.Model, torch_model: nn.Module, source_name: str = "the Keras twin"
) -> PortResult:
    """Copy the Keras twin's weights into the torch twin (converted layouts)."""
    variables = keras_tensors(keras_model)
    source = {
        p.torch_key: p.to_torch(variables[p.keras_key].numpy())
        for p in tensor_pairs(keras_model, torch_model)
        if p.keras_key in variables
    }
    return assign_torch(torch_model, source, source_name)


def torch_to_keras(
    torch_model: nn.Module, keras_model: tf.keras.Model, source_name: str = "the torch twin"
) -> PortResult:
    """Copy the torch twin's weights into the Keras twin (converted layouts)."""
    tensors = torch_tensors(torch_model)
    source = {
        p.keras_key: p.to_keras(tensors[p.torch_key].detach().cpu().numpy())
        for p in tensor_pairs(keras_model, torch_model)
        if p.torch_key in tensors
    }
    return assign_keras(keras_model, source, source_name)
