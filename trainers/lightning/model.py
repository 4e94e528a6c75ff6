"""The Lightning twin: the CNNs of core.architectures in plain torch.nn, the LightningModule that trains them,
and the training-time augmentation, free of TensorFlow.

Every layer, initialiser and augmentation has its exact counterpart in trainers/keras/model.py.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from twinflow.core.architectures import BACKBONES, architecture
from twinflow.trainers.base import BRIGHTNESS_DELTA, bn_momentum, scheduled_learning_rate

Split = tuple[torch.Tensor, torch.Tensor]  # a batch: (images NCHW float32, labels int64)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch generators, as keras.utils.set_random_seed seeds Keras's."""
    pl.seed_everything(seed, workers=False, verbose=False)


def build_model(
    arch_name: str,
    image_size: int,
    channels: int,
    num_classes: int,
    width_multiplier: float = 1.0,
    from_scratch: bool = False,
) -> nn.Module:
    """The twin as torch layers (NCHW in, logits out), initialized like Keras (a backbone: trainers/backbones/).

    Keras starts from Glorot-uniform kernels and zero biases; torch's defaults differ, so
    the twin sets the same initializers to start both frameworks from the same distribution.
    Weights and activations live in channels_last (NHWC) memory, TensorFlow's own layout:
    on this project's 2-core CPUs torch's NCHW max-pooling alone took a quarter of each
    step, and channels_last trains about 20% faster with identical results.
    """
    if arch_name in BACKBONES:
        from twinflow.trainers.backbones.torch_mobilenet_v2 import TorchMobileNetV2

        shape = (image_size, image_size, channels)
        return TorchMobileNetV2(
            shape,
            num_classes,
            width_multiplier,
            BACKBONES[arch_name].head_dropout,
            bn_momentum=bn_momentum(from_scratch),
        )
    spec = architecture(arch_name)
    layers: list[nn.Module] = []
    in_channels, size = channels, image_size
    for filters in spec.conv_filters:
        layers += [nn.Conv2d(in_channels, filters, spec.kernel_size, padding="same"), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels, size = filters, size // 2
    layers.append(nn.Flatten())
    features = in_channels * size * size
    for units in spec.dense_units:
        layers += [*_dropout(spec.dropout), nn.Linear(features, units), nn.ReLU()]
        features = units
    layers += _dropout(spec.dropout)
    layers.append(nn.Linear(features, num_classes))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model.to(memory_format=torch.channels_last)


def _dropout(rate: float) -> list[nn.Module]:
    return [nn.Dropout(rate)] if rate else []


def augment(
    images: torch.Tensor, augmentations: tuple[str, ...] = ("flip", "brightness"), brightness: float = BRIGHTNESS_DELTA
) -> torch.Tensor:
    """keras/model.py's augment for NCHW batches: per-image horizontal flip (p=0.5), brightness shift."""
    images = images.float()  # a backbone's pixels are held as uint8
    batch = images.shape[0]
    if "flip" in augmentations:
        flip = torch.rand(batch, 1, 1, 1, device=images.device) < 0.5
        images = torch.where(flip, images.flip(-1), images)
    if "brightness" in augmentations:
        shift = (torch.rand(batch, 1, 1, 1, device=images.device) * 2 - 1) * brightness
        images = images + shift
    return images


class TwinClassifier(pl.LightningModule):
    """The twin CNN with Keras's loss, metrics and optimizers (Adam eps=1e-7, SGD momentum 0.9)."""

    def __init__(
        self,
        architecture: str,
        image_size: int,
        channels: int,
        num_classes: int,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        lr_schedule: str = "constant",
        epochs: int = 1,
        width_multiplier: float = 1.0,
        model: nn.Module | None = None,
        from_scratch: bool = False,
    ):
        """``model``: a network built elsewhere (--model-module) instead of the twin ``architecture`` names."""
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = (
            model
            if model is not None
            else build_model(architecture, image_size, channels, num_classes, width_multiplier, from_scratch)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def _step(self, batch: Split, prefix: str) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        # Epoch means only, as Keras's verbose=2 reports; no per-step logger writes.
        self.log_dict(
            {f"{prefix}loss": loss.detach(), f"{prefix}accuracy": accuracy},
            on_step=False,
            on_epoch=True,
            batch_size=len(labels),
            sync_dist=self.trainer.world_size > 1,  # data-parallel: means over every rank's share
        )
        return loss

    def training_step(self, batch: Split, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "")

    def validation_step(self, batch: Split, batch_idx: int) -> None:
        self._step(batch, "val_")

    def configure_optimizers(self) -> Any:
        # Only what trains: a frozen backbone's parameters get no gradient, and no optimizer state either.
        trained = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.optimizer == "sgd":
            optimizer = torch.optim.SGD(trained, lr=self.hparams.learning_rate, momentum=0.9)
        else:
            optimizer = torch.optim.Adam(trained, lr=self.hparams.learning_rate, eps=1e-7)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # Stepped once per epoch: the rate of epoch e is common.scheduled_learning_rate(e), as in Keras.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: scheduled_learning_rate(1.0, epoch, self.hparams.epochs, self.hparams.lr_schedule)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


def freeze_backbone(model: nn.Module, trainable_units: int, train_batch_norm: bool = False) -> None:
    """A backbone's top ``trainable_units`` units train, the rest is frozen and kept in eval() (the head always
    trains): trainers/backbones/torch_mobilenet_v2.py, the same unit numbering as the Keras twin."""
    from twinflow.trainers.backbones.torch_mobilenet_v2 import freeze_backbone as freeze

    freeze(model, trainable_units, train_batch_norm)
