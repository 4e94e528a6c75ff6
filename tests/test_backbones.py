"""The MobileNetV2 twins compute the same function from the same weights, wherever the weights come from.

Small sizes on the CPU: 64 px (even at every stride-2 layer: a padding mismatch shows) and 33 px
(odd at every one; also the grey input path), width 0.35 (and 1.0 once), eight images.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

from tests.helpers import make_card
from twinflow.core.errors import ConfigError
from twinflow.trainers.backbones import mobilenet_v2_spec as spec
from twinflow.trainers.backbones import port, weights
from twinflow.trainers.backbones.keras_mobilenet_v2 import (
    build_keras_mobilenet_v2,
    layer_units,
    set_trainable_blocks,
)
from twinflow.trainers.backbones.torch_mobilenet_v2 import (
    TorchMobileNetV2,
    freeze_backbone,
    keras_layer_names,
)
from twinflow.trainers.lightning.parameters import count_parameters

CLASSES = 4
TOLERANCE = 1e-4
EVEN, ODD = 64, 33  # the stride-2 layers see 64, 32, 16, 8, 4 (all even) and 33, 17, 9, 5, 3 (all odd)
GAMMA_LOW, GAMMA_HIGH = 0.5, 1.5


def nchw(images: np.ndarray) -> torch.Tensor:
    """The torch twins' input: the Transform's NHWC batch permuted (channels_last memory)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def images_for(size: int, channels: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Images that differ as photos do, as a whole (colour, contrast, a gradient), not only in pixel noise:
    i.i.d. noise images all look alike deep in a network, which would leave its logits insensitive."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(30, 220, (count, 1, 1, channels))
    contrast = rng.uniform(5, 60, (count, 1, 1, 1))
    ramp = np.linspace(-1, 1, size)
    gradient = rng.uniform(-40, 40, (count, 1, 1, 1)) * (ramp[None, :, None, None] + ramp[None, None, :, None])
    images = base + gradient + contrast * rng.standard_normal((count, size, size, channels))
    return np.clip(images, 0, 255).astype(np.float32)


def calibrate_batch_norm(model: nn.Module, images: torch.Tensor, seed: int = 0) -> None:
    """Random but well-conditioned weights: batch-norm variances next to epsilon, activations of order one.

    Each convolution's output channels are rescaled so that the variance ``images`` produce at
    the batch norm after it is drawn from 1e-3..1e-2 (against epsilon 1e-3: an epsilon mismatch
    shows; near-dead channels are scaled up 3x at most, not to that); the running variance is
    that times 0.5..1.5, the running mean the actual mean
    shifted, gamma and beta random. Each batch norm then hands on activations of order one, so
    the logits depend on the input (and a padding mismatch shows).
    """
    generator = torch.Generator().manual_seed(seed)
    last_conv: list[nn.Conv2d] = []

    def uniform(count: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    def set_statistics(module: nn.BatchNorm2d, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        x, channels = args[0], args[0].shape[1]
        variance = uniform(channels, 1e-3, 1e-2)
        scale = (
            (variance / x.var(dim=(0, 2, 3)).clamp_min(1e-12)).sqrt().clamp_max(3.0)
        )  # no near-dead channel blown up
        last_conv[-1].weight.mul_(scale.view(-1, 1, 1, 1))  # the conv right before: same function from now on
        x = x * scale.view(1, -1, 1, 1)
        noise = torch.randn(channels, generator=generator)
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)) + 0.1 * variance.sqrt() * noise)
        module.running_var.copy_(variance * uniform(channels, 0.5, 1.5))
        module.weight.copy_(uniform(channels, GAMMA_LOW, GAMMA_HIGH))
        module.bias.copy_(0.1 * torch.randn(channels, generator=generator))
        return (x,)

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(lambda conv, args, out: last_conv.append(conv)))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(set_statistics))
    model.eval()
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()


def torch_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(nchw(images)).numpy()


def keras_logits(model: tf.keras.Model, images: np.ndarray) -> np.ndarray:
    return model(images, training=False).numpy()


