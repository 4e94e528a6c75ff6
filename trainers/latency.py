"""``python -m twinflow.trainers.latency --threads N --iterations K --images X.npy label=model_dir ...``

Times ``image_xf`` → probabilities of each model folder (SavedModel, ONNX or TFLite) in
this process with N threads: a warm-up, then K calls at batch 1 and K/10 (at least 3) at
batch 64, the models taking turns. Prints one JSON line of p50/p90 milliseconds. The thread count is set before any
runtime starts, which is why each count gets its own process (see twinflow.trainers.variants).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

WARM_UP = 5


def _predictor(model_dir: str, threads: int) -> Callable[[np.ndarray], object]:
    from twinflow.core.model_card import read_model_card

    card = read_model_card(model_dir)
    if card.format == "saved_model":
        import tensorflow as tf

        model = tf.keras.models.load_model(model_dir, compile=False)
        call = tf.function(lambda images: model(images, training=False))
        return lambda images: call(tf.constant(images)).numpy()
    from twinflow.trainers.formats.load import load_transformed_classifier

    return load_transformed_classifier(model_dir, threads=threads).predict_transformed


def _time(predictors: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray, rounds: int) -> dict[str, list]:
    """Milliseconds per call of each model, the models taking turns call by call: a machine that slows
    down or speeds up for a while does so for all of them alike."""
    for predict in predictors.values():
        for _ in range(WARM_UP):
            predict(batch)
    times: dict[str, list[float]] = {label: [] for label in predictors}
    for _ in range(rounds):
        for label, predict in predictors.items():
            started = time.perf_counter()
            predict(batch)
            times[label].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--images", required=True, help="a .npy of image_xf [N,H,W,C], N >= 64")
    parser.add_argument("models", nargs="+", help="label=model_dir")
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    images = np.load(args.images).astype(np.float32)
    predictors = {label: _predictor(path, args.threads) for label, path in (m.split("=", 1) for m in args.models)}
    figures: dict[str, float] = {}
    for batch_size, rounds in ((1, args.iterations), (64, max(3, args.iterations // 10))):
        batch = np.resize(images, (batch_size, *images.shape[1:]))
        key = f"b{batch_size}_t{args.threads}"
        for label, times in _time(predictors, batch, rounds).items():
            figures[f"{label}_p50_ms_{key}"] = float(np.percentile(times, 50))
            figures[f"{label}_p90_ms_{key}"] = float(np.percentile(times, 90))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
