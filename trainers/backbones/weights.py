"""``--weights``: where a twin's starting weights come from, the same for the Keras and the torch twin.

* ``none``: the Keras twin initialised from the seed (Keras's own Glorot-uniform rule, drawn
  with numpy so that every process draws the same numbers), then ported to the torch twin:
  both frameworks start from identical weights. Works for the twin CNNs too.
* ``imagenet``: Keras applications' published MobileNetV2 no-top file for that width and size,
  cached where Keras caches it (``$KERAS_HOME/models/``, else ``~/.keras/models/``) and fetched
  there by Keras on a connected machine; offline, one line names the URL and the path to place it.
* ``PATH``: a Keras weights file (``.h5``, ``.weights.h5``), a torch state_dict (``.pt``, ``.pth``,
  or a Lightning ``.ckpt``), a ``.safetensors`` file, an ``.onnx`` file (only for networks without
  batch norm, which ONNX exports fold away), or a twinflow model folder (``model.json`` beside a
  Keras SavedModel, or beside a Lightning ``model.onnx`` and, if present, its state dict).

Weights from the other framework are ported; the head is kept fresh (seeded, identical in
both) when the source has none or another class count. Nothing is unpickled: h5 and
safetensors files hold arrays only, torch files load with ``weights_only=True``, a SavedModel's
variables are read without rebuilding Keras objects. The file's sha256 comes back with the
rest of the record for the model card (``WeightsOrigin``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import tensorflow as tf
from torch import nn

from twinflow.core import fs
from twinflow.core.architectures import BACKBONES
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import ONNX_FILE
from twinflow.core.errors import ConfigError
from twinflow.core.model_card import MODEL_CARD_FILE, WeightsRecord, read_model_card
from twinflow.trainers.backbones import mobilenet_v2_spec as spec
from twinflow.trainers.backbones import port

Framework = Literal["keras", "torch"]

IMAGENET_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
# A Lightning model folder's state dict, when its export keeps one beside model.onnx (read in this order).
FOLDER_STATE_DICT_FILES = ("model.safetensors", "state_dict.pt")
SAFETENSORS_PACKAGE = "safetensors==0.8.0"


@dataclass(frozen=True)
class Twins:
    """How to build one architecture's two twins (fresh weights), and its published weights if any."""

    architecture: str
    build_keras: Callable[[], tf.keras.Model]
    build_torch: Callable[[], nn.Module]
    imagenet_file: Callable[[], tuple[str, str]] | None = None  # () → (file name, URL)


def mobilenet_v2_twins(
    input_shape: tuple[int, int, int], num_classes: int, alpha: float = 1.0, dropout: float = 0.2
) -> Twins:
    from twinflow.trainers.backbones.keras_mobilenet_v2 import build_keras_mobilenet_v2
    from twinflow.trainers.backbones.torch_mobilenet_v2 import TorchMobileNetV2

    def imagenet_file() -> tuple[str, str]:
        if alpha not in spec.IMAGENET_ALPHAS:
            raise ConfigError(
                f"--weights imagenet: MobileNetV2 weights are published for widths {list(spec.IMAGENET_ALPHAS)}, "
                f"not {alpha}"
            )
        name = imagenet_file_name(alpha, spec.imagenet_rows(input_shape[:2]))
        return name, IMAGENET_BASE_URL + name

    return Twins(
        architecture="mobilenet_v2",
        build_keras=lambda: build_keras_mobilenet_v2(input_shape, num_classes, alpha, dropout),
        build_torch=lambda: TorchMobileNetV2(input_shape, num_classes, alpha, dropout),
        imagenet_file=imagenet_file,
    )


def cnn_twins(architecture: str, image_size: int, channels: int, num_classes: int) -> Twins:
    """Today's twin CNNs (twinflow.core.architectures), built by the two trainers' own ``build_model``."""

    def build_keras() -> tf.keras.Model:
        from twinflow.trainers.keras.model import build_model

        return build_model(architecture, image_size, channels, num_classes)

    def build_torch() -> nn.Module:
        from twinflow.trainers.lightning.model import build_model

        return build_model(architecture, image_size, channels, num_classes)

    return Twins(architecture=architecture, build_keras=build_keras, build_torch=build_torch)


