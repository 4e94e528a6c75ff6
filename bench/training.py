"""Training-only throughput of both trainers against bare loops, from one run on the same Transform output.

Four loops train the same twin CNN on the same Transform output with the same batch size
and augmentation:

* **bare keras**: a ``tf.function`` step over batches gathered from arrays in memory;
* **keras trainer**: ``twinflow.trainers.keras.train.run_fn`` as the TFX Trainer runs it;
* **bare torch**: the same step in torch, in the trainer's channels_last memory format;
* **lightning trainer**: ``twinflow.trainers.lightning.train.run_fn``.

Each figure is steady-state images/s over training steps only (the first epoch, which pays
for tracing and loading, is left out), so the ratios trainer ÷ bare show what a trainer's
own machinery costs; the trainers also report their seconds per epoch spent outside
training steps (validation, callbacks, checkpoints). Nothing is asserted: the figures are
printed and written to ``<out>/bench.json``::

    python bench/training.py --quick          # about a minute: a sample of the data
    python bench/training.py                  # the whole data set
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twinflow.core.bootstrap import bootstrap

bootstrap()  # an entry point: OpenMP's wait policy before torch loads
from twinflow.trainers.keras import train as keras_train
from twinflow.trainers.lightning import data as lightning_data
from twinflow.trainers.lightning import model as lightning_model
from twinflow.trainers.lightning import train as lightning_train

QUICK_PER_CLASS = {"train": 400, "test": 40}
BACKBONE_IMAGES = 2000  # a backbone trains on this many images (a fixed number, not the whole data) by default


def sample_folder(source: Path, target: Path, per_class: dict[str, int]) -> Path:
    """The first images of each class of each split, hard-linked (copied across devices) under ``target``."""
    import shutil

    for split_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            out = target / split_dir.name / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[: per_class.get(split_dir.name, 0)]:
                if not (out / image.name).exists():
                    try:
                        (out / image.name).hardlink_to(image)
                    except OSError:
                        shutil.copyfile(image, out / image.name)
    return target


def transform_output(
    data_dir: Path, root: Path, beam_args: list[str] | None = None, training: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any]:
    """Run (or reuse, through TFX's cache) the pipeline's data stages on ``data_dir``: its Transform output."""
    from tfx import v1 as tfx

    from twinflow.core.config import load_config
    from twinflow.pipelines.definition import create_data_pipeline
    from twinflow.pipelines.run.guard import preflight
    from twinflow.pipelines.run.local import host_argv_hidden
    from twinflow.pipelines.run.trainer_inputs import recorded_transform_output
    from twinflow.schemas import default_schema_path

    config = load_config(
        overrides={
            "pipeline_name": "twinflow-bench",
            "data_dir": str(data_dir),
            "pipeline_root": str(root / "pipeline"),
            "metadata_path": str(root / "metadata.sqlite"),
            "serving_dir": str(root / "serving"),
            "enable_cache": True,
            "beam_args": beam_args or [],
            **({"training": training} if training else {}),
        }
    )
    listing = preflight(config, str(default_schema_path())).listing
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    started = time.perf_counter()
    with host_argv_hidden():  # this script's own flags are not Beam's
        tfx.orchestration.LocalDagRunner().run(create_data_pipeline(config, listing.fingerprint(), metadata))
    print(f"[bench] data stages ready in {time.perf_counter() - started:.0f} s ({len(listing.files):,} images)")
    return recorded_transform_output(metadata, config.pipeline_name), config


def read_arrays(output: dict[str, Any], split: str) -> tuple[Any, Any]:
    import tensorflow_transform as tft

    from twinflow.trainers.transformed_data import READ_BATCH, read_within_budget, transformed_batches

    batches = transformed_batches(
        output["files"][split], output["data_accessor"], tft.TFTransformOutput(output["transform_graph"]), READ_BATCH
    )
    return read_within_budget(batches, float("inf"))


def steady(epochs: list[tuple[int, float]]) -> float:
    """images/s over the epochs after the first (all of them when there is one)."""
    kept = epochs[1:] or epochs
    return sum(i for i, _ in kept) / sum(s for _, s in kept)


def bare_keras(arrays: tuple[Any, Any], training: Any, classes: int) -> dict[str, Any]:
    """The least a Keras loop can do: a compiled step over batches sliced from a per-epoch permutation."""
    import numpy as np
    import tensorflow as tf

    from twinflow.trainers.base import brightness_delta
    from twinflow.trainers.keras.model import augment, build_model

    tf.keras.utils.set_random_seed(training.seed)
    images, labels = (tf.constant(a) for a in arrays)
    model = build_model(
        training.architecture,
        training.image_size,
        training.channels,
        classes,
        training.width_multiplier,
        from_scratch=training.weights == "none",
    )
    delta = brightness_delta(training)
    optimizer = keras_train.optimizer(training)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(index: tf.Tensor) -> tf.Tensor:
        x, y = tf.cast(tf.gather(images, index), tf.float32), tf.gather(labels, index)  # a backbone's: uint8 pixels
        if training.augment:
            x = augment(x, training.seed, training.augment, delta)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
        )
        return loss

    rng = np.random.default_rng(training.seed)
    epochs = []
    for _ in range(training.epochs):
        start = time.perf_counter()
        for index in np.array_split(
            rng.permutation(len(arrays[1])), np.arange(training.batch_size, len(arrays[1]), training.batch_size)
        ):
            loss = step(tf.constant(index))
        float(loss)
        epochs.append((len(arrays[1]), time.perf_counter() - start))
    return {"images_per_second": steady(epochs), "epochs": len(epochs)}


def bare_torch(arrays: tuple[Any, Any], training: Any, classes: int) -> dict[str, Any]:
    """The same step in torch: channels_last model and batches, augmentation, Adam with Keras's epsilon."""
    import torch

    from twinflow.trainers.base import brightness_delta

    lightning_model.seed_everything(training.seed)
    images, labels = lightning_data.split_from_nhwc(*arrays)
    module = lightning_model.TwinClassifier(
        training.architecture,
        training.image_size,
        training.channels,
        classes,
        training.optimizer,
        training.learning_rate,
        width_multiplier=training.width_multiplier,
        from_scratch=training.weights == "none",
    )
    device = _torch_device()
    delta = brightness_delta(training)
    model, optimizer = module.model.to(device), module.configure_optimizers()
    batches = lightning_data.InMemoryBatches(images, labels, training.batch_size, shuffle=True, seed=training.seed)
    epochs = []
    for _ in range(training.epochs):
        model.train()
        start = time.perf_counter()
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            if training.augment:
                x = lightning_model.augment(x, training.augment, delta)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        float(loss)
        epochs.append((len(labels), time.perf_counter() - start))
    return {"images_per_second": steady(epochs), "epochs": len(epochs)}


def trainer(run_fn: Callable[[Any], None], output: dict[str, Any], training: Any, workdir: Path) -> dict[str, Any]:
    """One trainer's run_fn as TFX calls it; its figures come from the model card it writes."""
    from twinflow.core.model_card import read_model_card
    from twinflow.pipelines.run.trainer_inputs import trainer_fn_args

    fn_args = trainer_fn_args(output, training, workdir)
    run_fn(fn_args)
    card = read_model_card(fn_args.serving_model_dir).training
    return {
        "images_per_second": card.images_per_second,
        "overhead_seconds_per_epoch": getattr(card, "overhead_seconds_per_epoch", None),
        "epochs": card.epochs_run,
        "seconds": card.seconds,
        "eval_accuracy": card.eval.accuracy,
        "input_mode": getattr(card, "input_mode", "memory"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("work/data/fashion_mnist"))
    parser.add_argument("--out", type=Path, default=Path("work/bench"))
    parser.add_argument("--quick", action="store_true", help=f"a sample of {QUICK_PER_CLASS} images per class")
    parser.add_argument("--epochs", type=int, help="epochs per loop (default: 3, quick 4); the first is not counted")
    parser.add_argument("--loops", default="bare_keras,keras,bare_torch,lightning")
    parser.add_argument("--require-gpu", action="store_true", help="stop unless each loop's framework sees a GPU")
    parser.add_argument("--architecture", default=None, help="a twin CNN or a backbone (default: the config's)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--channels", type=int, default=None)
    parser.add_argument("--width-multiplier", type=float, default=None)
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help=f"train on this many images, equally per class (default: all, {BACKBONE_IMAGES:,} for a backbone)",
    )
    args = parser.parse_args()
    if args.require_gpu and (missing := frameworks_without_gpu(args.loops.split(","))):
        print(f"[bench] --require-gpu: {', '.join(missing)} sees no GPU (CUDA build installed?)", file=sys.stderr)
        return 1
    import shutil

    import tensorflow as tf

    from twinflow.core.config import TrainingConfig

    given = {
        key: value
        for key, value in {
            "architecture": args.architecture,
            "image_size": args.image_size,
            "channels": args.channels,
            "width_multiplier": args.width_multiplier,
        }.items()
        if value is not None
    }
    training = TrainingConfig(epochs=args.epochs or (4 if args.quick else 3), early_stopping_patience=100, **given)
    images = args.images or (BACKBONE_IMAGES if training.backbone and not args.quick else None)
    mode = "quick" if args.quick else f"{images}" if images else "full"
    root = args.out / mode
    if args.quick or images:
        classes_found = len([p for p in (args.data_dir / "train").iterdir() if p.is_dir()])
        per_class = QUICK_PER_CLASS if args.quick else {"train": -(-images // classes_found), "test": 10}
        data = sample_folder(args.data_dir, root / "data", per_class)
    else:
        data = args.data_dir
    output, _ = transform_output(data, root, training=training.to_dict())
    arrays = read_arrays(output, "train")
    classes = int(arrays[1].max()) + 1
    print(f"[bench] {len(arrays[1]):,} training images, {training.epochs} epochs per loop, batch {training.batch_size}")

    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "bare_keras": lambda: bare_keras(arrays, training, classes),
        "keras": lambda: trainer(keras_train.run_fn, output, training, root / "keras"),
        "bare_torch": lambda: bare_torch(arrays, training, classes),
        "lightning": lambda: trainer(lightning_train.run_fn, output, training, root / "lightning"),
    }
    results: dict[str, dict[str, Any]] = {}
    for name in args.loops.split(","):
        shutil.rmtree(root / name, ignore_errors=True)
        started = time.perf_counter()
        results[name] = runs[name]()
        results[name]["wall_seconds"] = round(time.perf_counter() - started, 1)
        print(f"[bench] {name}: {results[name]['images_per_second']:,.0f} images/s", flush=True)

    ratios = _ratios({k: v["images_per_second"] for k, v in results.items()})
    report = {
        "mode": mode,
        "architecture": training.architecture,
        "image_size": training.image_size,
        "training_images": len(arrays[1]),
        "config": training.to_dict(),
        "threads": {"tensorflow": tf.config.threading.get_intra_op_parallelism_threads(), "torch": _torch_threads()},
        "device": {"keras": keras_train.device_name(), "torch": lightning_train.device_name(_torch_device())},
        "loops": results,
        "ratios": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(_table(results, ratios))
    print(f"written to {args.out / 'bench.json'}")
    return 0


def frameworks_without_gpu(loops: list[str]) -> list[str]:
    """The frameworks among ``loops`` that would train on the CPU."""
    missing = []
    if {"bare_keras", "keras"} & set(loops):
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            missing.append("tensorflow")
    if {"bare_torch", "lightning"} & set(loops) and _torch_device().type != "cuda":
        missing.append("torch")
    return missing


def _ratios(speed: dict[str, float]) -> dict[str, float]:
    pairs = {
        "keras_trainer / bare_keras": ("keras", "bare_keras"),
        "lightning_trainer / bare_torch": ("lightning", "bare_torch"),
        "lightning_trainer / keras_trainer": ("lightning", "keras"),
        "bare_torch / bare_keras": ("bare_torch", "bare_keras"),
    }
    return {name: round(speed[a] / speed[b], 3) for name, (a, b) in pairs.items() if speed.get(a) and speed.get(b)}


def _table(results: dict[str, dict[str, Any]], ratios: dict[str, float]) -> str:
    lines = ["", "| loop | training images/s | outside training steps (s/epoch) |", "|---|---:|---:|"]
    for name, row in results.items():
        overhead = row.get("overhead_seconds_per_epoch")
        lines.append(f"| {name} | {row['images_per_second']:,.0f} | {'' if overhead is None else f'{overhead:.2f}'} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios.items()]
    return "\n".join(lines)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _torch_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


if __name__ == "__main__":
    sys.exit(main())
