"""`twotower serve --workers N`: N server processes forked from one that loaded the index.

One process answers with one core at a time: Python's share of a request (HTTP, JSON,
fusion, BM25's query) holds the GIL, ~7 ms of a hybrid request over 1M passages. More
requests/s take more processes, but processes that each load the index (uvicorn's spawned
workers) each hold their own model, faiss codes, BM25 arrays and passage ids: 2,464 MiB for
two at 1M passages, against 1,150 for one. Forked after the load, the workers share those
pages copy-on-write (the searcher only reads them), so N workers cost little more than one.

The parent serves nothing: it loads the folder, binds the port, forks the workers and
watches them. When the folder's manifest changes (checked every second), or on SIGHUP, it
loads the folder again and replaces the workers one at a time with ones forked from the
new load; each old worker finishes the requests it holds first (uvicorn's graceful
shutdown), so every request is answered from one whole build. A folder that fails to load
leaves the workers serving the old build. A worker that dies is forked again. SIGINT or
SIGTERM stops them all.
"""

import contextlib
import gc
import logging
import os
import signal
import socket
import time

from twotower.errors import TwoTowerError

WATCH_EVERY = 1.0  # seconds between two looks at the folder and the workers
START_GRACE = 5.0  # a worker that exits this soon after its fork failed to start: give up, do not loop
STOP_WAIT = 30.0  # seconds a worker has to finish its requests before it is killed
log = logging.getLogger("twotower.serve.server")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (bound once, before the fork)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise TwoTowerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def forked_device(device: str) -> str:
    """The device forked workers compute on: the CPU (`auto` means it), as CUDA and MPS do not
    survive a fork; an accelerator named outright, or a system without fork, is one line."""
    if not hasattr(os, "fork"):
        raise TwoTowerError("--workers above 1 forks the loaded index, and this system has no fork: use --workers 1")
    if device not in ("auto", "cpu"):
        raise TwoTowerError(f"--workers above 1 forks the loaded index, which {device} does not survive: "
                            "use --device cpu, or --workers 1 on the accelerator")
    return "cpu"


class Supervisor:
    """Forks, replaces and stops the workers. `run_worker(searcher, sock)` is what a forked
    child runs: it serves `searcher` on `sock` until SIGTERM (the HTTP server, from
    `twotower.serve.server.serve_workers`, which this module need not import)."""

    def __init__(self, live, sock: socket.socket, workers: int, run_worker):
        self.live, self.sock, self.count, self.run_worker = live, sock, workers, run_worker
        self.pids: dict[int, tuple[object, float]] = {}  # worker pid -> (the searcher it was forked with, when)
        self._hup = self._stop = False

    def fork(self) -> int:
        searcher = self.live.searcher
        gc.freeze()  # the collector would otherwise write to every object it scans, copying their pages
        pid = os.fork()
        if pid == 0:  # the worker: serve until told to stop, and never return into the parent's code
            code = 1
            try:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent reloads; a worker is replaced
                _one_thread_each()
                self.run_worker(searcher, self.sock)
                code = 0
            except BaseException:
                log.exception("a worker failed")
            finally:
                os._exit(code)
        self.pids[pid] = searcher, time.monotonic()
        return pid

    def run(self) -> None:
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "_hup", True))
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: setattr(self, "_stop", True))
        try:
            for _ in range(self.count):
                self.fork()
            while not self._stop:
                time.sleep(WATCH_EVERY)
                self.step()
        finally:
            self.stop_all()

    def step(self) -> None:
        """One look: reload if the folder changed (or SIGHUP came), roll the workers onto the
        new load, and fork a replacement for any worker that died."""
        force, self._hup = self._hup, False
        loader = self.live.check(force=force)
        if loader is not None:
            loader.join()
        for pid, status in [(pid, _exit_status(pid)) for pid in list(self.pids)]:
            if status is None:
                continue
            lived = time.monotonic() - self.pids.pop(pid)[1]
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) and lived < START_GRACE:
                raise TwoTowerError(f"a server worker failed as it started (exit code {os.WEXITSTATUS(status)}): "
                                    "see the log above")
            log.warning("worker %d %s; starting another", pid, _how(status))
            self.fork()
        for pid in [pid for pid, (searcher, _) in self.pids.items() if searcher is not self.live.searcher]:
            self.fork()  # the new one accepts before the old one stops: the port never goes unanswered
            self.stop(pid)

    def stop(self, pid: int) -> None:
        self.pids.pop(pid, None)
        _stop_and_reap(pid)

    def stop_all(self) -> None:
        for pid in list(self.pids):
            with _suppress_missing():
                os.kill(pid, signal.SIGTERM)
        for pid in list(self.pids):
            self.stop(pid)


def _one_thread_each() -> None:
    """Each worker computes on one thread: N workers share the cores, and an OpenMP pool the
    parent started is not carried over a fork."""
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


def _exit_status(pid: int) -> int | None:
    """The wait status of a worker that ended (reaping it), None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done == pid else None


def _exited(pid: int) -> bool:
    return _exit_status(pid) is not None


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _stop_and_reap(pid: int) -> None:
    with _suppress_missing():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if _exited(pid):
            return
        time.sleep(0.05)
    with _suppress_missing():
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _suppress_missing():
    return contextlib.suppress(ProcessLookupError, ChildProcessError)