@functools.cache
def calibrated_twins(size: int, channels: int, alpha: float) -> tuple[tf.keras.Model, TorchMobileNetV2, np.ndarray]:
    """A torch twin with calibrated random weights, ported into a Keras twin; shared by the tests below."""
    images = images_for(size, channels)
    reference = TorchMobileNetV2((size, size, channels), CLASSES, alpha)
    calibrate_batch_norm(reference, nchw(images))
    keras_twin = build_keras_mobilenet_v2((size, size, channels), CLASSES, alpha)
    port.torch_to_keras(reference, keras_twin)
    return keras_twin, reference, images


@pytest.mark.parametrize(("size", "channels", "alpha"), [(EVEN, 3, 0.35), (ODD, 1, 0.35), (ODD, 3, 1.0)])
def test_twins_agree_from_shared_weights(size: int, channels: int, alpha: float) -> None:
    keras_twin, reference, images = calibrated_twins(size, channels, alpha)
    round_trip = TorchMobileNetV2((size, size, channels), CLASSES, alpha)
    result = port.keras_to_torch(keras_twin, round_trip)

    expected = keras_logits(keras_twin, images)
    assert np.abs(expected).max() > 0.5  # logits of order one: the tolerance below means something
    np.testing.assert_allclose(torch_logits(reference, images), expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(torch_logits(round_trip, images), expected, rtol=0, atol=TOLERANCE)
    assert result.head == port.HEAD_FROM_SOURCE and result.tensors == len(port.torch_tensors(round_trip))
    assert keras_twin.count_params() == count_parameters(round_trip)
    trainable = sum(int(np.prod(w.shape)) for w in keras_twin.trainable_weights)
    assert trainable == sum(p.numel() for p in round_trip.parameters())


@pytest.mark.parametrize(
    ("size", "channels", "mistake", "agrees"),
    [
        (EVEN, 3, {"padding": "symmetric"}, False),  # torchvision's padding: wrong on even sizes
        (ODD, 1, {"padding": "symmetric"}, True),  # ... right on odd ones: why the parity test takes both
        (ODD, 1, {"bn_epsilon": 1e-5}, False),  # torchvision's epsilon
    ],
)
def test_parity_check_catches_a_torchvision_style_twin(size: int, channels: int, mistake: dict, agrees: bool) -> None:
    keras_twin, _, images = calibrated_twins(size, channels, 0.35)
    wrong = TorchMobileNetV2((size, size, channels), CLASSES, 0.35, **mistake)
    port.keras_to_torch(keras_twin, wrong)
    difference = np.abs(torch_logits(wrong, images) - keras_logits(keras_twin, images)).max()
    assert (difference <= TOLERANCE) == agrees, difference
    if not agrees:
        assert difference > 100 * TOLERANCE


def test_training_mode_updates_running_statistics_alike() -> None:
    """Keras momentum 0.999 is torch momentum 0.001: one training-mode pass moves both twins' statistics alike."""
    _, reference, images = calibrated_twins(EVEN, 3, 0.35)
    keras_twin = build_keras_mobilenet_v2((EVEN, EVEN, 3), CLASSES, 0.35)
    port.torch_to_keras(reference, keras_twin)
    torch_twin = copy.deepcopy(reference).train()
    keras_twin(images, training=True)
    with torch.no_grad():
        torch_twin(nchw(images))
    moved = 0
    for path, module in torch_twin.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            layer = keras_twin.get_layer(keras_layer_names(torch_twin)[path])
            before = reference.get_submodule(path).running_mean.numpy()
            np.testing.assert_allclose(module.running_mean.numpy(), layer.moving_mean.numpy(), rtol=1e-4, atol=1e-7)
            np.testing.assert_allclose(module.running_var.numpy(), layer.moving_variance.numpy(), rtol=1e-3, atol=1e-9)
            moved += int(not np.array_equal(module.running_mean.numpy(), before))
    assert moved > 40  # the pass did move them (52 batch-norm layers)


def _compiled_keras_step(
    model: tf.keras.Model, images: np.ndarray, labels: np.ndarray
) -> tf.types.experimental.ConcreteFunction:
    """One training step as Keras's fit compiles it (tf.function: forward in training mode, gradients, update)."""
    optimizer = tf.keras.optimizers.SGD(0.1)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        gradients = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(gradients, model.trainable_weights, strict=True))
        return loss

    step(tf.constant(images), tf.constant(labels))
    return step.get_concrete_function(tf.constant(images), tf.constant(labels))


