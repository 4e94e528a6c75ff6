"""Server-side micro-batching: concurrent requests to one model and signature run as one model call.

At batch 1 a call's fixed cost (the transform graph, the session call) dwarfs the work per
image, so joining the requests that arrive within a short window raises throughput. Each
request was checked on its own before it joins, so one bad image never fails the others; if
a joint call fails anyway, each request is run alone and gets its own answer or error.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from serving.models import Outputs, ServedModel

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
        self.calls = 0  # model calls made (fewer than requests when batching works)

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
            batch = [first]
            size = len(batch[0].values)
            deadline = time.monotonic() + self.window
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = requests.get(timeout=remaining)
                except queue.Empty:
                    break
                batch.append(item)
                size += len(item.values)
            self._run(model, signature, batch)

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
