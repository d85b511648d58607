"""Coalesce concurrent dense searches into one faiss call.

Exact search over a million vectors is bound by memory bandwidth: each search reads every
vector once, whether it carries one query or thirty-two (on the development machine one
query took ~130 ms, 32 together ~630 ms). A server's threads therefore hand their query
vectors to a `MicroBatcher`: whichever thread finds it idle runs the search for every query
waiting at that moment with the same k as the oldest, then hands the lead to the oldest
query still waiting, if any, and returns. One client alone pays only a lock; many share each
pass over the vectors.

Only queries of equal k share a search, because k is a search parameter, not just a cut:
an hnsw index searches with efSearch = max(k, ef_search), so a k=10 query searched beside a
hybrid request's 1,000 would get other (better) rows than it gets alone, and a client's
answer would depend on other clients' traffic.
"""

import threading

import numpy as np


class SearchTimeout(TimeoutError):
    """A query waited longer than the batcher's timeout for its search (a server answers 503)."""


class _Request:
    def __init__(self, vector: np.ndarray, k: int):
        self.vector, self.k = vector, k
        self.ready = threading.Event()  # set when its result is in, or when it is handed the lead
        self.leads = False  # set under the batcher's lock: this request's thread runs the next batch
        self.result = self.error = None


class MicroBatcher:
    """`batcher(vector [1, dim], k)` returns `search(vectors [n, dim], k)`'s row for `vector`,
    with `search` called on up to `max_batch` waiting queries of that k at a time.

    A query that waits `timeout` seconds without its result or the lead raises `SearchTimeout`
    and leaves the queue, so one hung search does not hold every later request forever. (The
    thread running that search cannot be interrupted; it answers when faiss returns.)
    """

    def __init__(self, search, max_batch: int = 64, timeout: float = 30.0):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self._search, self.max_batch, self.timeout = search, max_batch, timeout
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._running = False
        self.batches = 0  # searches run, for tests and curiosity

    def __call__(self, vector: np.ndarray, k: int):
        request = _Request(np.asarray(vector, dtype=np.float32).reshape(1, -1), k)
        with self._lock:
            self._pending.append(request)
            request.leads = not self._running
            self._running = True
        if not request.leads and not request.ready.wait(self.timeout):
            self._give_up(request)
        if request.leads:
            self._run_batch(request)
        if request.error is not None:
            raise request.error
        return request.result

    def _give_up(self, request: _Request) -> None:
        """Leave the queue and raise, unless the result or the lead came as the wait ended: a
        request handed the lead must run the next batch, or the queries behind it wait on nobody."""
        with self._lock:
            if request.leads or request.ready.is_set():
                return
            if request in self._pending:
                self._pending.remove(request)
        raise SearchTimeout(f"search timed out after waiting {self.timeout:g} s for other searches")

    def _run_batch(self, leader: _Request) -> None:
        """Search `leader` (the oldest waiting query) with the waiting queries of its k, then
        hand the lead to the oldest query left, if any."""
        with self._lock:
            batch = [request for request in self._pending if request.k == leader.k][: self.max_batch]
            taken = {id(request) for request in batch}
            self._pending = [request for request in self._pending if id(request) not in taken]
        try:
            scores, rows = self._search(np.concatenate([request.vector for request in batch]), leader.k)
            self.batches += 1
            for i, request in enumerate(batch):
                request.result = (scores[i: i + 1], rows[i: i + 1])
        except BaseException as exc:  # every waiting thread must wake, with the error
            for request in batch:
                request.error = exc
        with self._lock:
            successor = self._pending[0] if self._pending else None
            self._running = successor is not None
            if successor is not None:
                successor.leads = True
        for request in batch:
            request.ready.set()
        if successor is not None:
            successor.ready.set()
