"""Server-side micro-batching: concurrent requests to one model and signature run as one model call.

At batch 1 a call's fixed cost (the transform graph, the session call) dwarfs the work per
image, so joining the requests that arrive within a short window raises throughput. The window
is waited only for requests that exist: a request is ``expected`` from its admission (before its
images are checked), and a batch runs as soon as every expected request for its model and
signature has joined it, so a lone client never waits. Each request was checked on its own
before it joins, so one bad image never fails the others; if a joint call fails anyway, each
request is run alone and gets its own answer or error.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from twinflow.serving.models import Outputs, ServedModel

IDLE_SECONDS = 10.0


@dataclass
class _Pending:
    values: list[bytes]
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread per (model object, signature); ``predict`` blocks until its slice of a joint call is back."""

    def __init__(self, window_seconds: float, max_batch: int):
        self.window = window_seconds
        self.max_batch = max_batch
        self._queues: dict[tuple[int, str], queue.Queue[_Pending]] = {}
        self._lock = threading.Lock()
        self._expected: Counter[tuple[int, str]] = Counter()  # requests under way, by (model object, signature)
        self.calls = 0  # model calls made (fewer than requests when batching works)

    @contextlib.contextmanager
    def expecting(self, model: ServedModel, signature: str) -> Iterator[None]:
        """A request that will (or may) call ``predict`` for ``model`` and ``signature``: batches wait for it."""
        key = (id(model), signature)
        with self._lock:
            self._expected[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._expected[key] -= 1
                if not self._expected[key]:
                    del self._expected[key]

    def predict(self, model: ServedModel, signature: str, values: list[bytes]) -> Outputs:
        pending = _Pending(values)
        key = (id(model), signature)
        with self._lock:  # put under the lock, so an idle worker never leaves with a request in its queue
            if key not in self._queues:
                self._queues[key] = queue.Queue()
                worker = threading.Thread(
                    target=self._work, args=(key, model, signature, self._queues[key]), daemon=True
                )
                worker.start()
            self._queues[key].put(pending)
        return pending.future.result()

    def _work(self, key: tuple[int, str], model: ServedModel, signature: str, requests: queue.Queue[_Pending]) -> None:
        """Runs until idle for IDLE_SECONDS, then leaves, releasing the model (a replaced version is freed)."""
        while True:
            try:
                first = requests.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if requests.empty():
                        del self._queues[key]
                        return
                continue
            self._run(model, signature, self._gather(key, requests, first))
            del first  # waiting for the next request must not keep this one's images resident

    def _gather(self, key: tuple[int, str], requests: queue.Queue[_Pending], first: _Pending) -> list[_Pending]:
        """``first`` and the requests that join it within the window (while others are expected)."""
        batch = [first]
        size = len(first.values)
        deadline = time.monotonic() + self.window
        while size < self.max_batch and self._others_expected(key, batch):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = requests.get(timeout=remaining)
            except queue.Empty:
                break
            batch.append(item)
            size += len(item.values)
        return batch

    def _others_expected(self, key: tuple[int, str], batch: list[_Pending]) -> bool:
        """Whether a request not yet in ``batch`` may still join it; told of none (``expecting``), it may."""
        expected = self._expected[key]
        return expected == 0 or len(batch) < expected

    def _run(self, model: ServedModel, signature: str, batch: list[_Pending]) -> None:
        self.calls += 1
        try:
            outputs = model.predict(signature, [v for item in batch for v in item.values])
        except Exception as err:
            if len(batch) == 1:
                batch[0].future.set_exception(err)
                return
            for item in batch:  # find whose input it was: each alone
                self._run(model, signature, [item])
            return
        start = 0
        for item in batch:
            stop = start + len(item.values)
            item.future.set_result({name: np.asarray(values)[start:stop] for name, values in outputs.items()})
            start = stop
