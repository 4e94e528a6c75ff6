"""Shared fixtures: small generated image folders (tests never need the real dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipelines  # noqa: F401  (selects tf-keras before any test imports TensorFlow)
from tests.image_data import write_image_folders


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and test/ with 3 learnable classes of 28x28 grayscale PNGs (60 + 15 per class)."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    write_image_folders(root, classes=("circle", "square", "stripes"), train_per_class=60, test_per_class=15)
    return root


@pytest.fixture
def rgb_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "rgb.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(path, "JPEG")
    return path