def twins_for(config: TrainingConfig, num_classes: int) -> Twins:
    """The twins a training config names: a backbone's (at its width), a twin CNN's, or --model-module's builders."""
    if config.model_module:
        from twinflow.trainers import user_model

        module = user_model.load_user_module(config.model_module)
        shape = (config.image_size, config.image_size, config.channels)
        return Twins(
            architecture=f"module {module.name}",
            build_keras=lambda: user_model.build_keras(module, shape, num_classes),
            build_torch=lambda: user_model.build_torch(module, shape, num_classes),
        )
    if config.architecture in BACKBONES:
        shape = (config.image_size, config.image_size, config.channels)
        dropout = BACKBONES[config.architecture].head_dropout
        return mobilenet_v2_twins(shape, num_classes, config.width_multiplier, dropout)
    return cnn_twins(config.architecture, config.image_size, config.channels, num_classes)


@dataclass(frozen=True)
class WeightsOrigin:
    """Where a model's starting weights came from: what the model card records."""

    source: str  # as given: "none", "imagenet", a path
    kind: str  # seeded, keras_h5, keras_weights_h5, torch_state_dict, safetensors, onnx, keras_saved_model
    seed: int
    head: str  # "from the source", or "new: <why>"
    file: str | None = None  # the file (or folder) read
    sha256: str | None = None  # of the bytes read (a folder: of its weight files, names included)
    framework: Framework | None = None  # whose layout the source was in
    ported_to: list[str] = field(default_factory=list)  # the twins it was ported into

    def as_card(self) -> dict[str, object]:
        return asdict(self)


