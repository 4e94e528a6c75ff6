"""The Lightning model's optimized variants: magnitude pruning (torch.nn.utils.prune) and int8 (ONNX Runtime).

``make_variant`` is the optimizer component's entry point for Lightning (see twinflow.core.registry).
The float parent is served as ONNX only, so its weights are read back from the ONNX
initializers into the twin architecture. Pruning masks each conv and linear weight by
magnitude, fine-tunes with the masks in place (the Keras twin's recipe) and makes them
permanent before export. int8 is ONNX Runtime's static QDQ quantization, per channel,
calibrated on train-split images only (dynamic quantization turns Conv into ConvInteger,
which is slow on CPU).
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytorch_lightning as pl
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

from twinflow.core import fs
from twinflow.core.config import OptimizationConfig
from twinflow.core.contract import IMAGE_XF_KEY, ONNX_FILE, TRANSFORM_GRAPH_DIR
from twinflow.core.model_card import ModelCard, VariantInfo, read_model_card
from twinflow.trainers.keras.optimize import FINE_TUNE_LEARNING_RATE_SCALE
from twinflow.trainers.lightning.data import Split, TensorDataModule, split_from_nhwc
from twinflow.trainers.lightning.export import export_onnx
from twinflow.trainers.lightning.model import TwinClassifier, seed_everything
from twinflow.trainers.lightning.train import quiet_lightning
from twinflow.trainers.variants import finish_variant, kernel_sparsity, read_transformed_split

CALIBRATION_BATCH = 32


def load_twin(parent_dir: str, card: ModelCard, learning_rate: float) -> TwinClassifier:
    """The trained twin of a Lightning model folder, as a LightningModule to fine-tune: its weights read the one way
    every warm start reads them (trainers.backbones.weights: the folder's state dict, else its ONNX initializers)."""
    from twinflow.trainers.backbones.weights import apply_weights, twins_for

    config = card.training.config
    twins = twins_for(config, len(card.class_names))
    module = TwinClassifier(
        config.architecture,
        config.image_size,
        config.channels,
        len(card.class_names),
        optimizer=config.optimizer,
        learning_rate=learning_rate,
        width_multiplier=config.width_multiplier,
        model=twins.build_torch() if config.model_module else None,
    )
    apply_weights(parent_dir, twins, config.seed, torch_model=module.model)
    return module


class _TrainSplit(TensorDataModule):
    def __init__(self, train: Split, config: object):
        super().__init__(config.batch_size, config.augment, config.seed)
        self._train = train

    def load_splits(self) -> tuple[Split, Split]:
        return self._train, self._train  # fine-tuning runs no validation (limit_val_batches=0)


def prune(module: TwinClassifier, card: ModelCard, train: Split, settings: OptimizationConfig) -> TwinClassifier:
    """Each conv and linear weight pruned to ``sparsity`` by L1 magnitude, fine-tuned with its mask, made permanent."""
    import torch
    from torch import nn
    from torch.nn.utils import prune as torch_prune

    module.model.to(memory_format=torch.contiguous_format)  # torch's pruning views weights flat
    pruned = [layer for layer in module.model if isinstance(layer, nn.Conv2d | nn.Linear)]
    for layer in pruned:
        torch_prune.l1_unstructured(layer, name="weight", amount=settings.sparsity)
    quiet_lightning()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=settings.fine_tune_epochs,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=_TrainSplit(train, card.training.config))
    for layer in pruned:
        torch_prune.remove(layer, "weight")
    return module


class _Calibration(CalibrationDataReader):
    """Train-split ``image_xf`` batches, as ONNX Runtime's calibrator reads them."""

    def __init__(self, images: np.ndarray):
        self._batches = iter(
            [{IMAGE_XF_KEY: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def int8_onnx(parent_onnx: bytes, calibration: np.ndarray) -> bytes:
    """Static QDQ quantization, per channel: uint8 activations, int8 weights (ONNX Runtime's x86 choice)."""
    with tempfile.TemporaryDirectory() as scratch:
        source, prepared, quantized = (os.path.join(scratch, n) for n in ("float.onnx", "prep.onnx", "int8.onnx"))
        with open(source, "wb") as handle:
            handle.write(parent_onnx)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            quantized,
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        with open(quantized, "rb") as handle:
            return handle.read()


def make_variant(
    variant: str, parent_dir: str, output_dir: str, examples_uri: str, transform_dir: str, settings: OptimizationConfig
) -> ModelCard:
    """Write ``variant`` of the Lightning model in ``parent_dir`` to ``output_dir`` (model.json included)."""
    card = read_model_card(parent_dir)
    config = card.training.config
    seed_everything(config.seed)
    fs.gfile().makedirs(output_dir)
    if variant == "prune":
        images, labels = read_transformed_split(examples_uri, "train", transform_dir)
        module = load_twin(parent_dir, card, config.learning_rate * FINE_TUNE_LEARNING_RATE_SCALE)
        prune(module, card, split_from_nhwc(images, labels), settings)
        onnx_bytes = io.BytesIO()
        export_onnx(module.model, config.image_size, config.channels, onnx_bytes)
        model_bytes = onnx_bytes.getvalue()
        kernels = [p.detach().numpy() for name, p in module.model.named_parameters() if name.endswith("weight")]
        info = VariantInfo(
            name="prune",
            parent_framework=card.framework,
            parent_model=parent_dir,
            method=f"torch.nn.utils.prune L1 magnitude pruning to {settings.sparsity:.0%} per conv/linear weight, "
            f"{settings.fine_tune_epochs} fine-tuning epoch(s), made permanent",
            sparsity=kernel_sparsity(kernels),
            fine_tune_epochs=settings.fine_tune_epochs,
        )
        timing_images = images[:64]
    elif variant == "int8":
        calibration, _ = read_transformed_split(examples_uri, "train", transform_dir, limit=settings.calibration_images)
        with fs.gfile().GFile(fs.join(parent_dir, card.artifact), "rb") as handle:
            model_bytes = int8_onnx(handle.read(), calibration)
        info = VariantInfo(
            name="int8",
            parent_framework=card.framework,
            parent_model=parent_dir,
            method="ONNX Runtime static quantization, QDQ, per channel (uint8 activations, int8 weights)",
            calibration_images=len(calibration),
        )
        timing_images = calibration[:64]
    else:
        raise ValueError(f"unknown variant {variant!r}")
    with fs.gfile().GFile(fs.join(output_dir, ONNX_FILE), "wb") as handle:
        handle.write(model_bytes)
    fs.copy_tree(fs.join(parent_dir, TRANSFORM_GRAPH_DIR), fs.join(output_dir, TRANSFORM_GRAPH_DIR))
    return finish_variant(card.model_copy(update={"variant": info}), parent_dir, output_dir, timing_images, settings)
