"""How time and memory grow with the data: the data stages and both trainers at 1×, 4× and 16× a data set.

A generated RGB data set (64×64 PNGs, 10 classes) is written at each scale; the data stages
(ImageExampleGen, StatisticsGen, Transform) run as one pipeline in a child process, and each
trainer runs in a child process of its own on that Transform output. A sampler reads the
resident memory of each child and its descendants (Beam's worker processes included) every
0.2 s; stage windows come from ML Metadata's execution times. Per stage it prints wall time,
seconds per 1,000 images and peak resident memory, writes ``<out>/scale.json`` and a plot.

The trainers run with a memory budget below the smallest scale's Transform output, so they
stream: their peak memory should stay flat while their time grows linearly. The data
stages run on Beam's direct runner; ``--beam-mode multi_processing`` gives it worker
processes. The Python direct runner buffers a stage's data, so its memory grows with the
data: flat memory there is what the distributed runners (Dataflow, Flink, Spark) are for::

    python bench/scale.py --quick
    python bench/scale.py --beam-mode multi_processing --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = [f"class_{i}" for i in range(10)]
IMAGE_SIZE = 64
DATA_STAGES = ("ImageExampleGen", "StatisticsGen", "Transform")
FRAMEWORKS = ("keras", "lightning")


def generate(folder: Path, count: int) -> Path:
    """``count`` RGB PNGs, a tenth per class: a class-coloured square at a class-dependent place, plus noise.

    Image i is the same at every scale, so a larger scale holds the smaller ones; files already
    written are kept.
    """
    import numpy as np
    from PIL import Image

    for i in range(count):
        label = i % len(CLASSES)
        path = folder / "train" / CLASSES[label] / f"{i:06d}.png"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        image = rng.integers(0, 96, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        colour = np.array([(label * 70) % 256, (label * 130 + 60) % 256, (label * 200 + 120) % 256], dtype=np.uint8)
        row, col = (label // 4) * 20 + rng.integers(0, 4), (label % 4) * 14 + rng.integers(0, 4)
        image[row : row + 16, col : col + 16] = colour
        Image.fromarray(image).save(path)
    return folder


def _config(data_dir: Path, root: Path, beam_args: list[str], budget_mb: float) -> Any:
    from twinflow.core.config import load_config
    from twinflow.pipelines.schema_draft import draft_schema

    schema = draft_schema(data_dir, root / "schema.pbtxt")
    return load_config(
        overrides={
            "pipeline_name": "twinflow-scale",
            "data_dir": str(data_dir),
            "schema_path": str(schema),
            "pipeline_root": str(root / "pipeline"),
            "metadata_path": str(root / "metadata.sqlite"),
            "serving_dir": str(root / "serving"),
            "beam_args": beam_args,
            "training": {
                "image_size": IMAGE_SIZE,
                "channels": 3,
                "architecture": "tiny_cnn",
                "epochs": 2,
                "early_stopping_patience": 100,
                "memory_budget_mb": budget_mb,
            },
        }
    )


def child_data(data_dir: Path, root: Path, beam_args: list[str], budget_mb: float) -> dict[str, Any]:
    """In the child: the data stages as one LocalDagRunner run."""
    from tfx import v1 as tfx

    from twinflow.pipelines.definition import create_data_pipeline
    from twinflow.pipelines.run.guard import list_run_input
    from twinflow.pipelines.run.local import host_argv_hidden

    config = _config(data_dir, root, beam_args, budget_mb)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    listing = list_run_input(config).listing
    with host_argv_hidden():  # this script's own flags are not Beam's
        tfx.orchestration.LocalDagRunner().run(create_data_pipeline(config, listing.fingerprint(), metadata))
    return {"images": len(listing.files)}


def child_train(framework: str, data_dir: Path, root: Path, beam_args: list[str], budget_mb: float) -> dict[str, Any]:
    """In the child: one trainer's run_fn on the Transform output the data stages wrote."""
    from tfx import v1 as tfx

    from twinflow.core.model_card import read_model_card
    from twinflow.core.registry import get_framework
    from twinflow.pipelines.run.trainer_inputs import recorded_transform_output, trainer_fn_args

    config = _config(data_dir, root, beam_args, budget_mb)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    output = recorded_transform_output(metadata, config.pipeline_name)
    fn_args = trainer_fn_args(output, config.training, root / "train" / framework)
    module_name, _, function = get_framework(framework).run_fn.rpartition(".")
    run_fn = getattr(__import__(module_name, fromlist=[function]), function)
    started = time.time()
    run_fn(fn_args)
    card = read_model_card(fn_args.serving_model_dir).training
    return {
        "started": started,
        "ended": time.time(),
        "images_per_second": card.images_per_second,
        "training_seconds": card.seconds,
        "input_mode": card.input_mode,
    }


