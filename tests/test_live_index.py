"""A server's searcher and a rebuild of its folder: the new build loaded beside the old and
swapped in whole, checked at most once a second, a build that does not load left unserved."""

import logging
import os
import signal
import threading

import pytest

from twotower.serve.batching import MicroBatcher
from twotower.serve.collection import open_source
from twotower.files import read_json
from twotower.serve.index_folder import MANIFEST
from twotower.serve.indexer import build_index_folder
from twotower.serve.live_index import LiveIndex
from twotower.params import Bm25Params, EvalParams, HybridParams
from twotower.serve.server import reload_on_sighup
from tests.tiny_index import OTHER_PASSAGES as OTHER
from tests.tiny_index import PASSAGES, build_index, make_model, write_collection


class Clock:
    """time.monotonic, moved by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def rebuild(root, table, model="model.pt"):
    """What `twotower index --force` does to root/index while it is served."""
    write_collection(table, root / "other.parquet", "parquet")
    build_index_folder([open_source(root / "other.parquet")], root / "index", root / model, device="cpu",
                       kind="exact", eval_params=EvalParams(), bm25_params=Bm25Params(),
                       hybrid_params=HybridParams(), force=True, show_progress=False, log=lambda line: None)
    return read_json(root / "index" / MANIFEST)["build"]


def pairs(hits):
    return {(hit.pid, hit.text) for hit in hits}


def test_a_new_build_is_loaded_beside_the_old_and_swapped_in_whole(tmp_path):
    clock = Clock()
    live = LiveIndex.open(build_index(tmp_path), device="cpu", clock=clock)
    old = live.current()
    built = rebuild(tmp_path, OTHER)
    assert live.check() is None and live.current() is old  # not before a second has passed
    clock.now = 1.0
    live.check().join()
    new = live.current()
    assert new is not old and new.manifest["build"] == built and new.size == len(OTHER)
    assert isinstance(new.dense_search, MicroBatcher)
    assert pairs(new.search("coffee bean", 8)) == set(zip(OTHER["id"], OTHER["text"]))
    # a request that took the old searcher before the swap finishes on the old build's files,
    # though they are deleted now: none of it was opened by path after it was loaded
    assert pairs(old.search("coffee bean", 8)) == set(zip(PASSAGES["id"], PASSAGES["text"]))
    assert pairs(old.search("coffee bean", 8, mode="hybrid")) <= set(zip(PASSAGES["id"], PASSAGES["text"]))
    clock.now = 2.0
    assert live.check() is None  # the manifest has not changed since


def test_a_build_that_does_not_load_leaves_the_old_one_served_with_one_log_line(tmp_path, caplog):
    index = build_index(tmp_path)
    live = LiveIndex.open(index, tmp_path / "model.pt", device="cpu", check_every=0)
    old = live.current()
    make_model(tmp_path / "other.pt", seed=1)
    rebuild(tmp_path, OTHER, model="other.pt")  # the server was told --model model.pt
    with caplog.at_level(logging.INFO, logger="twotower"):
        live.check().join()
    assert live.current() is old
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    line = caplog.records[0].getMessage()
    assert "\n" not in line
    assert line.startswith(f"still serving build {old.manifest['build']['id']}: the new index in {index} did not load")
    assert "is a different model" in line
    assert live.check() is None  # not tried again every second: only when it changes, or forced
    live.check(force=True).join()
    assert live.current() is old and len(caplog.records) == 2


def test_a_searcher_without_a_folder_is_served_as_it_is(tmp_path):
    from twotower import Searcher

    searcher = Searcher.from_index(build_index(tmp_path), device="cpu")
    live = LiveIndex(searcher, check_every=0)
    rebuild(tmp_path, OTHER)
    assert live.check(force=True) is None and live.current() is searcher


def test_sighup_reloads_at_once():
    forced, called = [], threading.Event()

    class Watched:
        def check(self, force=False):
            forced.append(force)
            called.set()

    previous = signal.getsignal(signal.SIGHUP)
    try:
        reload_on_sighup(Watched())
        os.kill(os.getpid(), signal.SIGHUP)
        assert called.wait(10)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert forced == [True]


@pytest.mark.parametrize("where", ["manifest", "folder"])
def test_a_folder_mid_swap_is_not_loaded(tmp_path, where):
    """Between the build's two renames there is no manifest: nothing to load yet."""
    index = build_index(tmp_path)
    live = LiveIndex.open(index, device="cpu", check_every=0)
    if where == "manifest":
        (index / MANIFEST).unlink()
    else:
        index.rename(tmp_path / "aside")
    assert live.check(force=True) is None
