"""What both frameworks' optimized variants share: reading Transform output, sparsity, sizes, latency.

The latency benchmark runs each thread count in its own process (``python -m
twinflow.trainers.latency``): TensorFlow fixes its thread pools when it starts, so one process could
not time 1 and 2 threads honestly. Every figure of one variant (float parent and variant,
each thread count and batch size) comes from one benchmark run on one machine: compare
them as ratios.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from twinflow.core import fs
from twinflow.core.config import OptimizationConfig
from twinflow.core.contract import IMAGE_XF_KEY, LABEL_XF_KEY
from twinflow.core.model_card import ModelCard, artifact_files, artifact_size, read_model_card, write_model_card

THREADS = (1, 2)
BATCHES = (1, 64)
LATENCY_TIMEOUT_S = 600


def read_transformed_split(
    examples_uri: str, split: str, transform_dir: str, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(image_xf [N,H,W,C] float32, label [N] int64) of one split of Transform output, the first ``limit`` only."""
    pattern = fs.join(examples_uri, f"Split-{split}", "*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no Transform output at {pattern}")
    spec = tft.TFTransformOutput(transform_dir).transformed_feature_spec()
    spec = {IMAGE_XF_KEY: spec[IMAGE_XF_KEY], LABEL_XF_KEY: spec[LABEL_XF_KEY]}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if limit is not None:
        dataset = dataset.take(limit)
    images, labels = [], []
    for batch in dataset.batch(1024).map(lambda records: tf.io.parse_example(records, spec)).as_numpy_iterator():
        images.append(batch[IMAGE_XF_KEY])
        labels.append(batch[LABEL_XF_KEY].reshape(-1))
    return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int64)


def kernel_sparsity(kernels: Iterable[np.ndarray]) -> float:
    """Share of exact zeros over the given weight arrays (conv and dense kernels: what pruning prunes)."""
    arrays = [np.asarray(k) for k in kernels]
    total = sum(a.size for a in arrays)
    return float(sum(int((a == 0).sum()) for a in arrays) / total) if total else 0.0


def artifact_sizes(model_dir: str) -> tuple[int, int]:
    """(raw bytes, gzip bytes) of a model folder's artifact files (``twinflow.core.model_card.artifact_files``, the
    files the card's ``size_bytes`` counts); gzip shows what pruning's zeros save."""
    raw = zipped = 0
    for path in artifact_files(model_dir, read_model_card(model_dir).artifact):
        with fs.gfile().GFile(path, "rb") as handle:
            data = handle.read()
        raw += len(data)
        zipped += len(gzip.compress(data, compresslevel=9, mtime=0))
    return raw, zipped


def measure_latency(
    models: Mapping[str, str], images: np.ndarray, iterations: int, threads: Iterable[int] = THREADS
) -> dict[str, float]:
    """p50 and p90 milliseconds per call of each model (label → folder) on ``images``, per batch size and
    thread count: ``<label>_p50_ms_b<batch>_t<threads>``. A failed benchmark raises with its output."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        images_path = os.path.join(scratch, "images.npy")
        np.save(images_path, images[: max(BATCHES)])
        for count in threads:
            command = [
                sys.executable,
                "-m",
                "twinflow.trainers.latency",
                "--threads",
                str(count),
                "--iterations",
                str(iterations),
                "--images",
                images_path,
                *[f"{label}={path}" for label, path in models.items()],
            ]
            done = subprocess.run(command, capture_output=True, text=True, timeout=LATENCY_TIMEOUT_S)
            if done.returncode != 0:
                raise RuntimeError(f"latency benchmark failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
            figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


def sizes_and_latency(parent_dir: str, variant_dir: str, images: np.ndarray, settings: OptimizationConfig) -> dict:
    """The variant card's benchmark: float and variant artifact sizes (raw, gzip) and latencies, from one run."""
    figures: dict[str, float] = {}
    for label, folder in (("float", parent_dir), ("variant", variant_dir)):
        raw, zipped = artifact_sizes(folder)
        figures[f"{label}_bytes"], figures[f"{label}_gzip_bytes"] = float(raw), float(zipped)
    models = {"float": parent_dir, "variant": variant_dir}
    figures.update(measure_latency(models, images, settings.latency_iterations, settings.latency_threads))
    return figures


def finish_variant(
    variant_card: ModelCard, parent_dir: str, output_dir: str, timing_images: np.ndarray, settings: OptimizationConfig
) -> ModelCard:
    """Write the variant's card, time and size it beside its parent, and write the card again with the figures."""
    assert variant_card.variant is not None
    write_model_card(output_dir, variant_card)  # the benchmark loads the folder by its card
    benchmark = sizes_and_latency(parent_dir, output_dir, timing_images, settings)
    info = variant_card.variant.model_copy(update={"benchmark": benchmark})
    final = variant_card.model_copy(
        update={"variant": info, "size_bytes": artifact_size(output_dir, variant_card.artifact)}
    )
    write_model_card(output_dir, final)
    print(f"[optimize] {final.framework}-{info.name}: {describe_benchmark(benchmark)}", flush=True)
    return final


def describe_benchmark(figures: Mapping[str, float]) -> str:
    """One line for the log: size ratio and batch-1 / batch-64 speed-ups at one thread."""

    def ratio(key: str) -> str:
        base, new = figures.get(f"float_{key}"), figures.get(f"variant_{key}")
        return f"{base / new:.2f}x" if base and new else "n/a"

    size = figures["variant_bytes"] / figures["float_bytes"] if figures.get("float_bytes") else float("nan")
    return (
        f"{size:.0%} of the float size ({figures['variant_gzip_bytes'] / 1e6:.2f} MB gzip), "
        f"speed-up batch 1: {ratio('p50_ms_b1_t1')}, batch 64: {ratio('p50_ms_b64_t1')} (1 thread)"
    )