def _layers_with_backprop(function: tf.types.experimental.ConcreteFunction, model: tf.keras.Model) -> set[str]:
    """The model's layers whose gradient ops the step runs: those its outputs and side effects depend on
    (TensorFlow prunes the rest of a function's graph before running it)."""
    graph = function.graph
    seen: set[str] = set()
    stack = [tensor.op for tensor in graph.outputs] + list(graph.control_outputs)
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen.add(op.name)
            stack += [tensor.op for tensor in op.inputs] + list(op.control_inputs)
    prefix = f"gradient_tape/{model.name}/"
    return {name[len(prefix) :].split("/")[0] for name in seen if name.startswith(prefix)}


def test_frozen_backbone_keeps_statistics_and_skips_gradients_in_keras() -> None:
    """The top two units trained, the rest frozen: one compiled step (slow to trace) shows both sides."""
    top_blocks = 2
    keras_source, _, images = calibrated_twins(EVEN, 3, 0.35)
    model = build_keras_mobilenet_v2((EVEN, EVEN, 3), CLASSES, 0.35)
    model.set_weights(keras_source.get_weights())
    set_trainable_blocks(model, top_blocks, train_batch_norm=True)
    before = {w.name: w.numpy() for w in model.weights}

    step = _compiled_keras_step(model, images, np.arange(len(images)) % CLASSES)

    units, trained = layer_units(model), spec.trainable_units(top_blocks)
    for variable in model.weights:  # weights and batch-norm statistics alike
        unit = units.get(variable.name.split("/")[0])
        if unit is not None:
            assert np.array_equal(variable.numpy(), before[variable.name]) == (unit not in trained), variable.name
    with_gradients = _layers_with_backprop(step, model)
    assert spec.HEAD_LAYER in with_gradients
    assert {units[name] for name in with_gradients if name in units} == set(trained)


@pytest.mark.parametrize("top_blocks", [0, 2])
def test_frozen_backbone_keeps_statistics_and_skips_gradients_in_torch(top_blocks: int) -> None:
    _, reference, images = calibrated_twins(EVEN, 3, 0.35)
    model = copy.deepcopy(reference)
    freeze_backbone(model, top_blocks, train_batch_norm=True)
    lightning_like = nn.ModuleDict({"model": model})
    lightning_like.train()  # what Lightning does at the start of fit: frozen units must stay in eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    logits = model(nchw(images))
    nn.functional.cross_entropy(logits, torch.arange(len(images)) % CLASSES).backward()
    optimizer.step()

    trained_units = spec.trainable_units(top_blocks)
    after = model.state_dict()
    for index, unit in enumerate(model.unit_paths()):
        frozen = index not in trained_units
        assert model.get_submodule(unit).training is not frozen
        for name, parameter in model.get_submodule(unit).named_parameters(prefix=unit):
            assert (parameter.grad is None) == frozen and parameter.requires_grad is not frozen, name
        for key in after:
            if key.startswith(unit + ".") and "running" in key:
                assert torch.equal(after[key], before[key]) == frozen, key
    assert model.logits.weight.grad is not None and model.training


def test_same_trainable_parameters_in_both_twins_per_phase() -> None:
    keras_twin, torch_twin = twins().build_keras(), twins().build_torch()
    counts = []
    for top_blocks, train_batch_norm in [(0, False), (3, False), (3, True), (spec.NUM_UNITS, True)]:
        set_trainable_blocks(keras_twin, top_blocks, train_batch_norm)
        freeze_backbone(torch_twin, top_blocks, train_batch_norm)
        counts.append(sum(int(np.prod(w.shape)) for w in keras_twin.trainable_weights))
        assert counts[-1] == sum(p.numel() for p in torch_twin.parameters() if p.requires_grad)
    assert counts == sorted(counts) and len(set(counts)) == 4


# ------------------------------------------------------------------------------------------- --weights


def twins(classes: int = CLASSES, alpha: float = 0.35) -> weights.Twins:
    return weights.mobilenet_v2_twins((EVEN, EVEN, 3), classes, alpha)


