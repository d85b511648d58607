"""The searcher a server answers with, swapped whole when a new build lands in its folder.

`twotower index --force DIR` renames a finished build onto DIR while `twotower serve --index
DIR` runs. A searcher keeps the files it opened (faiss and BM25 are memory-mapped, the texts
too: `PassageStore`), so the old one stays whole; a request that opened anything by path
after the swap would mix two builds. So each request takes `LiveIndex.current()` once and
uses only that searcher. At most once a second a request also stats the manifest; when it
changed, a thread loads the new folder completely (`Searcher.from_index`) and only then
replaces the reference, so requests in flight finish on the old searcher and later ones get
the new one. A folder that fails to load (another model, a damaged file) leaves the old one
served and one line in the log. `check(force=True)` (SIGHUP, see `twotower.serve.server`) reloads
even if the manifest looks unchanged.
"""

import functools
import logging
import os
import threading
import time
from pathlib import Path

from twotower.serve.batching import MicroBatcher
from twotower.errors import TwoTowerError
from twotower.serve.index_folder import MANIFEST
from twotower.serve.search import Searcher

CHECK_EVERY = 1.0  # seconds between two stats of the manifest
LOAD_TRIES = 3
log = logging.getLogger("twotower.serve.server")


def manifest_stamp(folder) -> tuple | None:
    """What changes when a build replaces `folder`: its manifest's inode, mtime and size (None
    while there is none, as between the two renames of a swap). A stat: cheap per request."""
    try:
        stat = os.stat(Path(folder) / MANIFEST)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def build_of(searcher) -> dict | None:
    """The manifest's build id and finish time (None for a folder built before they were recorded)."""
    return (searcher.manifest or {}).get("build")


def for_serving(searcher):
    """`searcher` with its dense searches coalesced across a server's threads (`twotower.serve.batching`),
    and the pid order hybrid requests fuse by computed before the first one waits for it."""
    if searcher.dense_search is not None and not isinstance(searcher.dense_search, MicroBatcher):
        searcher.dense_search = MicroBatcher(searcher.dense_search)
    if searcher.bm25 is not None:
        searcher.pid_rank  # a cached property: computed here, once
    return searcher


class LiveIndex:
    """`current()`: the searcher to answer one request with. Without `folder` and `load` it is
    always `searcher`; with them, a new build of `folder` (`load()` opens it) replaces it."""

    def __init__(self, searcher, folder=None, load=None, stamp=None, check_every: float = CHECK_EVERY,
                 clock=time.monotonic):
        self.searcher = for_serving(searcher)
        self.folder, self._load = (Path(folder) if folder is not None else None), load
        self._seen, self.check_every, self._clock = stamp, check_every, clock
        self._next_check = clock() + check_every
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    @classmethod
    def open(cls, folder, model=None, device="auto", **kwargs) -> "LiveIndex":
        """The index folder as `Searcher.from_index` opens it, watched for new builds."""
        load = functools.partial(Searcher.from_index, folder, model, device)
        searcher, stamp = _load_whole(folder, load)
        return cls(searcher, folder, load, stamp, **kwargs)

    def current(self):
        if self._load is not None and self._clock() >= self._next_check:
            self.check()
        return self.searcher

    def check(self, force: bool = False) -> threading.Thread | None:
        """Start loading `folder` in the background if its manifest changed since the build served
        was loaded, or if `force`; returns the loading thread, or None if none was started."""
        if self._load is None:
            return None
        with self._lock:
            if self._loader is not None and self._loader.is_alive():
                return None
            now = self._clock()
            if not force and now < self._next_check:
                return None
            self._next_check = now + self.check_every
            stamp = manifest_stamp(self.folder)
            if stamp is None or (stamp == self._seen and not force):
                return None
            self._loader = threading.Thread(target=self._reload, args=(stamp,), name="twotower-reload", daemon=True)
            self._loader.start()
            return self._loader

    def _reload(self, stamp) -> None:
        old = build_of(self.searcher)
        try:
            searcher = self._load()
            if manifest_stamp(self.folder) != stamp:
                return  # another build landed while this one loaded: it may hold files of both; the next check loads it
            searcher.embed_query("warm up")  # traces the query path now, not in the first request's time
        except Exception as exc:  # a TwoTowerError, or whatever a damaged file raises: stay up on the old one
            reason = str(exc) if isinstance(exc, TwoTowerError) else f"{type(exc).__name__}: {exc}"
            log.warning("still serving build %s: the new index in %s did not load: %s",
                        (old or {}).get("id", "?"), self.folder, " ".join(reason.split()))
        else:
            self.searcher = for_serving(searcher)  # one reference: requests see the old or the new, whole
            log.info("now serving build %s of %s (%d passages)", (build_of(searcher) or {}).get("id", "?"),
                     self.folder, searcher.size)
        with self._lock:
            self._seen = stamp


def _load_whole(folder, load):
    """`load()` and the manifest stamp it belongs to, loaded again if a build landed meanwhile."""
    for _ in range(LOAD_TRIES):
        stamp = manifest_stamp(folder)
        searcher = load()
        if manifest_stamp(folder) == stamp:
            return searcher, stamp
    raise TwoTowerError(f"{folder} changed while it was loaded, {LOAD_TRIES} times: wait for its build to finish")
