"""Your own model (``--model-module``): a Python file or ``package.module`` exposing the builders twinflow calls.

The contract (docs/own-model.md):

* ``build_keras(input_shape, num_classes) -> tf_keras.Model`` and/or ``build_torch(input_shape, num_classes) ->
  torch.nn.Module``; a module with one builder trains that framework only.
* ``input_shape`` is ``(height, width, channels)`` for both. The Keras model receives the Transform output as it
  is, float32 NHWC ``[batch, H, W, C]``; the torch model receives the same images as float32 NCHW
  ``[batch, C, H, W]`` (the twin CNN's layout, channels_last in memory), normalised per channel with the data's
  own mean and variance (the twin CNNs' Transform).
* Both return logits ``[batch, num_classes]`` (twinflow applies softmax at serving).
* Keras models are tf-keras objects (what TFX 1.16 and TFMA read): a Keras 3 model is refused.

twinflow checks each builder's output shape before training, records the module's sha256 in the model card and
the Trainer's cache key, and says plainly when the two models are not twins (their parameter counts differ).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinflow.core import fs
from twinflow.core.errors import ConfigError

BUILDERS = {"keras": "build_keras", "lightning": "build_torch"}  # framework → the builder it calls


@dataclass(frozen=True)
class UserModule:
    """A loaded ``--model-module``: where it came from, its content hash, and its builders by framework."""

    spec: str
    name: str
    sha256: str
    builders: dict[str, Callable[..., Any]]

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(name for name in BUILDERS if name in self.builders)

    def builder(self, framework: str) -> Callable[..., Any]:
        if framework not in self.builders:
            raise ConfigError(
                f"--model-module {self.spec} has no {BUILDERS.get(framework, 'builder')} for {framework}: "
                f"it trains {', '.join(self.frameworks)} only"
            )
        return self.builders[framework]


def load_user_module(spec: str) -> UserModule:
    """A ``.py`` file (by path) or an importable ``package.module``; one line naming what is wrong otherwise."""
    try:
        if spec.endswith(".py") or os.sep in spec:
            if not os.path.isfile(spec):
                raise ConfigError(f"--model-module {spec}: no such file")
            name = "twinflow_user_model_" + hashlib.sha256(os.path.abspath(spec).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(name, spec)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # picklable by name within this process
            module_spec.loader.exec_module(module)
            source = spec
        else:
            module = importlib.import_module(spec)
            source = str(getattr(module, "__file__", "") or "")
    except ConfigError:
        raise
    except Exception as err:  # the user's code: whatever it raises, say where in one line
        raise ConfigError(f"--model-module {spec} does not import: {type(err).__name__}: {err}") from None
    builders = {framework: getattr(module, name) for framework, name in BUILDERS.items() if hasattr(module, name)}
    if not builders:
        raise ConfigError(f"--model-module {spec} defines neither build_keras nor build_torch")
    digest = hashlib.sha256(fs.read_bytes(source)).hexdigest() if source else ""
    name = os.path.splitext(os.path.basename(source))[0] if source else module.__name__.rpartition(".")[2]
    return UserModule(spec, name, digest, builders)


def build_keras(module: UserModule, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The module's Keras model, checked: a tf-keras object whose output is ``[batch, num_classes]``."""
    import numpy as np
    import tensorflow as tf

    model = module.builder("keras")(input_shape, num_classes)
    if not isinstance(model, tf.keras.Model):
        kind = f"{type(model).__module__}.{type(model).__name__}"
        hint = " (a Keras 3 model: build it with tf_keras, e.g. 'import tf_keras as keras')" if "keras" in kind else ""
        raise ConfigError(f"--model-module {module.spec}: build_keras returned a {kind}, not a tf-keras Model{hint}")
    shape = tuple(model(np.zeros((2, *input_shape), np.float32), training=False).shape)
    _check_output("build_keras", module, shape, num_classes)
    return model


def build_torch(module: UserModule, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The module's torch model, checked: an ``nn.Module`` whose output is ``[batch, num_classes]``."""
    import torch

    model = module.builder("lightning")(input_shape, num_classes)
    if not isinstance(model, torch.nn.Module):
        kind = type(model).__name__
        raise ConfigError(f"--model-module {module.spec}: build_torch returned a {kind}, not an nn.Module")
    height, width, channels = input_shape
    with torch.no_grad():
        was_training = model.training
        shape = tuple(model.eval()(torch.zeros(2, channels, height, width)).shape)
        model.train(was_training)
    _check_output("build_torch", module, shape, num_classes)
    return model


def _check_output(builder: str, module: UserModule, shape: tuple[int, ...], num_classes: int) -> None:
    if shape != (2, num_classes):
        raise ConfigError(
            f"--model-module {module.spec}: {builder}'s model answers a batch of 2 with shape {list(shape)}, "
            f"expected [2, {num_classes}] (logits, one per class)"
        )


def parameter_counts(module: UserModule, input_shape: tuple[int, int, int], num_classes: int) -> dict[str, int]:
    """Each framework's parameter count as Keras counts it (the torch side includes batch norm statistics)."""
    from twinflow.trainers.lightning.parameters import count_parameters

    counts = {}
    if "keras" in module.builders:
        counts["keras"] = int(build_keras(module, input_shape, num_classes).count_params())
    if "lightning" in module.builders:
        counts["lightning"] = count_parameters(build_torch(module, input_shape, num_classes))
    return counts


def twins_words(module: UserModule, counts: dict[str, int]) -> str:
    """One line on the module's models: their parameter counts side by side, and whether they can be twins."""
    sizes = ", ".join(f"{framework} {count:,} parameters" for framework, count in counts.items())
    if len(counts) < 2:
        return f"--model-module {module.spec}: {sizes}; trains {', '.join(counts)} only"
    twins = len(set(counts.values())) == 1
    verdict = "the same count, as twins must have" if twins else "NOT twins: their parameter counts differ"
    return f"--model-module {module.spec}: {sizes} ({verdict})"


def module_sha256(spec: str) -> str:
    """The content hash of a ``--model-module`` without importing it (the Trainer's cache key: edited code retrains)."""
    if spec.endswith(".py") or os.sep in spec:
        return hashlib.sha256(fs.read_bytes(spec)).hexdigest() if os.path.isfile(spec) else ""
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        return ""
    origin = found.origin if found else None
    return hashlib.sha256(fs.read_bytes(origin)).hexdigest() if origin and os.path.isfile(origin) else ""


def why_not_prunable(module: UserModule, input_shape: tuple[int, int, int], num_classes: int) -> str | None:
    """Why tfmot's magnitude pruning cannot wrap the module's Keras model (a subclassed model, say); None if it can."""
    import tensorflow_model_optimization as tfmot

    try:
        tfmot.sparsity.keras.prune_low_magnitude(build_keras(module, input_shape, num_classes))
    except (ValueError, TypeError) as err:
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    return None
