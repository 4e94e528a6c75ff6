"""PyTorch Lightning trainer: TFX ``run_fn`` training the twin CNN on Transform output only.

The Keras trainer's twin: same TrainingConfig, architecture table, augmentation, Stopwatch
and model.json keys. The torch pieces live in torch_twin.py; this module reads Transform
output and writes the serving directory: model.onnx (input ``image_xf`` in the Transform's
NHWC layout) beside a copy of the transform graph, so raw bytes are served through tft.
torch is imported only through torch_twin, which must set OpenMP's wait policy first.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from core import fs
from core.config import TrainingConfig
from core.contract import CLASS_VOCAB_NAME, IMAGE_XF_KEY, LABEL_XF_KEY, PROBABILITIES_KEY
from core.model_card import ModelCard, OnnxGraph, TrainingSummary, write_model_card
from trainers.common import (
    Stopwatch,
    input_contract,
    parse_class_vocabulary,
    split_metrics,
    training_config,
)
from trainers.onnx_model import ONNX_FILE, TRANSFORM_GRAPH_DIR
from trainers.torch_twin import (
    ONNX_OPSET,
    Split,
    TensorDataModule,
    TwinClassifier,
    count_parameters,
    device_name,
    evaluate,
    export_onnx,
    make_trainer,
    restore_best,
    seed_everything,
    split_from_nhwc,
)

if TYPE_CHECKING:
    from torch import nn

_READ_BATCH = 1024


def read_transformed(file_pattern: list[str], data_accessor: Any, tf_transform_output: tft.TFTransformOutput) -> Split:
    """All Transform output in ``file_pattern`` as (images NCHW float32, labels int64), read 1024 at a time."""
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=_READ_BATCH, shuffle=False, num_epochs=1, label_key=LABEL_XF_KEY),
        tf_transform_output.transformed_metadata.schema,
    )
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for features, label in dataset.as_numpy_iterator():
        images.append(features[IMAGE_XF_KEY])
        labels.append(label.reshape(-1))
    return split_from_nhwc(np.concatenate(images), np.concatenate(labels))


class TransformedDataModule(TensorDataModule):
    """The train and eval splits of Transform output, read through the Trainer's data accessor."""

    def __init__(self, fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput, config: TrainingConfig):
        super().__init__(config.batch_size, config.augment, config.seed)
        self._fn_args, self._tft_output = fn_args, tf_transform_output

    def load_splits(self) -> tuple[Split, Split]:
        accessor = self._fn_args.data_accessor
        return (
            read_transformed(self._fn_args.train_files, accessor, self._tft_output),
            read_transformed(self._fn_args.eval_files, accessor, self._tft_output),
        )


def export_serving_model(model: nn.Module, transform_output: str, config: TrainingConfig, path: str) -> None:
    """model.onnx beside a copy of the transform graph: raw bytes are served through the same tft graph."""
    onnx = io.BytesIO()
    export_onnx(model, config.image_size, config.channels, onnx)
    fs.gfile().makedirs(path)
    with fs.gfile().GFile(fs.join(path, ONNX_FILE), "wb") as handle:
        handle.write(onnx.getvalue())
    fs.copy_tree(transform_output, fs.join(path, TRANSFORM_GRAPH_DIR))


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
    )
    parameters = count_parameters(module.model)
    stopwatch = Stopwatch()
    # Lightning writes logs and checkpoints through fsspec, which has no s3:// here: they are
    # written locally and copied to a remote run folder afterwards.
    with fs.local_folder_for(fs.join(fn_args.model_run_dir, "logs")) as logs:
        trainer, checkpoint = make_trainer(config, logs, stopwatch)
        run_device = trainer.strategy.root_device
        device = device_name(run_device)
        print(f"[lightning] training {config.architecture} ({parameters:,} parameters) on {device}", flush=True)
        trainer.fit(module, datamodule=data)
        restore_best(module, checkpoint)
    assert data.train is not None and data.eval is not None
    train_loss, train_accuracy = evaluate(module.model.to(run_device), data.train, run_device)
    eval_loss, eval_accuracy = evaluate(module.model, data.eval, run_device)

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
            epochs_run=trainer.current_epoch,
            **stopwatch.summary(),
            train=split_metrics(train_loss, train_accuracy),
            eval=split_metrics(eval_loss, eval_accuracy),
        ),
        size_bytes=fs.directory_size(fn_args.serving_model_dir),
    )
    write_model_card(fn_args.serving_model_dir, card)
