"""The Lightning trainer: TFX's ``run_fn``, the twin trained by a Lightning ``Trainer`` on Transform output only.

The steps are trainers.base's (data, build, fit, evaluate, export, model card), as in the Keras twin. No
TensorFlow at import time: data-parallel processes started by a spawn launcher unpickle the Trainer's
callbacks from here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.nn import functional as F

from twinflow.core import fs
from twinflow.core.config import TrainingConfig
from twinflow.core.errors import ConfigError
from twinflow.core.model_card import SplitMetrics
from twinflow.trainers.base import Exported, Phase, TwinTrainer, check_finite_loss, split_metrics
from twinflow.trainers.lightning.data import (
    EVAL_BATCH,
    HeldSplits,
    InMemoryBatches,
    TensorDataModule,
    TransformedDataModule,
)
from twinflow.trainers.lightning.export import export_serving_model
from twinflow.trainers.lightning.model import Split, TwinClassifier, freeze_backbone, seed_everything
from twinflow.trainers.lightning.parameters import count_parameters
from twinflow.trainers.stopwatch import Stopwatch
from twinflow.trainers.user_model import build_torch as build_user_torch

if TYPE_CHECKING:
    from tfx.components.trainer.fn_args_utils import FnArgs


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
        print(self._stopwatch.epoch_line(trainer.current_epoch + 1, trainer.max_epochs), flush=True)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quiet_lightning() -> None:
    """Lightning's INFO banners (GPU available…, tips) would drown the one line per epoch."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A frozen backbone stays in eval() on purpose (batch norm on its running statistics): not a mistake to report.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


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
    return evaluate(model, InMemoryBatches(*split, EVAL_BATCH, shuffle=False), device)


def device_name(device: torch.device) -> str:
    """Worded like the Keras trainer's device_name: 'CPU' or 'GPU (<name>)'."""
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


def _fit_data(data: TransformedDataModule, config: TrainingConfig) -> TensorDataModule:
    """What ``fit`` trains on: the data module itself, or for data-parallel processes its splits, loaded here
    (a launched process cannot reopen the Trainer's data accessor)."""
    if config.devices == 1:
        return data
    data.setup("fit")
    if data.train is None or data.eval is None:
        raise ConfigError(
            f"lightning: --devices {config.devices} needs the Transform output in memory, but it is over "
            f"--memory-budget-mb {config.memory_budget_mb:g}; raise the budget or train on one device"
        )
    return HeldSplits(data.train, data.eval, config.batch_size, config.augment, config.seed)


class LightningTrainer(TwinTrainer):
    """The Lightning twin through trainers.base's steps: a LightningDataModule, a Lightning ``Trainer``,
    an ONNX export beside a copy of the Transform graph."""

    framework = "lightning"

    def seed(self) -> None:
        seed_everything(self.config.seed)

    def read_data(self) -> None:
        self.data = TransformedDataModule(self.fn_args, self.transform_output, self.config)

    def build(self) -> int:
        config = self.config
        self.module = TwinClassifier(
            config.architecture,
            config.image_size,
            config.channels,
            len(self.class_names),
            optimizer=config.optimizer,
            learning_rate=config.learning_rate,
            lr_schedule=config.lr_schedule,
            epochs=config.epochs,
            width_multiplier=config.width_multiplier,
            from_scratch=config.weights == "none",
            model=(
                build_user_torch(self.user_module, self.input_shape, len(self.class_names))
                if self.user_module is not None
                else None
            ),
        )
        from twinflow.trainers.backbones.weights import starting_weights  # here: it loads TensorFlow

        self.start_from(
            starting_weights(
                config, len(self.class_names), self.weights_source, self.weights_note, torch_model=self.module.model
            )
        )
        return count_parameters(self.module.model)

    def fit(self) -> str:
        config, stopwatch = self.config, self.stopwatch
        # Lightning writes logs and checkpoints through fsspec, which has no s3:// here: they are
        # written locally and copied to a remote run folder afterwards.
        with fs.local_folder_for(fs.join(self.fn_args.model_run_dir, "logs")) as logs:
            trainer, checkpoint = make_trainer(config, logs, stopwatch)
            self.run_device = trainer.strategy.root_device
            device = device_name(self.run_device)
            where = f"{config.devices} × {device} ({lightning_strategy(config)})" if config.devices > 1 else device
            parameters = count_parameters(self.module.model)
            name = self.architecture or config.architecture
            print(f"[lightning] training {name} ({parameters:,} parameters) on {where}", flush=True)
            data = _fit_data(self.data, config)
            for index, phase in enumerate(self.phases):
                phase_logs = logs if not index else os.path.join(logs, f"phase-{index + 1}")
                if index:  # a Trainer per phase: its epochs, its checkpoints, its learning-rate schedule
                    phase_config = config.model_copy(update={"epochs": phase.epochs})
                    trainer, checkpoint = make_trainer(phase_config, phase_logs, stopwatch)
                self._start_phase(phase)
                trainer.fit(self.module, datamodule=data)
                if config.devices > 1:  # the epochs ran in the launched processes; rank 0 left its timings
                    stopwatch.load(os.path.join(phase_logs, STOPWATCH_FILE))
                restore_best(self.module, checkpoint)
        self.input_mode = self.data.input_mode
        return device

    def _start_phase(self, phase: Phase) -> None:
        """Which backbone units train (frozen ones stay in eval(): batch norm on its running statistics) and the
        phase's rate and length, which ``configure_optimizers`` reads."""
        if self.config.backbone:
            freeze_backbone(self.module.model, phase.trainable_units, phase.train_batch_norm)
        if len(self.phases) > 1 or self.config.backbone:
            print(f"[lightning] phase {phase.name}: {phase.epochs} epochs at {phase.learning_rate:g}", flush=True)
        self.module.hparams.learning_rate = phase.learning_rate
        self.module.hparams.epochs = phase.epochs

    def evaluate(self) -> tuple[SplitMetrics, SplitMetrics]:
        model = self.module.model.to(self.run_device)
        train = evaluate(model, self.data.clean_batches("train"), self.run_device)
        evaluation = evaluate(model, self.data.clean_batches("eval"), self.run_device)
        return split_metrics(*train), split_metrics(*evaluation)

    def export(self, path: str) -> Exported:
        return export_serving_model(self.module.model, self.fn_args.transform_output, self.config, path)


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer's entry point (``twinflow.trainers.lightning.train.run_fn``)."""
    LightningTrainer(fn_args).run()
