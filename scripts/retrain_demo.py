"""``make retrain-demo``: Fashion-MNIST arriving in three spans, the third shifted; ``retrain`` after each.

Splits the prepared train and test folders into three disjoint spans (``span-1..3``, each
with ``train/`` and ``test/``), brightens every image of span 3 (a camera or lighting
change), and runs ``twinflow retrain`` after each span arrives, then ``history`` and
``status``. Expected: two pushes (span 1, span 2 when not worse), one drift stop at span 3,
served versions unchanged by the stop.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SPANS = 3


def _span_of(path: Path) -> int:
    """A stable split by file name, so a span's images never change between runs of the demo."""
    return int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "big") % SPANS + 1


def build_spans(source: Path, root: Path, per_class: int, brighten: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    for split in ("train", "test"):
        for class_dir in sorted((source / split).iterdir()):
            taken = {span: 0 for span in range(1, SPANS + 1)}
            limit = per_class if split == "train" else max(per_class // 6, 20)
            for image in sorted(class_dir.iterdir()):
                span = _span_of(image)
                if taken[span] >= limit:
                    continue
                taken[span] += 1
                target = root / f"span-{span}" / split / class_dir.name / image.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if span == SPANS:
                    pixels = np.asarray(Image.open(image), dtype=np.int16)
                    Image.fromarray(np.clip(pixels + brighten, 0, 255).astype(np.uint8)).save(target)
                else:
                    shutil.copyfile(image, target)


def twinflow(*argv: str) -> int:
    print(f"\n$ twinflow {' '.join(argv)}", flush=True)
    return subprocess.run([sys.executable, "-m", "twinflow.pipelines.cli", *argv]).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path("work/data/fashion_mnist"), help="prepared Fashion-MNIST")
    parser.add_argument("--workdir", type=Path, default=Path("work/retrain_demo"), help="everything the demo writes")
    parser.add_argument("--per-class", type=int, default=600, help="training images per class in each span")
    parser.add_argument("--brighten", type=int, default=70, help="intensity added to every pixel of span 3")
    parser.add_argument("--epochs", type=int, default=3)
    args, extra = parser.parse_known_args()
    if not (args.source / "train").is_dir():
        print(f"{args.source}/train not found: run 'make data' first", file=sys.stderr)
        return 2
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    common = [
        "--data-root",
        str(work / "data"),
        "--serving-dir",
        str(work / "serving"),
        "--pipeline-root",
        str(work / "pipeline"),
        "--metadata-path",
        str(work / "metadata.sqlite"),
        "--epochs",
        str(args.epochs),
        *extra,
    ]
    staged = work / "incoming"
    build_spans(args.source, staged, args.per_class, args.brighten)
    outcomes = []
    for span in range(1, SPANS + 1):
        (work / "data").mkdir(parents=True, exist_ok=True)
        (staged / f"span-{span}").rename(work / "data" / f"span-{span}")  # a span arrives whole
        started = time.perf_counter()
        code = twinflow("retrain", *common)
        outcomes.append(f"span {span}: exit {code} after {time.perf_counter() - started:.0f} s")
        if span == SPANS - 1:  # a tick before the next span arrives: nothing to do
            started = time.perf_counter()
            code = twinflow("retrain", *common)
            outcomes.append(f"no new span: exit {code} after {time.perf_counter() - started:.1f} s")
    reading = common[2:8]
    twinflow("history", *reading)
    twinflow("status", *reading[:4])
    print("\n" + "\n".join(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
