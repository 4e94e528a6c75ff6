"""The Lightning side of the twins, free of TensorFlow: model, data module, trainer, ONNX export.

lightning_trainer.py adds only the TFX glue (reading Transform output, run_fn, model.json),
so this module can be exercised wherever torch alone is installed, a GPU machine included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset

from twinflow.core.architectures import architecture
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import IMAGE_XF_KEY, PROBABILITIES_KEY
from twinflow.trainers.common import BRIGHTNESS_DELTA, Stopwatch, check_finite_loss, scheduled_learning_rate

ONNX_OPSET = 17
_EVAL_BATCH = 1024

__all__ = ["DataLoader", "IterableDataset"]  # re-exported: torch is imported through this module only

Split = tuple[torch.Tensor, torch.Tensor]  # (images NCHW float32, labels int64)


def seed_everything(seed: int) -> None:
    """Python, numpy and torch generators, as keras.utils.set_random_seed seeds Keras's."""
    pl.seed_everything(seed, workers=False, verbose=False)


def split_from_nhwc(images: np.ndarray, labels: np.ndarray) -> Split:
    """Transform output arrays (NHWC images, labels) → NCHW float32 and int64 tensors.

    The images keep their NHWC memory (torch's channels_last): see build_model.
    """
    nhwc = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return nhwc.permute(0, 3, 1, 2), torch.from_numpy(labels.astype(np.int64).reshape(-1))


def build_model(arch_name: str, image_size: int, channels: int, num_classes: int) -> nn.Sequential:
    """The twin CNN as torch layers (NCHW in, logits out), initialized like Keras.

    Keras starts from Glorot-uniform kernels and zero biases; torch's defaults differ, so
    the twin sets the same initializers to start both frameworks from the same distribution.
    Weights and activations live in channels_last (NHWC) memory, TensorFlow's own layout:
    on this project's 2-core CPUs torch's NCHW max-pooling alone took a quarter of each
    step, and channels_last trains about 20% faster with identical results.
    """
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def augment(images: torch.Tensor, augmentations: tuple[str, ...] = ("flip", "brightness")) -> torch.Tensor:
    """keras_trainer.augment for NCHW batches: per-image horizontal flip (p=0.5), brightness shift."""
    batch = images.shape[0]
    if "flip" in augmentations:
        flip = torch.rand(batch, 1, 1, 1, device=images.device) < 0.5
        images = torch.where(flip, images.flip(-1), images)
    if "brightness" in augmentations:
        shift = (torch.rand(batch, 1, 1, 1, device=images.device) * 2 - 1) * BRIGHTNESS_DELTA
        images = images + shift
    return images


class InMemoryBatches:
    """Batches sliced from tensors already in memory: one gather per batch, no workers, no collation.

    Under data-parallel training (``world`` > 1) each rank takes its own equal share of every
    epoch's permutation (all ranks draw the same one from the same seed), as a DistributedSampler would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.images, self.labels, self.batch_size, self.shuffle = images, labels, batch_size, shuffle
        self.rank, self.world = rank, world
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-(len(self.labels) // self.world) // self.batch_size)

    def __iter__(self) -> Iterator[Split]:
        count = len(self.labels)
        if self.world == 1 and not self.shuffle:
            for start in range(0, count, self.batch_size):
                yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]
            return
        order = torch.randperm(count, generator=self._generator) if self.shuffle else torch.arange(count)
        for index in order[self.rank :: self.world][: count // self.world].split(self.batch_size):
            yield self.images[index], self.labels[index]


class TensorDataModule(pl.LightningDataModule):
    """Train and eval splits held as tensors; train batches are augmented after the move to the device.

    Subclasses say where the tensors come from (``load_splits``); loading happens in
    ``setup``, inside ``fit``, as Keras fills its cache during the first epoch.
    """

    def __init__(self, batch_size: int, augment: tuple[str, ...], seed: int):
        super().__init__()
        self.batch_size, self.augment, self.seed = batch_size, augment, seed
        self.train: Split | None = None
        self.eval: Split | None = None

    def load_splits(self) -> tuple[Split, Split]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train is None:
            self.train, self.eval = self.load_splits()

    def _shard(self) -> dict[str, int]:
        trainer = self.trainer
        return {"rank": trainer.global_rank, "world": trainer.world_size} if trainer is not None else {}

    def train_dataloader(self) -> InMemoryBatches:
        assert self.train is not None, "setup() first"
        return InMemoryBatches(*self.train, self.batch_size, shuffle=True, seed=self.seed, **self._shard())

    def val_dataloader(self) -> InMemoryBatches:
        assert self.eval is not None, "setup() first"
        return InMemoryBatches(*self.eval, self.batch_size, shuffle=False, **self._shard())

    def clean_batches(self, split: str) -> Iterable[Split]:
        """A split's batches unshuffled and unaugmented, for the final train and eval metrics."""
        data = self.train if split == "train" else self.eval
        assert data is not None, "setup() first"
        return InMemoryBatches(*data, _EVAL_BATCH, shuffle=False)

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        images, labels = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            images = augment(images, self.augment)
        return images, labels


