"""PyTorch Lightning trainer: TFX ``run_fn`` training the twin CNN on Transform output only.

The Keras trainer's twin: same TrainingConfig, architecture table, augmentation, Stopwatch
and model.json keys. The torch pieces live in torch_twin.py; this module reads Transform
output and writes the serving directory: model.onnx (input ``image_xf`` in the Transform's
NHWC layout) beside a copy of the transform graph, so raw bytes are served through tft.
torch is imported only through torch_twin, which must set OpenMP's wait policy first.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from twinflow.core import fs
from twinflow.core.config import TrainingConfig
from twinflow.core.contract import CLASS_VOCAB_NAME, IMAGE_XF_KEY, PROBABILITIES_KEY
from twinflow.core.errors import ConfigError
from twinflow.core.model_card import ModelCard, OnnxGraph, TrainingSummary, artifact_size, write_model_card
from twinflow.trainers.common import (
    Stopwatch,
    input_contract,
    parse_class_vocabulary,
    split_metrics,
    training_config,
)
from twinflow.trainers.onnx_model import ONNX_FILE, TRANSFORM_GRAPH_DIR
from twinflow.trainers.torch_twin import (
    ONNX_OPSET,
    STOPWATCH_FILE,
    DataLoader,
    HeldSplits,
    IterableDataset,
    Split,
    TensorDataModule,
    TwinClassifier,
    count_parameters,
    device_name,
    evaluate,
    export_onnx,
    lightning_strategy,
    make_trainer,
    restore_best,
    seed_everything,
    split_from_nhwc,
)
from twinflow.trainers.transformed_data import MB, READ_BATCH, TransformedSource, memory_budget_bytes

if TYPE_CHECKING:
    from torch import nn


class StreamedBatches(IterableDataset):
    """Batches streamed from the TFRecords on every pass (tf.data reads them, shuffling through a bounded
    buffer with a new seed each epoch): what the trainer iterates over when the data is over its budget."""

    def __init__(self, make_batches: Callable[[int], tf.data.Dataset], seed: int):
        super().__init__()
        self._make_batches, self._seed, self._passes = make_batches, seed, 0

    def __iter__(self) -> Iterator[Split]:
        seed, self._passes = self._seed + self._passes, self._passes + 1
        for images, labels in self._make_batches(seed).as_numpy_iterator():
            yield split_from_nhwc(images, labels)


class TransformedDataModule(TensorDataModule):
    """The train and eval splits of Transform output, read through the Trainer's data accessor: held as
    tensors when both fit ``training.memory_budget_mb``, streamed from disk otherwise."""

    def __init__(self, fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, config: TrainingConfig):
        super().__init__(config.batch_size, config.augment, config.seed)
        self._fn_args, self._tft_output, self._config = fn_args, tf_transform_output, config
        self.input_mode = "memory"

    def _source(self, split: str) -> TransformedSource:
        files = self._fn_args.train_files if split == "train" else self._fn_args.eval_files
        return TransformedSource(files, self._fn_args.data_accessor, self._tft_output, self._config)

    def load_splits(self) -> tuple[Split, Split] | None:
        budget = memory_budget_bytes(self._config)
        train = self._source("train").read(budget)
        held = 0 if train is None else sum(a.nbytes for a in train)
        evaluation = None if train is None else self._source("eval").read(budget - held)
        if train is None or evaluation is None:
            self.input_mode = "stream"
            print(
                f"[lightning] Transform output is over {self._config.memory_budget_mb:,g} MB: streaming it", flush=True
            )
            return None
        print(
            f"[lightning] Transform output: {(held + sum(a.nbytes for a in evaluation)) / MB:,.0f} MB held in memory",
            flush=True,
        )
        return split_from_nhwc(*train), split_from_nhwc(*evaluation)

    def setup(self, stage: str | None = None) -> None:
        if self.train is None and self.input_mode == "memory":
            splits = self.load_splits()
            if splits is not None:
                self.train, self.eval = splits

    def _streamed(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        source = self._source(split)
        batches = StreamedBatches(lambda seed: source.batches(batch_size, shuffle, seed), self.seed)
        return DataLoader(batches, batch_size=None)

    def train_dataloader(self) -> Iterable[Split]:
        return (
            self._streamed("train", self.batch_size, True)
            if self.input_mode == "stream"
            else super().train_dataloader()
        )

    def val_dataloader(self) -> Iterable[Split]:
        return (
            self._streamed("eval", self.batch_size, False) if self.input_mode == "stream" else super().val_dataloader()
        )

    def clean_batches(self, split: str) -> Iterable[Split]:
        return self._streamed(split, READ_BATCH, False) if self.input_mode == "stream" else super().clean_batches(split)


def export_serving_model(model: nn.Module, transform_output: str, config: TrainingConfig, path: str) -> None:
    """model.onnx beside a copy of the transform graph: raw bytes are served through the same tft graph."""
    onnx = io.BytesIO()
    export_onnx(model, config.image_size, config.channels, onnx)
    fs.gfile().makedirs(path)
    with fs.gfile().GFile(fs.join(path, ONNX_FILE), "wb") as handle:
        handle.write(onnx.getvalue())
    fs.copy_tree(transform_output, fs.join(path, TRANSFORM_GRAPH_DIR))


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


def run_fn(fn_args: FnArgs) -> None:
    config = training_config(fn_args.custom_config)
    seed_everything(config.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    class_names = parse_class_vocabulary(tf_transform_output.vocabulary_by_name(CLASS_VOCAB_NAME))
    data = TransformedDataModule(fn_args, tf_transform_output, config)

    module = TwinClassifier(
        config.architecture,
        config.image_size,
        config.channels,
        len(class_names),
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        lr_schedule=config.lr_schedule,
        epochs=config.epochs,
    )
    parameters = count_parameters(module.model)
    stopwatch = Stopwatch()
    # Lightning writes logs and checkpoints through fsspec, which has no s3:// here: they are
    # written locally and copied to a remote run folder afterwards.
    with fs.local_folder_for(fs.join(fn_args.model_run_dir, "logs")) as logs:
        trainer, checkpoint = make_trainer(config, logs, stopwatch)
        run_device = trainer.strategy.root_device
        device = device_name(run_device)
        where = f"{config.devices} × {device} ({lightning_strategy(config)})" if config.devices > 1 else device
        print(f"[lightning] training {config.architecture} ({parameters:,} parameters) on {where}", flush=True)
        trainer.fit(module, datamodule=_fit_data(data, config))
        if config.devices > 1:  # the epochs ran in the launched processes; rank 0 left its timings
            stopwatch.load(os.path.join(logs, STOPWATCH_FILE))
        restore_best(module, checkpoint)
    train_loss, train_accuracy = evaluate(module.model.to(run_device), data.clean_batches("train"), run_device)
    eval_loss, eval_accuracy = evaluate(module.model, data.clean_batches("eval"), run_device)

    export_serving_model(module.model, fn_args.transform_output, config, fn_args.serving_model_dir)
    card = ModelCard(
        framework="lightning",
        format="onnx",
        artifact=ONNX_FILE,
        onnx=OnnxGraph(input=IMAGE_XF_KEY, layout="NHWC", output=PROBABILITIES_KEY, opset=ONNX_OPSET),
        transform_graph=TRANSFORM_GRAPH_DIR,
        class_names=class_names,
        input_contract=input_contract(config),
        architecture=config.architecture,
        parameters=parameters,
        training=TrainingSummary(
            config=config,
            device=device,
            epochs_run=len(stopwatch.epochs),
            **stopwatch.summary(),
            input_mode=data.input_mode,
            train=split_metrics(train_loss, train_accuracy),
            eval=split_metrics(eval_loss, eval_accuracy),
        ),
        size_bytes=artifact_size(fn_args.serving_model_dir, ONNX_FILE),
    )
    write_model_card(fn_args.serving_model_dir, card)