def test_none_starts_both_twins_identical_and_reproducible() -> None:
    images = images_for(EVEN, 3)
    keras_twin, torch_twin = twins().build_keras(), twins().build_torch()
    origin = weights.apply_weights("none", twins(), seed=7, keras_model=keras_twin, torch_model=torch_twin)
    assert (origin.kind, origin.head, origin.ported_to, origin.sha256) == ("seeded", "new: seeded", ["torch"], None)
    alone = twins().build_torch()  # a Lightning process: no Keras model of its own
    weights.apply_weights("none", twins(), seed=7, torch_model=alone)
    for key, value in port.torch_tensors(torch_twin).items():
        assert torch.equal(value, port.torch_tensors(alone)[key]), key
    np.testing.assert_allclose(torch_logits(torch_twin, images), keras_logits(keras_twin, images), atol=TOLERANCE)
    kernel = keras_twin.get_layer("Conv1").kernel.numpy()
    weights.seeded_init(keras_twin, seed=8)
    assert not np.array_equal(keras_twin.get_layer("Conv1").kernel.numpy(), kernel)


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


def test_imagenet_reads_the_file_in_keras_cache(keras_home: Path) -> None:
    name = weights.imagenet_file_name(0.35, 224)  # 64 px has no published file: Keras takes the 224 one
    published = tf.keras.applications.MobileNetV2(
        input_shape=(EVEN, EVEN, 3), alpha=0.35, include_top=False, weights=None
    )
    (keras_home / "models").mkdir(parents=True)
    published.save_weights(str(keras_home / "models" / name))

    keras_twin, torch_twin = twins().build_keras(), twins().build_torch()
    origin = weights.apply_weights("imagenet", twins(), seed=1, keras_model=keras_twin, torch_model=torch_twin)

    assert origin.kind == "imagenet" and origin.head == "new: the source has no head"
    assert origin.sha256 == hashlib.sha256((keras_home / "models" / name).read_bytes()).hexdigest()
    for layer in (layer for layer in published.layers if layer.weights):
        for mine, theirs in zip(keras_twin.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    images = images_for(EVEN, 3)
    np.testing.assert_allclose(torch_logits(torch_twin, images), keras_logits(keras_twin, images), atol=TOLERANCE)


def test_imagenet_offline_names_the_url_and_the_cache_path(keras_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "IMAGENET_BASE_URL", "http://127.0.0.1:9/mobilenet_v2/")  # nothing listens: offline
    with pytest.raises(ConfigError) as raised:
        weights.apply_weights("imagenet", twins(), seed=1, torch_model=twins().build_torch())
    message = str(raised.value)
    name = weights.imagenet_file_name(0.35, 224)
    assert "\n" not in message
    assert f"http://127.0.0.1:9/mobilenet_v2/{name}" in message
    assert str(keras_home / "models" / name) in message
    assert not (keras_home / "models" / name).exists()


def test_imagenet_refuses_an_unpublished_width() -> None:
    with pytest.raises(ConfigError, match=r"widths .*not 0\.4"):
        weights.apply_weights("imagenet", weights.mobilenet_v2_twins((EVEN, EVEN, 3), CLASSES, 0.4), seed=1)


@pytest.fixture(scope="module")
def source_twins() -> tuple[tf.keras.Model, TorchMobileNetV2, np.ndarray]:
    keras_twin, reference, images = calibrated_twins(EVEN, 3, 0.35)
    return keras_twin, reference, images


def _keras_folder(model: tf.keras.Model, folder: Path) -> Path:
    # Without traced layer functions (slow to write): its variables are checkpointed the same way.
    model.save(str(folder), save_format="tf", include_optimizer=False, save_traces=False)
    card = make_card("keras").model_copy(update={"architecture": "mobilenet_v2"})
    (folder / "model.json").write_text(card.model_dump_json())
    return folder


def _lightning_folder(model: nn.Module, folder: Path) -> Path:
    folder.mkdir()
    torch.save(model.state_dict(), folder / "state_dict.pt")
    card = make_card("lightning").model_copy(
        update={"architecture": "mobilenet_v2", "format": "onnx", "artifact": "model.onnx"}
    )
    (folder / "model.json").write_text(card.model_dump_json())
    return folder


@pytest.mark.parametrize(
    ("form", "target", "kind"),
    [
        ("keras .h5", "torch", "keras_h5"),
        ("keras .weights.h5", "keras", "keras_weights_h5"),
        ("torch .pt", "keras", "torch_state_dict"),
        ("lightning .ckpt", "torch", "torch_state_dict"),
        ("safetensors", "keras", "safetensors"),
        ("keras model folder", "torch", "keras_saved_model"),
        ("lightning model folder", "keras", "torch_state_dict"),
    ],
)
def test_weights_from_a_path(source_twins, tmp_path: Path, form: str, target: str, kind: str) -> None:
    keras_source, torch_source, images = source_twins
    if form == "keras .h5":
        path = tmp_path / "weights.h5"
        keras_source.save_weights(str(path))
    elif form == "keras .weights.h5":
        path = tmp_path / "model.weights.h5"
        keras_source.save_weights(str(path))
    elif form == "torch .pt":
        path = tmp_path / "weights.pt"
        torch.save(torch_source.state_dict(), path)
    elif form == "lightning .ckpt":
        path = tmp_path / "epoch=3.ckpt"
        state = {f"model.{key}": value for key, value in torch_source.state_dict().items()}
        torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"alpha": 0.35}}, path)
    elif form == "safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch", reason=weights.SAFETENSORS_PACKAGE)
        path = tmp_path / "model.safetensors"
        safetensors_torch.save_file(torch_source.state_dict(), str(path))
    elif form == "keras model folder":
        path = _keras_folder(keras_source, tmp_path / "keras" / "3")
    else:
        path = _lightning_folder(torch_source, tmp_path / "lightning")

    if target == "keras":
        model = twins().build_keras()
        origin = weights.apply_weights(str(path), twins(), seed=2, keras_model=model)
        logits = keras_logits(model, images)
    else:
        model = twins().build_torch()
        origin = weights.apply_weights(str(path), twins(), seed=2, torch_model=model)
        logits = torch_logits(model, images)

    assert origin.kind == kind and origin.head == port.HEAD_FROM_SOURCE
    if not path.is_dir():
        assert origin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert origin.sha256 and len(origin.sha256) == 64
    np.testing.assert_allclose(logits, keras_logits(keras_source, images), rtol=0, atol=TOLERANCE)


