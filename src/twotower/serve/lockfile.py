"""An exclusive lock held for as long as a job runs, so two runs of one job never interleave.

`fcntl.flock` rather than "create the file if absent": the kernel drops a flock when its
process ends however it ends (SIGKILL, the OOM killer), so a lock file left behind never
blocks the next run. The holder writes its pid into the file for the error message, and
removes the file when done.
"""

import contextlib
import os
from pathlib import Path

from twotower.errors import TwoTowerError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None


@contextlib.contextmanager
def held(path, what: str):
    """Hold the lock `path` for the block; if another process holds it, fail at once with one
    line saying `another {what} is running` and naming the file and the holder's pid."""
    path = Path(path)
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            holder = f"pid {pid}, holding {path}" if pid.isdigit() else f"holding {path}"
            raise TwoTowerError(f"another {what} is running ({holder}): wait for it to end, or stop it") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed the file as we opened it: lock the one now at `path`
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # before unlocking, so nobody locks a file that is then removed
        os.close(fd)