def imagenet_file_name(alpha: float, rows: int) -> str:
    """The file name Keras applications give MobileNetV2's no-top weights (tf_keras mobilenet_v2.py)."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def keras_cache_dir() -> str:
    """``$KERAS_HOME`` (Keras 3's variable), else tf_keras's ``~/.keras`` (``/tmp/.keras`` if read-only)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return home
    default = os.path.join(os.path.expanduser("~"), ".keras")
    if os.path.isdir(default) and not os.access(default, os.W_OK):
        return os.path.join("/tmp", ".keras")
    return default


def imagenet_weights_file(twins: Twins) -> str:
    """The cached published file, fetched by Keras into its cache if missing; offline, one line saying where."""
    if twins.imagenet_file is None:
        raise ConfigError(f"--weights imagenet: no published weights for {twins.architecture} (only mobilenet_v2)")
    name, url = twins.imagenet_file()
    cache = keras_cache_dir()
    path = os.path.join(cache, "models", name)
    if os.path.exists(path):
        return path
    try:
        # The folder must exist first: tf_keras's get_file falls back to /tmp/.keras for a cache it cannot write.
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return tf.keras.utils.get_file(name, url, cache_subdir="models", cache_dir=cache)
    except Exception as err:  # urllib's errors, reworded by Keras as plain Exceptions
        raise ConfigError(
            f"--weights imagenet: {name} is not cached and could not be fetched ({_first_line(err)}): "
            f"download {url} on a connected machine and place it at {path}"
        ) from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def apply_weights(
    source: str,
    twins: Twins,
    seed: int,
    keras_model: tf.keras.Model | None = None,
    torch_model: nn.Module | None = None,
) -> WeightsOrigin:
    """Give the twins passed the weights ``source`` names, identical in both; returns the record.

    The twin a caller does not pass is built when the source or the seeded start needs it (the
    seeded start always draws in the Keras twin), then dropped. A mismatch raises ConfigError,
    one line naming the tensor and both shapes, before training can start.
    """
    keras_twin = keras_model if keras_model is not None else twins.build_keras()
    seeded_init(keras_twin, seed)
    if source == "none":
        return WeightsOrigin(source, "seeded", seed, "new: seeded", ported_to=_to_torch(keras_twin, torch_model))

    read = _read_source(source, twins)
    if read.framework == "keras":
        result = port.assign_keras(keras_twin, read.keras_source(keras_twin), read.path)
        ported = _to_torch(keras_twin, torch_model)
    else:
        torch_twin = torch_model if torch_model is not None else twins.build_torch()
        port.keras_to_torch(keras_twin, torch_twin)  # the seeded start, so a new head is the same in both
        result = port.assign_torch(torch_twin, read.torch_source(torch_twin), read.path)
        ported = []
        if keras_model is not None:
            port.torch_to_keras(torch_twin, keras_model)
            ported = ["keras"]
    return WeightsOrigin(source, read.kind, seed, result.head, read.path, read.sha256, read.framework, ported_to=ported)


def _to_torch(keras_twin: tf.keras.Model, torch_model: nn.Module | None) -> list[str]:
    """Port the Keras twin into the torch model, if one was passed; the frameworks ported to."""
    if torch_model is None:
        return []
    port.keras_to_torch(keras_twin, torch_model)
    return ["torch"]


def seeded_init(model: tf.keras.Model, seed: int) -> None:
    """Keras's default initialisers (Glorot-uniform kernels, zero biases, unit batch norm), drawn from ``seed``.

    Each tensor draws from its own numpy generator keyed by (seed, its index), so the result
    depends on nothing else the process did before (TensorFlow's op-level seeds do).
    """
    index = 0
    for layer in model.layers:
        for variable in layer.weights:
            name = port._weight_name(variable)
            shape = tuple(variable.shape)
            if name in ("kernel", "depthwise_kernel"):
                limit = np.sqrt(6 / sum(_keras_fans(shape)))
                value = np.random.default_rng([seed, index]).uniform(-limit, limit, shape)
            elif name in ("gamma", "moving_variance"):
                value = np.ones(shape)
            else:  # bias, beta, moving_mean
                value = np.zeros(shape)
            variable.assign(value.astype(variable.dtype.as_numpy_dtype))
            index += 1


def _keras_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """tf_keras initializers' ``_compute_fans``."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = int(np.prod(shape[:-2]))
    return shape[-2] * receptive_field, shape[-1] * receptive_field


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class _Read:
    """A source read into arrays: Keras layers (in order) or a torch state dict, with its record."""

    kind: str
    framework: Framework
    path: str
    sha256: str
    keras_layers: list[tuple[str, list[tuple[str, np.ndarray]]]] | None = None  # by order
    keras_structural: dict[str, np.ndarray] | None = None  # .weights.h5: "layers/<class>_<n>/vars/<i>"
    state: dict[str, np.ndarray] | None = None

    def keras_source(self, model: tf.keras.Model) -> dict[str, np.ndarray]:
        if self.keras_structural is not None:
            return _by_structure(model, self.keras_structural)
        assert self.keras_layers is not None
        return _by_order(model, self.keras_layers, self.path)

    def torch_source(self, model: nn.Module) -> dict[str, np.ndarray]:
        assert self.state is not None
        if self.kind == "onnx" and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
            raise ConfigError(
                f"{self.path}: ONNX exports fold batch norm into the convolutions, so a network with batch norm "
                "cannot be read back from one; use the Keras twin's folder or a state dict"
            )
        state = {key: value for key, value in self.state.items() if not key.endswith("num_batches_tracked")}
        return _strip_prefix(state, port.torch_tensors(model))


def _read_source(source: str, twins: Twins) -> _Read:
    if source == "imagenet":
        path = imagenet_weights_file(twins)
        data = fs.read_bytes(path)
        return _Read("imagenet", "keras", path, _sha256(data), keras_layers=_legacy_h5_layers(data, path))
    if not fs.exists(source):
        raise ConfigError(f"--weights {source}: no such file or folder (expected none, imagenet or a path)")
    if fs.isdir(source):
        return _read_model_folder(source, twins)
    data = fs.read_bytes(source)
    digest = _sha256(data)
    lower = source.lower()
    if lower.endswith(".weights.h5"):
        return _Read("keras_weights_h5", "keras", source, digest, keras_structural=_structural_h5(data))
    if lower.endswith((".h5", ".hdf5")):
        return _Read("keras_h5", "keras", source, digest, keras_layers=_legacy_h5_layers(data, source))
    if lower.endswith((".pt", ".pth", ".ckpt")):
        return _Read("torch_state_dict", "torch", source, digest, state=_torch_state(data, source))
    if lower.endswith(".safetensors"):
        return _Read("safetensors", "torch", source, digest, state=_safetensors(data, source))
    if lower.endswith(".onnx"):
        return _Read("onnx", "torch", source, digest, state=_onnx_initializers(data))
    raise ConfigError(
        f"--weights {source}: not a known weights file (.h5, .weights.h5, .pt, .pth, .ckpt, .safetensors, .onnx) "
        "or a twinflow model folder"
    )


def _read_model_folder(folder: str, twins: Twins) -> _Read:
    if not fs.exists(fs.join(folder, MODEL_CARD_FILE)):
        raise ConfigError(f"--weights {folder}: a folder without {MODEL_CARD_FILE} is not a twinflow model folder")
    card = read_model_card(folder)
    if card.architecture != twins.architecture:
        raise ConfigError(
            f"--weights {folder}: the model there is a {card.architecture}, this run trains a {twins.architecture}"
        )
    if card.format == "saved_model":
        saved_model = fs.join(folder, card.artifact) if card.artifact != "." else folder
        variables_dir = fs.join(saved_model, "variables")
        digest = _folder_sha256(variables_dir)
        return _Read("keras_saved_model", "keras", folder, digest, keras_layers=_saved_model_layers(saved_model))
    for name in FOLDER_STATE_DICT_FILES:
        path = fs.join(folder, name)
        if fs.exists(path):
            data = fs.read_bytes(path)
            reader = _safetensors if name.endswith(".safetensors") else _torch_state
            return _Read("torch_state_dict", "torch", path, _sha256(data), state=reader(data, path))
    path = fs.join(folder, card.artifact if card.format == "onnx" else ONNX_FILE)
    data = fs.read_bytes(path)
    return _Read("onnx", "torch", path, _sha256(data), state=_onnx_initializers(data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _folder_sha256(folder: str) -> str:
    digest = hashlib.sha256()
    for name in fs.list_files(folder):
        digest.update(name.encode() + b"\0")
        digest.update(fs.read_bytes(fs.join(folder, name)))
    return digest.hexdigest()


def _split_weight_name(name: str) -> tuple[str, str]:
    """ "block_1_expand/kernel:0" → ("block_1_expand", "kernel")."""
    layer, _, weight = name.rpartition("/")
    return layer.rpartition("/")[2], weight.split(":")[0]


def _grouped(named: Iterable[tuple[str, np.ndarray]]) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """(weight name, array) pairs → layers in order of first appearance, each with its (weight, array) list."""
    layers: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name, array in named:
        layer, weight = _split_weight_name(name)
        layers.setdefault(layer, []).append((weight, array))
    return list(layers.items())


def _legacy_h5_layers(data: bytes, path: str) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """A Keras 2 / tf_keras ``save_weights(".h5")`` file (what Keras applications publish): layers in order."""
    import h5py

    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    with h5py.File(io.BytesIO(data), "r") as handle:
        root = handle.get("model_weights", handle)  # a whole-model .h5 file keeps them in a group
        if "layer_names" not in root.attrs:
            raise ConfigError(
                f"{path}: not a Keras weights file (no layer_names attribute), as save_weights('x.h5') writes"
            )
        named = []
        for layer_name in root.attrs["layer_names"]:
            group = root[text(layer_name)]
            for weight_name in group.attrs.get("weight_names", []):
                named.append((text(weight_name), np.asarray(group[text(weight_name)])))
    return _grouped(named)


def _structural_h5(data: bytes) -> dict[str, np.ndarray]:
    """A tf_keras ``save_weights(".weights.h5")`` file: arrays by their structural path."""
    import h5py

    found: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data), "r") as handle:
        handle.visititems(
            lambda name, item: found.__setitem__(name, np.asarray(item)) if isinstance(item, h5py.Dataset) else None
        )
    return found


def _by_structure(model: tf.keras.Model, found: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """tf_keras's .weights.h5 layout: a model's layers under their class name, numbered per class, in order;
    each layer's variables (trainable first) by index. Returned in "<layer>/<weight>" naming."""
    from tf_keras.src.utils.generic_utils import to_snake_case

    used: dict[str, int] = {}
    out: dict[str, np.ndarray] = {}
    claimed: set[str] = set()
    for layer in model.layers:
        name = to_snake_case(type(layer).__name__)
        used[name] = used.get(name, -1) + 1
        key = name if used[name] == 0 else f"{name}_{used[name]}"
        variables = layer._trainable_weights + layer._non_trainable_weights
        for index, variable in enumerate(variables):
            path = f"layers/{key}/vars/{index}"
            if path in found:
                out[f"{layer.name}/{port._weight_name(variable)}"] = found[path]
                claimed.add(path)
    out.update({path: array for path, array in found.items() if path not in claimed})  # flagged as unexpected
    return out


def _by_order(
    model: tf.keras.Model, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], source_name: str
) -> dict[str, np.ndarray]:
    """Keras's own rule for weights files: the n-th layer with weights takes the n-th layer's weights.

    Returned in the model's "<layer>/<weight>" naming; source layers past the model's end keep
    their own names (and are reported as absent from the model).
    """
    targets = [layer for layer in model.layers if layer.weights]
    out: dict[str, np.ndarray] = {}
    for index, (source_layer, tensors) in enumerate(layers):
        if index >= len(targets):
            out.update({f"{source_layer}/{weight}": array for weight, array in tensors})
            continue
        target = targets[index]
        wanted = [port._weight_name(w) for w in target.weights]
        names = [weight for weight, _ in tensors]
        if names != wanted:
            raise ConfigError(
                f"{target.name}: the model's layer holds {', '.join(wanted)}; layer {index + 1} with weights in "
                f"{source_name} ({source_layer}) holds {', '.join(names)}: a different architecture?"
            )
        out.update({f"{target.name}/{weight}": array for weight, array in tensors})
    return out


