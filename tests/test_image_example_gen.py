"""ImageExampleGen: folder layouts, the Example contract, deterministic splits, clear errors."""

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import artifact_utils, standard_artifacts

from components.image_example_gen.executor import (
    CLASS_NAMES_FILE,
    Executor,
    ImageFolderError,
    check_decodable,
    list_sources,
    split_of,
)


def _save(path: Path, size: tuple[int, int], mode: str, fmt: str, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(), mode=mode).save(path, fmt)


def _read_split(examples_uri: str, split: str) -> list[tf.train.Example]:
    records = []
    for path in sorted(Path(examples_uri, f"Split-{split}").glob("*.gz")):
        records += [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path), "GZIP")]
    return records


def _run_executor(
    input_base: Path, out: Path, eval_buckets: int = 2, test_buckets: int = 2
) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    Executor().Do(
        {},
        {"examples": [examples]},
        {"input_base": str(input_base), "eval_buckets": eval_buckets, "test_buckets": test_buckets},
    )
    return examples


@pytest.fixture
def mixed_folders(tmp_path: Path) -> Path:
    """RGB JPEGs and grayscale PNGs of varied sizes, no test/ folder, a stray text file."""
    root = tmp_path / "mixed"
    for i in range(12):
        _save(root / "cat" / f"c{i}.jpg", (30 + i, 20 + 2 * i), "RGB", "JPEG", seed=i)
        _save(root / "dog" / f"d{i}.PNG", (16 + i, 40 - i), "L", "PNG", seed=100 + i)
    (root / "dog" / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()
    return root


def test_executor_writes_the_example_contract_for_mixed_images(mixed_folders: Path, tmp_path: Path) -> None:
    examples = _run_executor(mixed_folders, tmp_path / "out")
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval", "test"]
    assert json.loads(Path(examples.uri, CLASS_NAMES_FILE).read_text()) == {"class_names": ["cat", "dog"]}
    assert json.loads(examples.get_string_custom_property("class_names")) == ["cat", "dog"]
    by_split = {split: _read_split(examples.uri, split) for split in ("train", "eval", "test")}
    everything = [e for records in by_split.values() for e in records]
    assert len(everything) == 24  # the .txt file and hidden folder are not images
    for example in everything:
        f = example.features.feature
        name = f["label_name"].bytes_list.value[0].decode()
        assert f["label"].int64_list.value == [["cat", "dog"].index(name)]
        filename = f["filename"].bytes_list.value[0].decode()
        assert filename.startswith(f"{name}/")
        assert f["image"].bytes_list.value[0] == (mixed_folders / filename).read_bytes()
    # Content-hash split: every image lands where split_of says, for every run.
    for split, records in by_split.items():
        for example in records:
            assert split_of(example.features.feature["image"].bytes_list.value[0], "train", 2, 2) == split


def test_train_and_test_folders_keep_the_official_test_split(tiny_folders: Path, tmp_path: Path) -> None:
    examples = _run_executor(tiny_folders, tmp_path / "out", eval_buckets=1, test_buckets=3)
    counts = {split: len(_read_split(examples.uri, split)) for split in ("train", "eval", "test")}
    assert counts["test"] == 45  # exactly the test/ folder, never hashed train images
    assert counts["train"] + counts["eval"] == 180
    assert 0 < counts["eval"] < 60


def test_split_is_deterministic_and_respects_buckets() -> None:
    images = [i.to_bytes(2, "big") * 5 for i in range(2000)]
    first = [split_of(b, "train", 1, 1) for b in images]
    assert first == [split_of(b, "train", 1, 1) for b in images]
    share = {s: first.count(s) / len(first) for s in ("train", "eval", "test")}
    assert 0.07 < share["eval"] < 0.13 and 0.07 < share["test"] < 0.13
    assert all(split_of(b, "test", 1, 1) == "test" for b in images[:50])


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _save(root / "a" / "ok.png", (8, 8), "L", "PNG")
    good = (root / "a" / "ok.png").read_bytes()
    (root / "a" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageFolderError, match=r"broken\.png: corrupt or not an image"):
        _run_executor(root, tmp_path / "out")


def test_check_decodable_rejects_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "x.gif"
    Image.new("L", (4, 4)).save(path, "GIF")
    with pytest.raises(ImageFolderError, match="only JPEG and PNG"):
        check_decodable(path.read_bytes(), str(path))
    with pytest.raises(ImageFolderError, match="corrupt or not an image"):
        check_decodable(gzip.compress(b"hello"), "y.jpg")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class sub-folders"),
        ({"a/": None}, "class folder holds no"),
        ({"train/a/x.png": "png", "extra/b/y.png": "png"}, "only train/ and test/ may sit beside it"),
    ],
)
def test_bad_layouts_name_the_path(tmp_path: Path, layout: dict, message: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for rel, kind in layout.items():
        if kind is None:
            (root / rel).mkdir(parents=True)
        else:
            _save(root / rel, (4, 4), "L", "PNG")
    with pytest.raises(ImageFolderError, match=message):
        list_sources(str(root))


def test_missing_input_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="does not exist"):
        list_sources(str(tmp_path / "nope"))


def test_written_splits_are_mixed_not_grouped_by_class(tiny_folders: Path, tmp_path: Path) -> None:
    """Trainers shuffle with a bounded buffer: class-sorted files would starve it of classes."""
    examples = _run_executor(tiny_folders, tmp_path / "out", eval_buckets=1, test_buckets=1)
    labels = [e.features.feature["label"].int64_list.value[0] for e in _read_split(examples.uri, "train")]
    changes = sum(a != b for a, b in itertools.pairwise(labels))
    assert changes > len(labels) / 3, labels
