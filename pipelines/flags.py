"""Config flags shared by every verb that builds a pipeline (run, compile, submit, schedule)."""

from __future__ import annotations

from pathlib import Path

# CLI flag → config key; None values (flag not given) leave the config alone.
RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--data-dir": ("data_dir", Path, "folder of class sub-folders (or train/ and test/ holding them)"),
    "--pipeline-root": ("pipeline_root", Path, "where TFX writes artifacts"),
    "--metadata-path": ("metadata_path", Path, "SQLite ML Metadata file"),
    "--serving-dir": ("serving_dir", Path, "where blessed models are pushed: <dir>/<framework>/<version>/"),
    "--schema": ("schema_path", Path, "curated schema .pbtxt (default: schemas/fashion_mnist/schema.pbtxt)"),
    "--pipeline-name": ("pipeline_name", str, "pipeline name in ML Metadata"),
    "--epochs": ("training.epochs", int, "training epochs (early stopping may end sooner)"),
    "--batch-size": ("training.batch_size", int, "batch size"),
    "--learning-rate": ("training.learning_rate", float, "learning rate"),
    "--optimizer": ("training.optimizer", str, "adam or sgd"),
    "--seed": ("training.seed", int, "random seed"),
    "--image-size": ("training.image_size", int, "images are resized to this square size"),
    "--channels": ("training.channels", int, "1 (grayscale) or 3 (RGB)"),
    "--architecture": ("training.architecture", str, "model architecture name (twin_cnn, tiny_cnn)"),
    "--accuracy-floor": ("evaluation.accuracy_floor", float, "lowest test accuracy that can be blessed"),
    "--max-accuracy-drop": ("evaluation.max_accuracy_drop", float, "largest drop vs the last blessed model"),
}

# The training part alone, keyed by TrainingConfig field: what a Kubeflow run may change.
TRAINING_FLAGS: dict[str, tuple[str, type, str]] = {
    flag: (key.removeprefix("training."), kind, text)
    for flag, (key, kind, text) in RUN_FLAGS.items()
    if key.startswith("training.")
}
