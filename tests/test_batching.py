"""MicroBatcher: concurrent callers share searches, each gets its own rows, errors reach all."""

import threading
import time

import numpy as np
import pytest

from twotower.batching import MicroBatcher


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiting_queries_are_searched_together_and_each_gets_its_rows():
    release, sizes = threading.Event(), []

    def search(vectors, k):
        sizes.append(len(vectors))
        release.wait(30)  # the first search holds until every other caller is queued
        scores = vectors[:, :1] * np.arange(k, 0, -1)  # row i's scores: its value times k..1
        return scores, np.tile(np.arange(k), (len(vectors), 1))

    batcher = MicroBatcher(search, max_batch=4)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(np.array([i, 0.0]), k=2 + i % 2)))
               for i in range(9)]
    threads[0].start()
    wait_until(lambda: sizes == [1])
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(batcher._pending) == 8)
    release.set()
    for thread in threads:
        thread.join(30)
    assert sizes == [1, 4, 4]  # the lead query alone, then the eight that waited, four at a time
    assert batcher.batches == 3
    for i, (scores, rows) in results.items():
        k = 2 + i % 2
        np.testing.assert_array_equal(rows, [np.arange(k)])
        np.testing.assert_array_equal(scores, [i * np.arange(3, 3 - k, -1)])  # searched with k 3, cut to its own


def test_an_error_reaches_every_caller_of_that_batch_and_the_batcher_recovers():
    calls = []

    def search(vectors, k):
        calls.append(len(vectors))
        if len(calls) == 1:
            raise RuntimeError("faiss failed")
        return np.zeros((len(vectors), k)), np.zeros((len(vectors), k), dtype=int)

    batcher = MicroBatcher(search)
    with pytest.raises(RuntimeError, match="faiss failed"):
        batcher(np.zeros(2), 1)
    assert batcher(np.zeros(2), 1)[1].shape == (1, 1)
