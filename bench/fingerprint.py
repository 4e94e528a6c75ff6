"""How long the "nothing changed" check takes to fingerprint a data folder by content, cold and warm.

Lists the folder as a run does, then fingerprints it through a fresh hash cache: first with the
files evicted from the page cache (``posix_fadvise(DONTNEED)``: as after a reboot), then cold
again with the files in the page cache, then warm (every file answered from the cache), then (on
the folder it wrote itself) after touching every file: all read again, the fingerprint unchanged.
The old fingerprint (names, sizes, modification times) is timed for comparison. Without
``--data-dir`` it writes a Fashion-MNIST-sized layout first: 70,000 28×28 grayscale PNGs::

    python bench/fingerprint.py
    python bench/fingerprint.py --data-dir work/data/fashion_mnist
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twinflow.components.image_example_gen.file_hashes import RACY_SECONDS, FileHashes
from twinflow.components.image_example_gen.listing import Listing, list_sources

T = TypeVar("T")


def write_layout(root: Path, train_per_class: int = 6000, test_per_class: int = 1000) -> Path:
    """Fashion-MNIST's shape: 10 classes, 28×28 grayscale PNGs of a few hundred bytes each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    index = 0
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in (f"class_{i}" for i in range(10)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                pixels = np.zeros((28, 28), np.uint8)
                top, left = rng.integers(2, 10, 2)
                pixels[top : top + 16, left : left + 14] = rng.integers(0, 255, (16, 14), dtype=np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{index:05d}.png")
                index += 1
    return root


def timed(label: str, work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"{label:<58} {seconds:6.2f} s", flush=True)
    return result, seconds


def evict(listing: Listing) -> None:
    os.sync()  # pages not yet written back cannot be dropped
    for source in listing.files:
        handle = os.open(source.path, os.O_RDONLY)
        os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(handle)


def old_fingerprint(listing: Listing) -> str:
    digest = hashlib.sha256()
    for source in listing.files:
        digest.update(f"{source.path}\0{source.size}\0{source.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="folder to fingerprint (default: write 70,000 PNGs first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data_dir or timed("writing 70,000 PNGs", lambda: write_layout(Path(scratch) / "data"))[0]
        cache = str(Path(scratch) / "data_hashes.json")
        time.sleep(RACY_SECONDS)  # files written just now are not trusted from the cache yet

        def fingerprint(label: str) -> tuple[str, float]:
            hashes = FileHashes(cache)

            def work() -> str:
                value = listing.fingerprint(hashes)
                hashes.save(str(data))
                return value

            value, seconds = timed(label, work)
            print(f"{'':<4}{hashes.read:,} files read, {hashes.reused:,} from the cache", flush=True)
            return value, seconds

        listing, _ = timed("listing (scandir + stat, as every run does)", lambda: list_sources(str(data)))
        size = sum(f.size for f in listing.files)
        print(f"{'':<4}{len(listing.files):,} files, {size / 1e6:.1f} MB", flush=True)
        timed("old fingerprint: names, sizes, modification times", lambda: old_fingerprint(listing))
        evict(listing)
        first, cold_disk = fingerprint("cold cache, files not in the page cache")
        os.remove(cache)
        cold, cold_memory = fingerprint("cold cache, files in the page cache")
        warm, warm_seconds = fingerprint("warm cache")
        print(f"{'':<4}hash cache file {os.path.getsize(cache) / 1e6:.1f} MB", flush=True)
        touched = warm
        if args.data_dir is None:  # a folder of one's own keeps its modification times
            for source in listing.files:
                os.utime(source.path)
            time.sleep(RACY_SECONDS)
            listing = list_sources(str(data))
            touched, _ = fingerprint("every file touched (new mtime, same bytes)")
        assert first == cold == warm == touched, "the fingerprint changed with the bytes unchanged"
        print(
            f"warm / cold (page cache): {warm_seconds / cold_memory:.2f}; "
            f"warm / cold (disk): {warm_seconds / cold_disk:.2f}; fingerprint unchanged throughout",
            flush=True,
        )


if __name__ == "__main__":
    main()
