"""MicroBatcher: concurrent callers of one k share searches, each gets its own rows, errors reach
all, and a query stuck behind a hung search times out without breaking the queue."""

import threading
import time

import numpy as np
import pytest

from twotower.serve import batching
from twotower.serve.batching import MicroBatcher, SearchTimeout


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
    assert sizes == [1, 4, 4]  # the lead query alone, then the eight that waited: four of k 2, four of k 3
    assert batcher.batches == 3
    for i, (scores, rows) in results.items():
        k = 2 + i % 2
        np.testing.assert_array_equal(rows, [np.arange(k)])
        np.testing.assert_array_equal(scores, [i * np.arange(k, 0, -1)])  # searched with its own k


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


def k_dependent_search(calls, release):
    """A fake hnsw: what a search finds depends on its k (efSearch = max(k, ...)), so a query's
    rows differ when it is searched at another k. Each vector is [query number, its own k]."""

    def search(vectors, k):
        calls.append((k, sorted({int(own_k) for own_k in vectors[:, 1]})))
        release.wait(30)
        rows = (vectors[:, :1].astype(int) + k * np.arange(k)) % 97
        return rows.astype(np.float32), rows

    return search


def test_only_queries_of_one_k_share_a_search_and_each_gets_what_it_gets_alone():
    calls, release = [], threading.Event()
    batcher = MicroBatcher(k_dependent_search(calls, release))
    ks = [10, 1000, 10, 100, 1000, 10, 100]
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(np.array([i, ks[i]]), ks[i])))
               for i in range(len(ks))]
    threads[0].start()
    wait_until(lambda: len(calls) == 1)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: len(batcher._pending) == len(ks) - 1)
    release.set()
    for thread in threads:
        thread.join(30)
    assert all([k] == own_ks for k, own_ks in calls)  # no search mixed k's
    assert sorted(k for k, _ in calls) == [10, 10, 100, 1000]  # the leader alone, then one search per k
    alone = MicroBatcher(k_dependent_search([], release))
    for i, k in enumerate(ks):
        expected = alone(np.array([i, k]), k)
        np.testing.assert_array_equal(results[i][1], expected[1])
        np.testing.assert_array_equal(results[i][0], expected[0])


def blocking_search(started, release):
    def search(vectors, k):
        started.set()
        release.wait(30)
        return np.ones((len(vectors), k), dtype=np.float32), np.tile(np.arange(k), (len(vectors), 1))

    return search


def hung_lead():
    """A batcher (timeout 0.2 s) whose lead thread is stuck in a search until `release` is set."""
    started, release = threading.Event(), threading.Event()
    batcher = MicroBatcher(blocking_search(started, release), timeout=0.2)
    results = {}
    lead = threading.Thread(target=lambda: results.__setitem__("lead", batcher(np.zeros(2), 1)))
    lead.start()
    assert started.wait(30)
    return batcher, release, results, lead


def test_a_query_behind_a_hung_search_times_out_and_leaves_the_queue_to_the_next():
    batcher, release, results, lead = hung_lead()
    with pytest.raises(SearchTimeout, match=r"search timed out after waiting 0\.2 s"):
        batcher(np.zeros(2), 1)  # queued first behind the hung search, so the lead would pass to it
    assert batcher._pending == []
    batcher.timeout = 30
    later = threading.Thread(target=lambda: results.__setitem__("later", batcher(np.zeros(2), 3)))
    later.start()
    wait_until(lambda: len(batcher._pending) == 1)
    release.set()
    lead.join(30)
    later.join(30)
    assert results["lead"][1].shape == (1, 1) and results["later"][1].shape == (1, 3)
    assert not batcher._running and batcher._pending == []
    assert batcher(np.zeros(2), 2)[1].shape == (1, 2)  # idle again: the next caller leads


def test_a_query_handed_the_lead_as_its_wait_times_out_still_runs_the_batch(monkeypatch):
    """The race the queue must survive: the leader hands the lead to a query whose wait has just
    timed out. That query must run the next batch, or everything queued behind it waits on nobody."""

    class LateEvent(threading.Event):
        def wait(self, timeout=None):
            super().wait(30)
            return False  # set, but seen as a timeout

    class LateRequest(batching._Request):
        def __init__(self, vector, k):
            super().__init__(vector, k)
            self.ready = LateEvent()

    batcher, release, results, lead = hung_lead()
    monkeypatch.setattr(batching, "_Request", LateRequest)
    threads = {name: threading.Thread(target=lambda name=name, k=k: results.__setitem__(name, batcher(np.zeros(2), k)))
               for name, k in (("handed the lead", 2), ("behind it", 3))}
    for queued, thread in enumerate(threads.values(), start=1):
        thread.start()
        wait_until(lambda: len(batcher._pending) == queued)
    release.set()
    for thread in (lead, *threads.values()):
        thread.join(30)
    assert results["handed the lead"][1].shape == (1, 2) and results["behind it"][1].shape == (1, 3)
    assert batcher.batches == 3 and not batcher._running
