"""Coalesce concurrent dense searches into one faiss call.

Exact search over a million vectors is bound by memory bandwidth: each search reads every
vector once, whether it carries one query or thirty-two (on the development machine one
query took ~130 ms, 32 together ~630 ms). A server's threads therefore hand their query
vectors to a `MicroBatcher`: whichever thread finds it idle runs the search for every query
waiting at that moment, then hands the lead to a waiting thread, if any, and returns. One
client alone pays only a lock; many share each pass over the vectors.
"""

import threading

import numpy as np


class _Request:
    def __init__(self, vector: np.ndarray, k: int):
        self.vector, self.k = vector, k
        self.ready = threading.Event()
        self.result = self.error = None


class MicroBatcher:
    """`batcher(vector [1, dim], k)` returns `search(vectors [n, dim], k)`'s rows for `vector`,
    with `search` called on up to `max_batch` waiting queries at a time."""

    def __init__(self, search, max_batch: int = 64):
        self._search, self.max_batch = search, max_batch
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._running = False
        self.batches = 0  # searches run, for tests and curiosity

    def __call__(self, vector: np.ndarray, k: int):
        request = _Request(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        with self._lock:
            self._pending.append(request)
            leads = not self._running
            self._running = True
        if not leads:
            request.ready.wait()  # set when its result is in, or when it is handed the lead
        if request.result is None and request.error is None:
            self._run_batch()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_batch(self) -> None:
        with self._lock:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
        try:
            k = max(request.k for request in batch)
            scores, rows = self._search(np.concatenate([request.vector for request in batch]), k)
            self.batches += 1
            for i, request in enumerate(batch):
                request.result = (scores[i: i + 1, : request.k], rows[i: i + 1, : request.k])
        except BaseException as exc:  # every waiting thread must wake, with the error
            for request in batch:
                request.error = exc
        with self._lock:
            successor = self._pending[0] if self._pending else None
            self._running = successor is not None
        for request in batch:
            request.ready.set()
        if successor is not None:
            successor.ready.set()
