"""Generate small, learnable image datasets in the pipeline's folder layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy grayscale picture of a simple shape; the shape is what a model must learn."""
    y, x = np.mgrid[0:size, 0:size]
    cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
    if kind == "circle":
        mask = (x - cx) ** 2 + (y - cy) ** 2 < (size // 4) ** 2
    elif kind == "square":
        half = size // 4
        mask = (abs(x - cx) < half) & (abs(y - cy) < half)
    else:  # stripes
        mask = (x // 3) % 2 == 0
    image = mask * rng.uniform(150, 255) + rng.normal(0, 20, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_folders(
    root: Path,
    classes: Sequence[str],
    train_per_class: int,
    test_per_class: int = 0,
    size: int = 28,
    seed: int = 0,
    mode: str = "L",
    fmt: str = "PNG",
) -> Path:
    """``root/train/<class>/*.png`` (and ``root/test/...`` when test_per_class > 0)."""
    rng = np.random.default_rng(seed)
    splits = {"train": train_per_class, **({"test": test_per_class} if test_per_class else {})}
    suffix = ".png" if fmt == "PNG" else ".jpg"
    for split, count in splits.items():
        for kind in classes:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = Image.fromarray(pattern(kind, size, rng), mode="L").convert(mode)
                image.save(folder / f"{kind}_{i:04d}{suffix}", fmt)
    return root