def _saved_model_layers(path: str) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """A Keras SavedModel's variables from its checkpoint, without loading its graph or rebuilding Keras objects.

    Keras checkpoints a model's n-th layer with weights as ``layer_with_weights-<n>/<weight>``: the
    same order ``_by_order`` pairs by. Anything else saved beside the model (its Transform layer) is ignored.
    """
    try:
        reader = tf.train.load_checkpoint(fs.join(path, "variables", "variables"))
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as err:
        raise ConfigError(f"{path}: no readable SavedModel variables ({_first_line(err)})") from None
    layers: dict[int, list[tuple[str, np.ndarray]]] = {}
    for key in reader.get_variable_to_shape_map():
        match = _LAYER_WITH_WEIGHTS.fullmatch(key)
        if match:
            layers.setdefault(int(match.group(1)), []).append((match.group(2), reader.get_tensor(key)))
    if not layers:
        raise ConfigError(f"{path}: the SavedModel holds no Keras layer weights")
    return [(f"layer {index}", _keras_order(layers[index])) for index in sorted(layers)]


_LAYER_WITH_WEIGHTS = re.compile(r"layer_with_weights-(\d+)/(\w+)/\.ATTRIBUTES/VARIABLE_VALUE")
_KERAS_WEIGHT_ORDER = ("kernel", "depthwise_kernel", "gamma", "beta", "bias", "moving_mean", "moving_variance")


