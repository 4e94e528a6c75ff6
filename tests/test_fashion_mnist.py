"""prepare-data on generated IDX files (never the real dataset)."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from twinflow.pipelines import fashion_mnist
from twinflow.pipelines.cli.main import main


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 50), ("test", 20)):
        images_name, labels_name = fashion_mnist.IDX_FILES[split]
        _write_idx(tmp_path / images_name, rng.integers(0, 255, (count, 28, 28)))
        _write_idx(tmp_path / labels_name, np.arange(count) % 10)
    return tmp_path


def test_prepare_writes_class_folders_and_is_idempotent(idx_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fm"
    fashion_mnist.prepare(out, source=idx_dir, limit_per_class=3)
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(fashion_mnist.CLASS_NAMES)
    assert len(list((out / "train" / "Bag").glob("*.png"))) == 3
    assert len(list((out / "test").rglob("*.png"))) == 20
    stamp = (out / "train" / "Bag").stat().st_mtime_ns
    fashion_mnist.prepare(out, source=idx_dir, limit_per_class=3)
    assert "nothing to do" in capsys.readouterr().out
    assert (out / "train" / "Bag").stat().st_mtime_ns == stamp
    fashion_mnist.prepare(out, source=idx_dir)  # a different request rebuilds
    assert len(list((out / "train").rglob("*.png"))) == 50


def test_truncated_idx_file_is_named(idx_dir: Path, tmp_path: Path) -> None:
    name = fashion_mnist.IDX_FILES["train"][0]
    data = gzip.decompress((idx_dir / name).read_bytes())
    (idx_dir / name).write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(fashion_mnist.DataPreparationError, match=f"{name}: header promises"):
        fashion_mnist.prepare(tmp_path / "fm", source=idx_dir)
    assert not (tmp_path / "fm").exists()


def test_missing_source_gives_instructions(tmp_path: Path, capsys) -> None:
    assert main(["prepare-data", "--source", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Fashion-MNIST IDX files not found" in err and "dataset-fashion-mnist" in err


def test_the_preparation_marker_is_not_counted_as_a_skipped_file(idx_dir: Path, tmp_path: Path) -> None:
    from twinflow.components.image_example_gen.listing import list_sources

    out = fashion_mnist.prepare(tmp_path / "fm", source=idx_dir, limit_per_class=3)
    assert (out / fashion_mnist.MARKER).is_file()
    listing = list_sources(str(out))
    assert len(listing.files) == 50 and dict(listing.skipped) == {}  # 3 + 2 per class, nothing skipped
    (out / ".DS_Store").write_text("another hidden file is still counted")
    assert dict(list_sources(str(out)).skipped) == {"(hidden)": 1}
