"""Training-step throughput of the MobileNetV2 twins: phase 1 (frozen backbone) against phase 2 (top units).

Fine-tuning's phase 1 trains only the head on a frozen backbone and must not pay for the
frozen layers' gradients; phase 2 also trains the top ``--fine-tune-blocks`` units (batch norm
there stays frozen, as twinflow.trainers.backbones sets it by default); "all" trains everything (batch
norm on batch statistics), as ``--weights none`` would. Each figure is images/s over bare
training steps (forward, loss, backward, Adam update) on random images held in memory:
Keras through a ``tf.function`` step like ``fit``'s, torch eagerly in train() mode. Rounds of
the phases and frameworks alternate, every step is timed, and each figure comes from the
fastest step (the one least slowed by other work: a shared machine's noise only ever adds
time), with the median step's figure beside it. Compare ratios from one run. Nothing is asserted::

    python bench/backbone_phases.py                       # 96 px, widths 1.0 and 0.35, batch 32
    python bench/backbone_phases.py --alphas 0.35 --rounds 2 --steps 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from twinflow.core.bootstrap import bootstrap

bootstrap()  # an entry point: OpenMP's wait policy before torch loads

CLASSES = 5
PHASES = ("phase 1", "phase 2", "all")


def keras_step(model, images, labels) -> Callable[[], None]:
    """A compiled training step on the model's current trainable set, as Keras's fit compiles one."""
    import tensorflow as tf

    optimizer = tf.keras.optimizers.Adam(1e-4)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = tf.constant(images), tf.constant(labels)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        gradients = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(gradients, model.trainable_weights, strict=True))
        return loss

    return lambda: step().numpy()


def torch_step(model, images, labels) -> Callable[[], None]:
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC memory, as the trainers feed it
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, eps=1e-7)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def step_seconds(step: Callable[[], None], steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def phase_settings(phase: str, top_blocks: int) -> tuple[int, bool]:
    """(units unfrozen from the top, train batch norm there)."""
    from twinflow.trainers.backbones import mobilenet_v2_spec as spec

    return {"phase 1": (0, False), "phase 2": (top_blocks, False), "all": (spec.NUM_UNITS, True)}[phase]


def bench_alpha(alpha: float, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch

    from twinflow.trainers.backbones import weights
    from twinflow.trainers.backbones.keras_mobilenet_v2 import set_trainable_blocks
    from twinflow.trainers.backbones.torch_mobilenet_v2 import freeze_backbone

    shape = (args.image_size, args.image_size, 3)
    twins = weights.mobilenet_v2_twins(shape, CLASSES, alpha)
    keras_model, torch_model = twins.build_keras(), twins.build_torch()
    weights.apply_weights("none", twins, seed=0, keras_model=keras_model, torch_model=torch_model)
    if args.channels_last:
        torch_model = torch_model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch_size, *shape)).astype(np.float32)
    labels = rng.integers(0, CLASSES, args.batch_size).astype(np.int64)

    steps: dict[tuple[str, str], Callable[[], None]] = {}
    for phase in PHASES:
        top_blocks, train_batch_norm = phase_settings(phase, args.fine_tune_blocks)
        set_trainable_blocks(keras_model, top_blocks, train_batch_norm)
        freeze_backbone(torch_model, top_blocks, train_batch_norm)
        started = time.perf_counter()
        steps[(phase, "keras")] = keras_step(keras_model, images, labels)
        steps[(phase, "keras")]()  # traces: the trainable set is fixed into the step from here
        print(f"  alpha {alpha:g} {phase}: keras step traced in {time.perf_counter() - started:.1f} s", flush=True)
        steps[(phase, "torch")] = torch_step(torch_model, images, labels)
        steps[(phase, "torch")]()
    # Each torch step closure keeps its own optimizer over the parameters trainable in its phase,
    # but requires_grad is the model's: set it again before each phase's rounds.
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for _ in range(args.rounds):
        for phase in PHASES:
            top_blocks, train_batch_norm = phase_settings(phase, args.fine_tune_blocks)
            freeze_backbone(torch_model, top_blocks, train_batch_norm)
            for framework in ("keras", "torch"):
                step = steps[(phase, framework)]
                step()  # warm
                seconds[(phase, framework)] += step_seconds(step, args.steps)
    return {
        framework: {
            **{phase: args.batch_size / min(seconds[(phase, framework)]) for phase in PHASES},
            **{f"{phase} median": args.batch_size / statistics.median(seconds[(phase, framework)]) for phase in PHASES},
        }
        for framework in ("keras", "torch")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.35])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fine-tune-blocks", type=int, default=4, help="units unfrozen in phase 2 (of 19)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)

    import torch

    print(
        f"MobileNetV2 training steps, {args.image_size} px, batch {args.batch_size}, phase 2 = top "
        f"{args.fine_tune_blocks} units, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    results = {f"{alpha:g}": bench_alpha(alpha, args) for alpha in args.alphas}
    header = " ".join(f"{p + ' img/s':>15}" for p in PHASES)
    print(f"\n{'alpha':>6} {'framework':>9} {header}  phase 1 ÷ phase 2 (fastest, median step)")
    for alpha, frameworks in results.items():
        for framework, figures in frameworks.items():
            cells = " ".join(f"{figures[p]:>15,.0f}" for p in PHASES)
            best = figures["phase 1"] / figures["phase 2"]
            median = figures["phase 1 median"] / figures["phase 2 median"]
            print(f"{alpha:>6} {framework:>9} {cells}  {best:>17.2f} {median:>6.2f}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