def _keras_order(tensors: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """A layer's weights in the order its ``weights`` list has them (a checkpoint lists them by name)."""
    return sorted(
        tensors, key=lambda item: _KERAS_WEIGHT_ORDER.index(item[0]) if item[0] in _KERAS_WEIGHT_ORDER else 99
    )


def _torch_state(data: bytes, path: str) -> dict[str, np.ndarray]:
    """A state_dict (or a Lightning checkpoint's), loaded with weights_only=True: tensors, never objects."""
    import pickle

    import torch

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        raise ConfigError(f"{path}: not a plain state_dict ({_first_line(err)})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a Lightning checkpoint
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ConfigError(f"{path}: expected a state_dict (tensor names → tensors)")
    return {key: value.detach().cpu().numpy() for key, value in loaded.items()}


def _safetensors(data: bytes, path: str) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load
    except ImportError:
        raise ConfigError(
            f"{path}: reading .safetensors needs the safetensors package ({SAFETENSORS_PACKAGE})"
        ) from None
    return load(data)


def _onnx_initializers(data: bytes) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(data).graph
    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _strip_prefix(state: dict[str, np.ndarray], target: dict[str, object]) -> dict[str, np.ndarray]:
    """The state under the target's key names: a LightningModule or an export wrapper adds "model." and the like."""
    if not state or any(key in target for key in state):
        return state
    first = next(iter(target))
    prefixes = [key[: -len(first)] for key in state if key.endswith("." + first)]
    if len(prefixes) != 1:
        return state
    prefix = prefixes[0]
    return {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state.items()}


def starting_weights(
    config: TrainingConfig, class_count: int, source: str, note: str | None, **twin: tf.keras.Model | nn.Module
) -> WeightsRecord:
    """Give the twin (``keras_model=`` or ``torch_model=``) the starting weights ``--weights`` names (``source``,
    resolved: trainers.base.weights_source), identical in both frameworks; the model card's record of them.
    A --model-module model keeps its own initialisation."""
    if config.model_module:
        return WeightsRecord(
            source="none", kind="the module's own initialisation", seed=config.seed, head="the module's own"
        )
    origin = apply_weights(source, twins_for(config, class_count), config.seed, **twin)
    return WeightsRecord.model_validate(origin.as_card() | {"source": config.weights, "note": note})