def test_another_class_count_gets_a_new_head_the_same_in_both(source_twins, tmp_path: Path) -> None:
    _, torch_source, images = source_twins
    path = tmp_path / "four_classes.pt"
    torch.save(torch_source.state_dict(), path)
    three = twins(classes=3)
    keras_twin, torch_twin = three.build_keras(), three.build_torch()

    origin = weights.apply_weights(str(path), three, seed=3, keras_model=keras_twin, torch_model=torch_twin)

    assert origin.head == "new: the source has 4 classes, this model 3"
    assert torch.equal(torch_twin.top.Conv_1.weight, torch_source.top.Conv_1.weight)
    np.testing.assert_allclose(torch_logits(torch_twin, images), keras_logits(keras_twin, images), atol=TOLERANCE)


def test_a_wrong_architecture_stops_with_one_line_naming_the_tensor(source_twins, tmp_path: Path) -> None:
    wider = TorchMobileNetV2((EVEN, EVEN, 3), CLASSES, alpha=0.5)
    path = tmp_path / "alpha_0.5.pt"
    torch.save(wider.state_dict(), path)
    with pytest.raises(ConfigError) as raised:
        weights.apply_weights(str(path), twins(), seed=4, torch_model=twins().build_torch())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("blocks.1.project.weight: shape (16, 48, 1, 1) in ")
    assert message.endswith(", (8, 48, 1, 1) in the model")

    _, torch_source, _ = source_twins
    state = torch_source.state_dict()
    del state["blocks.5.depthwise_BN.running_var"]
    torch.save(state, path)
    with pytest.raises(
        ConfigError, match=r"^blocks\.5\.depthwise_BN\.running_var: missing in .*\(model shape \(96,\)\)$"
    ):
        weights.apply_weights(str(path), twins(), seed=4, keras_model=twins().build_keras())


def test_a_keras_file_of_another_width_names_the_layer(source_twins, tmp_path: Path) -> None:
    keras_source, _, _ = source_twins
    path = tmp_path / "weights.h5"
    keras_source.save_weights(str(path))
    with pytest.raises(ConfigError) as raised:
        weights.apply_weights(str(path), weights.mobilenet_v2_twins((EVEN, EVEN, 3), CLASSES, 0.5), seed=4)
    assert str(raised.value).startswith("block_1_project/kernel: shape (1, 1, 48, 8) in ")
    assert "\n" not in str(raised.value)


