"""Fashion-MNIST into the pipeline's universal input layout: ``<split>/<class>/<n>.png``.

The pipeline reads folders of images (the tf_flowers layout), so the default dataset is
written that way too; nothing downstream knows it came from IDX files.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from twinflow.core.contract import PREPARED_MARKER
from twinflow.core.errors import InputDataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CANONICAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASS_NAMES = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MARKER = PREPARED_MARKER


class DataPreparationError(InputDataError):
    """The source IDX files are missing or malformed; the message says which and how to fix it."""


def find_idx_dir(source: Path | None) -> Path:
    """The directory holding the four IDX files: ``source`` if given, else Debian's package."""
    candidates = [source] if source is not None else [DEBIAN_DIR]
    for directory in candidates:
        if directory is not None and all((directory / name).is_file() for pair in IDX_FILES.values() for name in pair):
            return directory
    wanted = ", ".join(name for pair in IDX_FILES.values() for name in pair)
    where = source if source is not None else DEBIAN_DIR
    raise DataPreparationError(
        f"Fashion-MNIST IDX files not found in {where} (expected {wanted}). "
        "Install Debian's 'dataset-fashion-mnist' package (apt-get install dataset-fashion-mnist), "
        "pass --source DIR holding those files, or --download when online."
    )


def download_idx(target: Path) -> Path:
    """Fetch the IDX files from the dataset's canonical location (online machines only)."""
    target.mkdir(parents=True, exist_ok=True)
    for pair in IDX_FILES.values():
        for name in pair:
            if not (target / name).is_file():
                print(f"downloading {CANONICAL_URL}{name}", file=sys.stderr)
                urllib.request.urlretrieve(CANONICAL_URL + name, target / name)
    return target


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzipped IDX file (images: uint8 [N, 28, 28]; labels: uint8 [N])."""
    with gzip.open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] != 0x08:
            raise DataPreparationError(f"{path}: not an unsigned-byte IDX file (magic {header!r})")
        ndim = header[3]
        dims = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
        data = np.frombuffer(handle.read(), dtype=np.uint8)
    expected = int(np.prod(dims))
    if data.size != expected:
        raise DataPreparationError(f"{path}: header promises {expected} bytes of data, file holds {data.size}")
    return data.reshape(dims)


def _examples(idx_dir: Path, split: str, limit_per_class: int | None) -> Iterator[tuple[int, int, np.ndarray]]:
    images_file, labels_file = IDX_FILES[split]
    images = read_idx(idx_dir / images_file)
    labels = read_idx(idx_dir / labels_file)
    if images.shape[0] != labels.shape[0]:
        raise DataPreparationError(
            f"{idx_dir}: {images_file} holds {images.shape[0]} images but {labels_file} {labels.shape[0]} labels"
        )
    seen = [0] * len(CLASS_NAMES)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        if limit_per_class is not None and seen[label] >= limit_per_class:
            continue
        seen[label] += 1
        yield index, int(label), image


def prepare(output_dir: Path, source: Path | None = None, limit_per_class: int | None = None) -> Path:
    """Write ``output_dir/{train,test}/<class>/<index>.png``; a no-op when already done alike.

    The tree is built in a temporary sibling and renamed into place, so an interrupted
    run never leaves a half-written dataset that a later run would take as complete.
    """
    idx_dir = find_idx_dir(source)
    request = {"source": str(idx_dir.resolve()), "limit_per_class": limit_per_class}
    marker = output_dir / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == request:
        print(f"{output_dir}: already prepared ({request}), nothing to do")
        return output_dir
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        for split in IDX_FILES:
            for name in CLASS_NAMES:
                (staging / split / name).mkdir(parents=True)
            count = 0
            for index, label, image in _examples(idx_dir, split, limit_per_class):
                Image.fromarray(image, mode="L").save(staging / split / CLASS_NAMES[label] / f"{index:05d}.png")
                count += 1
                if count % 10000 == 0:
                    print(f"  {split}: {count} images written", flush=True)
            print(f"{split}: {count} images in {len(CLASS_NAMES)} class folders", flush=True)
        (staging / MARKER).write_text(json.dumps(request))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