class HeldSplits(TensorDataModule):
    """Splits already loaded, as tensors: what data-parallel processes receive (pickled for a spawn launcher)."""

    def __init__(self, train: Split, evaluation: Split, batch_size: int, augment: tuple[str, ...], seed: int):
        super().__init__(batch_size, augment, seed)
        self.train, self.eval = train, evaluation


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
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(architecture, image_size, channels, num_classes)

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
        if self.hparams.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate, momentum=0.9)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate, eps=1e-7)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # Stepped once per epoch: the rate of epoch e is common.scheduled_learning_rate(e), as in Keras.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: scheduled_learning_rate(1.0, epoch, self.hparams.epochs, self.hparams.lr_schedule)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


class EpochReport(Callback):
    """Feeds the shared Stopwatch, prints one line per epoch (Keras's verbose=2), stops on a non-finite loss.

    An epoch ends after its validation pass, where Keras's ``on_epoch_end`` ends it too.
    """

    def __init__(self, stopwatch: Stopwatch, config: TrainingConfig, state_file: str | None = None):
        self._stopwatch = stopwatch
        self._config = config
        self._state_file = state_file  # data-parallel: rank 0 leaves its timings here for the launching process

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._stopwatch.start_epoch()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, i: int):
        self._stopwatch.add_images(len(batch[1]) * trainer.world_size)  # every rank trains an equal share

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.training or trainer.state.fn == "fit":
            _synchronize(module.device)
            self._stopwatch.end_training_steps()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        _synchronize(module.device)
        self._stopwatch.end_epoch({name: float(value) for name, value in trainer.callback_metrics.items()})
        if trainer.is_global_zero:
            self._report(trainer)
        if "loss" in trainer.callback_metrics:
            loss = float(trainer.callback_metrics["loss"])
            check_finite_loss("lightning", trainer.current_epoch + 1, loss, self._config)

    def _report(self, trainer: pl.Trainer) -> None:
        if self._state_file and trainer.world_size > 1:
            self._stopwatch.save(self._state_file)
        images, seconds, steps = self._stopwatch.epochs[-1]
        metrics = " - ".join(
            f"{name}: {float(trainer.callback_metrics[name]):.4f}"
            for name in ("loss", "accuracy", "val_loss", "val_accuracy")
            if name in trainer.callback_metrics
        )
        print(
            f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs} - {seconds:.1f}s - "
            f"{images / steps if steps else 0:,.0f} images/s in training steps - {metrics}",
            flush=True,
        )


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quiet_lightning() -> None:
    """Lightning's INFO banners (GPU available…, tips) would drown the one line per epoch."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


STOPWATCH_FILE = "stopwatch.json"


def lightning_strategy(config: TrainingConfig) -> str:
    """One device: Lightning's default. More: DDP started by spawning or forking processes, never by
    Lightning's default launcher, which re-runs the command line (inside a TFX Trainer: the whole pipeline)."""
    if config.devices == 1:
        return "auto"
    return "ddp_spawn" if config.strategy == "auto" else config.strategy


def make_trainer(config: TrainingConfig, logs_dir: str, stopwatch: Stopwatch) -> tuple[pl.Trainer, ModelCheckpoint]:
    """Keras's callbacks as Lightning callbacks: early stopping on val_loss, best-weights checkpoint, TensorBoard."""
    quiet_lightning()
    checkpoint = ModelCheckpoint(
        dirpath=os.path.join(logs_dir, "checkpoints"), monitor="val_loss", mode="min", save_weights_only=True
    )
    trainer = pl.Trainer(
        accelerator="auto",
        devices=config.devices,
        strategy=lightning_strategy(config),
        max_epochs=config.epochs,
        callbacks=[
            EarlyStopping(monitor="val_loss", mode="min", patience=config.early_stopping_patience),
            checkpoint,
            EpochReport(stopwatch, config, os.path.join(logs_dir, STOPWATCH_FILE)),
        ],
        logger=TensorBoardLogger(logs_dir, name="", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # only epoch means are logged, so this adds no per-step work
        default_root_dir=logs_dir,
    )
    return trainer, checkpoint


def restore_best(module: TwinClassifier, checkpoint: ModelCheckpoint) -> None:
    """Keras's EarlyStopping(restore_best_weights=True) ends on the best val_loss epoch: so does this twin."""
    if checkpoint.best_model_path:
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(best["state_dict"])


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Split], device: torch.device) -> tuple[float, float]:
    """(loss, accuracy) over clean batches, averaged per example like Keras's ``evaluate``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for images, labels in batches:
        x, y = images.to(device), labels.to(device)
        logits = model(x)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
        count += len(y)
    return total_loss / count, correct / count


def evaluate_split(model: nn.Module, split: Split, device: torch.device) -> tuple[float, float]:
    """``evaluate`` over tensors held in memory."""
    return evaluate(model, InMemoryBatches(*split, _EVAL_BATCH, shuffle=False), device)


def device_name(device: torch.device) -> str:
    """Worded like keras_trainer.device_name: 'CPU' or 'GPU (<name>)'."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


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
