"""Memory that large requests used goes back to the system once they are answered (glibc's allocator).

Measured with a burst of large requests (``tests/test_model_server.py``): glibc raises its
mmap threshold to the size of the largest buffer freed (up to 32 MB), so after a few large
images every later decode buffer comes from the heap, and the heap keeps the memory when it
is freed: resident memory stayed about 470 MB above its start, idle. A fixed threshold keeps
buffers of 1 MB and more in their own mappings, unmapped when freed; ``trim`` hands back what
the heaps still hold free. Elsewhere than glibc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

log = logging.getLogger("twinflow.serving")
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc has both; other C libraries may not)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def map_large_buffers(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Buffers of ``threshold`` bytes and more get their own mappings, returned on free; False without glibc."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_MMAP_THRESHOLD, threshold) == 1)


def trim() -> None:
    """Hand free heap memory back to the system (glibc's malloc_trim, every arena)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class Trimmer:
    """Trims once the server has been idle for ``idle_seconds`` after work worth trimming.

    ``note(pixels)`` after each request; a request of at least ``min_pixels`` arms the trim,
    so a stream of small requests never pays for it.
    """

    def __init__(self, idle_seconds: float = 1.0, min_pixels: int = 1_000_000):
        self.idle_seconds = idle_seconds
        self.min_pixels = min_pixels
        self._armed = threading.Event()
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twinflow-trim", daemon=True)
        self._thread.start()

    def note(self, pixels: int) -> None:
        self._last = time.monotonic()
        if pixels >= self.min_pixels:
            self._armed.set()

    def stop(self) -> None:
        self._stop.set()
        self._armed.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._armed.wait()
            while not self._stop.is_set() and (wait := self._last + self.idle_seconds - time.monotonic()) > 0:
                self._stop.wait(wait)
            if self._stop.is_set():
                return
            self._armed.clear()
            trim()