def test_torch_files_load_without_unpickling_objects(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"weights": os.path.join}, path)  # a callable: weights_only loading must refuse it
    with pytest.raises(ConfigError, match=r"pickled\.pt: not a plain state_dict"):
        weights.apply_weights(str(path), twins(), seed=5, torch_model=twins().build_torch())


# ------------------------------------------------------------------------------------------- CNN twins


def test_cnn_twins_start_identical_and_port_through_onnx(tmp_path: Path) -> None:
    from twinflow.trainers.lightning.export import export_onnx

    cnn = weights.cnn_twins("tiny_cnn", 12, 1, 3)
    keras_twin, torch_model = cnn.build_keras(), cnn.build_torch()
    origin = weights.apply_weights("none", cnn, seed=11, keras_model=keras_twin, torch_model=torch_model)
    images = np.random.default_rng(1).normal(size=(4, 12, 12, 1)).astype(np.float32)
    expected = keras_logits(keras_twin, images)
    assert origin.ported_to == ["torch"] and np.abs(expected).max() > 0.05
    np.testing.assert_allclose(torch_logits(torch_model, images), expected, rtol=0, atol=1e-5)

    path = tmp_path / "model.onnx"  # the Lightning export, wrapper and all (names "model.0.weight", ...)
    export_onnx(torch_model, 12, 1, str(path))
    fresh = cnn.build_keras()
    origin = weights.apply_weights(str(path), cnn, seed=12, keras_model=fresh)
    assert (origin.kind, origin.framework, origin.ported_to) == ("onnx", "torch", ["keras"])
    np.testing.assert_allclose(keras_logits(fresh, images), expected, rtol=0, atol=1e-5)


def test_an_onnx_export_of_a_batch_norm_network_is_refused_in_one_line(source_twins, tmp_path: Path) -> None:
    from twinflow.trainers.lightning.export import export_onnx

    _, torch_source, _ = source_twins
    path = tmp_path / "model.onnx"
    export_onnx(torch_source, EVEN, 3, str(path))
    with pytest.raises(ConfigError, match=r"model\.onnx: ONNX exports fold batch norm into the convolutions") as raised:
        weights.apply_weights(str(path), twins(), seed=13, torch_model=twins().build_torch())
    assert "\n" not in str(raised.value)


def test_twins_of_different_architectures_do_not_port(source_twins) -> None:
    keras_source, _, _ = source_twins
    cnn = weights.cnn_twins("tiny_cnn", EVEN, 3, CLASSES).build_keras()
    with pytest.raises(
        ConfigError, match=r"^port: torch module stem\.Conv1 mirrors Keras layer Conv1, which the Keras"
    ):
        port.keras_to_torch(cnn, twins().build_torch())
    narrower = TorchMobileNetV2((EVEN, EVEN, 3), CLASSES, 0.35)
    del narrower.blocks[16]  # a torch model missing a block: the Keras tensors left over are named
    with pytest.raises(ConfigError, match=r"^port: Keras tensor block_16_expand/kernel has no torch twin"):
        port.keras_to_torch(keras_source, narrower)


@pytest.mark.parametrize(("from_scratch", "keras_momentum"), [(True, 0.99), (False, 0.999)])
def test_batch_norm_momentum_is_the_published_one_unless_everything_trains_from_a_seeded_start(
    from_scratch: bool, keras_momentum: float
) -> None:
    """From a seeded start the running statistics must catch up from mean 0, variance 1: Keras's layer default."""
    from twinflow.trainers.keras.model import build_model as build_keras
    from twinflow.trainers.lightning.model import build_model as build_torch

    keras_twin = build_keras("mobilenet_v2", EVEN, 3, CLASSES, 0.35, from_scratch=from_scratch)
    torch_twin = build_torch("mobilenet_v2", EVEN, 3, CLASSES, 0.35, from_scratch=from_scratch)
    keras_values = {
        layer.momentum for layer in keras_twin.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
    }
    torch_values = {round(m.momentum, 6) for m in torch_twin.modules() if isinstance(m, nn.BatchNorm2d)}
    assert keras_values == {keras_momentum} and torch_values == {round(1 - keras_momentum, 6)}
