"""Transform output as Lightning reads it: a LightningDataModule of NCHW tensors held in memory under the
budget, or batches streamed from the TFRecords above it.

No TensorFlow at import time: data-parallel processes started by a spawn launcher unpickle these
modules, and reading the Transform output (which needs TensorFlow) happens in the Trainer's process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from twinflow.core.config import TrainingConfig
from twinflow.trainers.lightning.model import Split, augment

if TYPE_CHECKING:
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx.components.trainer.fn_args_utils import FnArgs

    from twinflow.trainers.transformed_data import TransformedSource

EVAL_BATCH = 1024  # batches of the clean passes over a split (final train and eval metrics)


def split_from_nhwc(images: np.ndarray, labels: np.ndarray) -> Split:
    """Transform output arrays (NHWC images, labels) → NCHW float32 and int64 tensors.

    The images keep their NHWC memory (torch's channels_last): see build_model.
    """
    nhwc = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return nhwc.permute(0, 3, 1, 2), torch.from_numpy(labels.astype(np.int64).reshape(-1))


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
        return InMemoryBatches(*data, EVAL_BATCH, shuffle=False)

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
        from twinflow.trainers.transformed_data import TransformedSource

        files = self._fn_args.train_files if split == "train" else self._fn_args.eval_files
        return TransformedSource(files, self._fn_args.data_accessor, self._tft_output, self._config)

    def load_splits(self) -> tuple[Split, Split] | None:
        from twinflow.trainers.transformed_data import MB, memory_budget_bytes

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
        from twinflow.trainers.transformed_data import READ_BATCH

        return self._streamed(split, READ_BATCH, False) if self.input_mode == "stream" else super().clean_batches(split)