class MemorySampler:
    """Resident memory of a process and all its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                tree = [self._process, *self._process.children(recursive=True)]
                rss = 0
                for process in tree:
                    with contextlib.suppress(psutil.Error):  # a worker that just exited
                        rss += process.memory_info().rss
                self.samples.append((time.time(), rss))
            except psutil.Error:
                return
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside, default=0)


def run_child(arguments: list[str], result: Path) -> tuple[dict[str, Any], MemorySampler, float]:
    """This script in a child process with ``arguments``; its JSON result, memory samples and wall seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *arguments, "--result", str(result)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = MemorySampler(process.pid)
    _, errors = process.communicate()
    sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"child {' '.join(arguments)} failed:\n{errors[-4000:]}")
    return json.loads(result.read_text()), sampler, time.perf_counter() - started


def stage_windows(metadata_path: Path) -> dict[str, tuple[float, float]]:
    """Each data stage's (start, end) in epoch seconds, from the latest run in ML Metadata."""
    from tfx import v1 as tfx

    from twinflow.pipelines.run.record import read_run

    record = read_run(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(str(metadata_path)), "twinflow-scale"
    )
    return {stage: (record.nodes[stage].started, record.nodes[stage].ended) for stage in DATA_STAGES}


def measure(scale: int, args: argparse.Namespace, beam_args: list[str]) -> list[dict[str, Any]]:
    count = args.base_images * scale
    data_dir = generate(args.out / "data" / f"{count}", count)
    root = args.out / args.beam_mode / f"{scale}x"
    common = ["--data", str(data_dir), "--root", str(root), "--budget-mb", str(args.budget_mb)]
    common += [f"--beam-arg={arg}" for arg in beam_args]
    rows = []
    _, sampler, _ = run_child(["--child", "data", *common], root / "data.json")
    for stage, (start, end) in stage_windows(root / "metadata.sqlite").items():
        rows.append(
            {
                "scale": scale,
                "images": count,
                "stage": stage,
                "seconds": end - start,
                "peak_rss_mb": sampler.peak(start, end) / 2**20,
            }
        )
    for framework in FRAMEWORKS:
        result, sampler, _ = run_child(["--child", framework, *common], root / f"{framework}.json")
        rows.append(
            {
                "scale": scale,
                "images": count,
                "stage": f"Trainer ({framework})",
                "seconds": result["ended"] - result["started"],
                "peak_rss_mb": sampler.peak() / 2**20,
                "input_mode": result["input_mode"],
                "images_per_second": result["images_per_second"],
                "training_seconds": result["training_seconds"],  # the epochs alone, without reading and export
            }
        )
    for row in rows:
        row["seconds_per_1k_images"] = row["seconds"] / count * 1000
        print(
            f"[scale] {scale:>2}x {row['stage']:<20} {row['seconds']:7.1f} s  {row['peak_rss_mb']:7.0f} MB", flush=True
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | scale | images | seconds | s per 1k images | epochs alone (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: (r["stage"], r["scale"])):
        epochs = f"{row['training_seconds']:.1f}" if "training_seconds" in row else ""
        lines.append(
            f"| {row['stage']} | {row['scale']}× | {row['images']:,} | {row['seconds']:.1f} | "
            f"{row['seconds_per_1k_images']:.2f} | {epochs} | {row['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["images"])
        images = [r["images"] for r in mine]
        left.plot(images, [r["seconds"] for r in mine], marker="o", label=stage)
        right.plot(images, [r["peak_rss_mb"] for r in mine], marker="o", label=stage)
    for axis, label in ((left, "wall seconds"), (right, "peak resident memory (MB)")):
        axis.set_xscale("log")
        axis.set_xlabel("images")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    figure.suptitle("twinflow: time and memory per stage as the data grows")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("work/bench/scale"))
    parser.add_argument("--quick", action="store_true", help="250 images at 1× (else 1,000)")
    parser.add_argument("--base-images", type=int)
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--beam-mode", choices=["in_memory", "multi_processing"], default="in_memory")
    parser.add_argument("--workers", type=int, default=2, help="Beam worker processes with multi_processing")
    parser.add_argument("--budget-mb", type=float, default=8, help="the trainers' memory budget: they stream above it")
    parser.add_argument("--child", choices=["data", *FRAMEWORKS], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--beam-arg", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        args.root.mkdir(parents=True, exist_ok=True)
        if args.child == "data":
            result = child_data(args.data, args.root, args.beam_arg, args.budget_mb)
        else:
            result = child_train(args.child, args.data, args.root, args.beam_arg, args.budget_mb)
        args.result.write_text(json.dumps(result))
        return 0

    args.base_images = args.base_images or (250 if args.quick else 1000)
    beam_args = []
    if args.beam_mode == "multi_processing":
        beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
    rows = []
    for scale in (int(s) for s in args.scales.split(",")):
        rows += measure(scale, args, beam_args)
    out = args.out / args.beam_mode
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(
        json.dumps(
            {
                "beam_mode": args.beam_mode,
                "beam_args": beam_args,
                "budget_mb": args.budget_mb,
                "cpus": os.cpu_count(),
                "rows": rows,
            },
            indent=2,
        )
    )
    plot(rows, out / "scale.png")
    print("\n" + table(rows))
    print(f"written to {out / 'scale.json'} and {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
