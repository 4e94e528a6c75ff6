"""ImageExampleGen: folder layouts, the Example contract, deterministic splits, every bad file at once."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import artifact_utils, standard_artifacts

from twinflow.components.image_example_gen.executor import CLASS_NAMES_FILE, Executor, split_of
from twinflow.components.image_example_gen.images import UnusableImage, ingest
from twinflow.components.image_example_gen.ingest import INGEST_REPORT_FILE
from twinflow.components.image_example_gen.listing import list_sources
from twinflow.core.errors import ImageFolderError
from twinflow.trainers.preprocessing import decode_and_resize


def _save(path: Path, size: tuple[int, int], mode: str, fmt: str, seed: int = 0, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    source = "RGBA" if mode == "CMYK" else mode
    Image.fromarray(pixels.squeeze(), mode=source).convert(mode).save(path, fmt, **options)
    return path


def _read_split(examples_uri: str, split: str) -> list[tf.train.Example]:
    records = []
    for path in sorted(Path(examples_uri, f"Split-{split}").glob("*.gz")):
        records += [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path), "GZIP")]
    return records


def _run_executor(
    input_base: Path, out: Path, eval_buckets: int = 2, test_buckets: int = 2, **properties: object
) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(out)
    Executor().Do(
        {},
        {"examples": [examples]},
        {"input_base": str(input_base), "eval_buckets": eval_buckets, "test_buckets": test_buckets, **properties},
    )
    return examples


def _ingest_report(examples: standard_artifacts.Examples) -> dict:
    return json.loads(Path(examples.uri, INGEST_REPORT_FILE).read_text())


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@pytest.fixture
def mixed_folders(tmp_path: Path) -> Path:
    """RGB JPEGs and grayscale PNGs of varied sizes, no test/ folder, a stray text file."""
    root = tmp_path / "mixed"
    for i in range(12):
        _save(root / "cat" / f"c{i}.jpg", (30 + i, 20 + 2 * i), "RGB", "JPEG", seed=i)
        _save(root / "dog" / f"d{i}.PNG", (16 + i, 40 - i), "L", "PNG", seed=100 + i)
    (root / "dog" / "notes.txt").write_text("not an image, counted as skipped")
    (root / ".hidden").mkdir()
    return root


@pytest.mark.slow  # runs the Beam executor
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
        assert f["image"].bytes_list.value[0] == (mixed_folders / filename).read_bytes()  # JPEG/PNG untouched
    # Content-hash split: every image lands where split_of says, for every run.
    for split, records in by_split.items():
        for example in records:
            assert split_of(_digest(example.features.feature["image"].bytes_list.value[0]), "train", 2, 2) == split
    report = _ingest_report(examples)
    assert report["images"] == 24 and report["skipped"] == {".txt": 1}
    assert sum(sum(c.values()) for c in report["class_counts"].values()) == 24


@pytest.mark.slow  # runs the Beam executor
def test_train_and_test_folders_keep_the_official_test_split(tiny_folders: Path, tmp_path: Path) -> None:
    examples = _run_executor(tiny_folders, tmp_path / "out", eval_buckets=1, test_buckets=3)
    counts = {split: len(_read_split(examples.uri, split)) for split in ("train", "eval", "test")}
    assert counts["test"] == 45  # exactly the test/ folder, never hashed train images
    assert counts["train"] + counts["eval"] == 180
    assert 0 < counts["eval"] < 60


@pytest.mark.slow  # runs the Beam executor
def test_train_folder_without_test_folder_is_hashed_into_three_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for kind in ("a", "b"):
        for i in range(20):
            _save(root / "train" / kind / f"{i}.png", (6, 6), "L", "PNG", seed=i + (100 if kind == "b" else 0))
    listing = list_sources(str(root))
    assert listing.class_names == ["a", "b"] and not listing.has_test_folder
    examples = _run_executor(root, tmp_path / "out", eval_buckets=2, test_buckets=2)
    counts = {split: len(_read_split(examples.uri, split)) for split in ("train", "eval", "test")}
    assert sum(counts.values()) == 40 and all(counts.values())


def test_split_is_deterministic_and_respects_buckets() -> None:
    digests = [_digest(i.to_bytes(2, "big") * 5) for i in range(2000)]
    first = [split_of(d, "train", 1, 1) for d in digests]
    assert first == [split_of(d, "train", 1, 1) for d in digests]
    share = {s: first.count(s) / len(first) for s in ("train", "eval", "test")}
    assert 0.07 < share["eval"] < 0.13 and 0.07 < share["test"] < 0.13
    assert all(split_of(d, "test", 1, 1) == "test" for d in digests[:50])


@pytest.fixture
def junk_folder(tmp_path: Path) -> Path:
    """40 good images in two classes, and five kinds of junk real folders hold."""
    root = tmp_path / "junk"
    for i in range(20):
        _save(root / "a" / f"a{i}.png", (8, 8), "L", "PNG", seed=i)
        _save(root / "b" / f"b{i}.jpg", (8, 8), "RGB", "JPEG", seed=50 + i)
    good = (root / "a" / "a0.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.jpg").write_text("this is a text file with an image's name")
    Image.new("1", (20000, 20000)).save(root / "b" / "huge.png")  # 400 megapixels, a few kB on disk
    os.symlink(root / "gone.png", root / "b" / "link.png")
    fd = os.open(os.path.join(os.fsencode(root / "a"), b"caf\xe9.png"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, good)
    os.close(fd)
    return root


@pytest.mark.slow  # runs the Beam executor
def test_every_bad_file_is_named_in_one_error_without_python_reprs(junk_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError) as err:
        _run_executor(junk_folder, tmp_path / "out")
    message = str(err.value)
    assert message.startswith("6 of 46 files cannot be used as images (none may be left out by default")
    expected = {
        "truncated.png": "the image data is corrupt or truncated",
        "empty.jpg (0 bytes): the file is empty": "",
        "notes.jpg": "not an image Pillow can read",
        "huge.png": "20000×20000 pixels (400 megapixels) is above the limit of 64 megapixels",
        "link.png: broken symbolic link to": "",
        "caf\\xe9.png: the file name is not valid UTF-8; rename the file": "",
    }
    for name, reason in expected.items():
        line = next((line for line in message.splitlines() if name in line), None)
        assert line is not None and reason in line, (name, message)
    assert "<_io." not in message and "object at 0x" not in message


@pytest.mark.slow  # runs the Beam executor
def test_max_bad_images_leaves_them_out_and_lists_them(junk_folder: Path, tmp_path: Path) -> None:
    examples = _run_executor(junk_folder, tmp_path / "out", max_bad_images=6)
    report = _ingest_report(examples)
    assert report["images"] == 40 and len(report["bad_files"]) == 6
    assert any("6 unusable file(s) left out" in w for w in report["warnings"])
    assert sum(len(_read_split(examples.uri, s)) for s in ("train", "eval", "test")) == 40
    with pytest.raises(ImageFolderError, match="at most 4 may be left out"):
        _run_executor(junk_folder, tmp_path / "out2", max_bad_images=0.1)  # 10% of 46 files


def test_the_pixel_limit_is_configurable_and_checked_before_decoding(tmp_path: Path) -> None:
    image = _save(tmp_path / "big.png", (300, 200), "L", "PNG").read_bytes()
    assert ingest(image, max_pixels=60_000).width == 300
    with pytest.raises(UnusableImage, match=r"300×200 pixels \(0 megapixels\) is above the limit of 0 megapixels"):
        ingest(image, max_pixels=59_999)


FORMATS = [
    ("gray.gif", "L", "GIF", {}),
    ("rgb.bmp", "RGB", "BMP", {}),
    ("rgb.webp", "RGB", "WEBP", {"lossless": True}),
    ("rgb.tiff", "RGB", "TIFF", {}),
    ("gray16.tif", "I;16", "TIFF", {}),
    ("cmyk.jpg", "CMYK", "JPEG", {}),
    ("gray16.png", "I;16", "PNG", {}),
    ("rgba.png", "RGBA", "PNG", {}),
    ("palette.png", "P", "PNG", {}),
    ("gray.jpg", "L", "JPEG", {}),
]


@pytest.mark.parametrize(("name", "mode", "fmt", "options"), FORMATS)
def test_every_pillow_format_reaches_tensorflow_decodable(
    tmp_path: Path, name: str, mode: str, fmt: str, options: dict
) -> None:
    path = tmp_path / name
    if mode == "I;16":
        pixels = (np.random.default_rng(0).random((9, 12)) * 65535).astype(np.uint16)
        Image.fromarray(pixels).save(path, fmt)
    else:
        _save(path, (12, 9), mode if mode != "P" else "L", fmt, **options)
        if mode == "P":
            Image.open(path).convert("P").save(path, fmt)
    image = ingest(path.read_bytes())
    assert image.converted == (fmt not in ("PNG", "JPEG") or mode == "CMYK")
    assert image.data == path.read_bytes() or Image.open(io.BytesIO(image.data)).format == "PNG"
    for channels in (1, 3):  # the one preprocessing decode both trainers see
        decoded = decode_and_resize(tf.constant([image.data]), 8, channels)
        assert decoded.shape == (1, 8, 8, channels) and np.isfinite(decoded.numpy()).all()


def test_a_turned_camera_jpeg_is_stored_upright(tmp_path: Path) -> None:
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    _save(path, (40, 20), "RGB", "JPEG", exif=exif.tobytes())
    image = ingest(path.read_bytes())
    assert image.converted and (image.width, image.height) == (20, 40)


def test_files_that_are_not_images_are_counted_by_extension(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for kind in ("x", "y"):
        _save(root / kind / "one.png", (4, 4), "L", "PNG")
        _save(root / kind / "nested" / "two.gif", (4, 4), "L", "GIF")  # images in sub-folders count
    (root / "x" / "readme.txt").write_text("")
    (root / "x" / "data.csv").write_text("")
    (root / "y" / ".DS_Store").write_text("")
    (root / "stray.png").write_bytes((root / "x" / "one.png").read_bytes())
    listing = list_sources(str(root))
    assert len(listing.files) == 4
    assert dict(listing.skipped) == {".txt": 1, ".csv": 1, "(hidden)": 1, "(image outside a class folder)": 1}


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class sub-folders"),
        ({"a/": None}, "class folder holds no image files"),
        ({"a/x.txt": "text"}, r"class folder holds no image files \(files skipped so far: 1 .txt\)"),
        ({"train/a/x.png": "png", "extra/b/y.png": "png"}, "only train/ and test/ may sit beside it"),
    ],
)
def test_bad_layouts_name_the_path(tmp_path: Path, layout: dict, message: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for rel, kind in layout.items():
        if kind is None:
            (root / rel).mkdir(parents=True)
        elif kind == "text":
            (root / rel).parent.mkdir(parents=True)
            (root / rel).write_text("x")
        else:
            _save(root / rel, (4, 4), "L", "PNG")
    with pytest.raises(ImageFolderError, match=message):
        list_sources(str(root))


def test_missing_input_folder_and_a_file_given_as_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="does not exist"):
        list_sources(str(tmp_path / "nope"))
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ImageFolderError, match="is a file, not a folder"):
        list_sources(str(tmp_path / "file.png"))


def _two_classes(root: Path, per_class: int = 20) -> None:
    for kind, offset in (("a", 0), ("b", 1000)):
        for i in range(per_class):
            _save(root / kind / f"{kind}{i}.png", (6, 6), "L", "PNG", seed=offset + i)


@pytest.mark.slow  # runs the Beam executor
def test_identical_images_under_two_classes_stop_the_run(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_classes(root)
    (root / "b" / "copy_of_a3.png").write_bytes((root / "a" / "a3.png").read_bytes())
    with pytest.raises(ImageFolderError, match=r"1 image\(s\) appear under two or more classes") as err:
        _run_executor(root, tmp_path / "out")
    assert "a/a3.png (a)" in str(err.value) and "b/copy_of_a3.png (b)" in str(err.value)


@pytest.mark.slow  # runs the Beam executor
def test_duplicates_and_train_test_leaks_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_classes(root / "train")
    for kind in ("a", "b"):
        for i in range(5):
            _save(root / "test" / kind / f"t{i}.png", (6, 6), "L", "PNG", seed=5000 + i + (50 if kind == "b" else 0))
    (root / "test" / "a" / "leak.png").write_bytes((root / "train" / "a" / "a1.png").read_bytes())
    (root / "train" / "b" / "again.png").write_bytes((root / "train" / "b" / "b2.png").read_bytes())
    report = _ingest_report(_run_executor(root, tmp_path / "out", eval_buckets=1))
    assert report["leaks"] == 1 and report["duplicates"] == 2
    assert report["leak_examples"][0]["paths"] == [str(root / "test/a/leak.png"), str(root / "train/a/a1.png")]
    assert any("1 image(s) sit both in training data and in test" in w for w in report["warnings"])


@pytest.mark.slow  # runs the Beam executor
def test_a_class_only_in_test_is_named_before_anything_runs(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_classes(root / "train")
    _save(root / "test" / "c" / "only.png", (6, 6), "L", "PNG", seed=7)
    with pytest.raises(ImageFolderError, match=r"1 class\(es\) have none: 'c' has 0 train, 1 test"):
        _run_executor(root, tmp_path / "out")


@pytest.mark.slow  # runs the Beam executor
def test_a_class_whose_only_image_hashes_out_of_train_is_named(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_classes(root)
    seed = next(s for s in range(100, 500) if split_of(_digest(_png(s)), "train", 2, 2) != "train")
    (root / "c").mkdir()
    (root / "c" / "lonely.png").write_bytes(_png(seed))
    with pytest.raises(ImageFolderError, match=r"'c' has 0 train"):
        _run_executor(root, tmp_path / "out")


def _png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (6, 6), dtype=np.uint8), "L").save(out, "PNG")
    return out.getvalue()


@pytest.mark.slow  # runs the Beam executor
def test_one_class_and_two_images_are_refused_with_what_is_needed(tmp_path: Path) -> None:
    one = tmp_path / "one"
    _save(one / "only" / "x.png", (6, 6), "L", "PNG")
    with pytest.raises(ImageFolderError, match=r"a classifier needs at least 2 classes .* found only 'only'"):
        _run_executor(one, tmp_path / "out1")
    two = tmp_path / "two"
    _save(two / "a" / "x.png", (6, 6), "L", "PNG", seed=1)
    _save(two / "b" / "y.png", (6, 6), "L", "PNG", seed=2)
    with pytest.raises(ImageFolderError, match=r"(split\(s\) would be empty|has 0 train)"):
        _run_executor(two, tmp_path / "out2")


@pytest.mark.slow  # runs the Beam executor
def test_a_class_without_test_images_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _two_classes(root / "train")
    _save(root / "test" / "a" / "t.png", (6, 6), "L", "PNG", seed=9999)
    report = _ingest_report(_run_executor(root, tmp_path / "out", eval_buckets=2))
    assert any("no test images for class(es) ['b']" in w for w in report["warnings"])


@pytest.mark.slow  # runs the Beam executor
def test_written_splits_are_mixed_not_grouped_by_class(tiny_folders: Path, tmp_path: Path) -> None:
    """Trainers shuffle with a bounded buffer: class-sorted files would starve it of classes."""
    examples = _run_executor(tiny_folders, tmp_path / "out", eval_buckets=1, test_buckets=1)
    labels = [e.features.feature["label"].int64_list.value[0] for e in _read_split(examples.uri, "train")]
    changes = sum(a != b for a, b in itertools.pairwise(labels))
    assert changes > len(labels) / 3, labels
