"""Atomic writes: every output appears whole or not at all, so DVC never caches a half file."""

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds.

    Works for files and directories alike: the block creates whatever it likes at the
    yielded path. The temporary lives in the same directory so the rename is atomic; its
    name carries our process id, so the next write can clear what a killed run left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(path) -> list[Path]:
    """Delete the temporaries of `path` whose writing process is gone; return them.

    A SIGKILL (or the OOM killer, or a power cut) skips `finally`, so a killed stage leaves
    its `.{name}.{pid}-*.tmp` folder behind; the output itself was never touched.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    for tmp in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        pid = tmp.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _process_exists(pid: int) -> bool:
    if os.name != "posix" or pid == os.getpid():
        return True  # no cheap check off POSIX: keep the temporary rather than risk it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet is a zombie: gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def write_parquet(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(array: np.ndarray, path) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


@contextlib.contextmanager
def npy_writer(path, shape, dtype):
    """Write an .npy file of `shape` a block of rows at a time; yields `write(block)`.

    The file is byte for byte what np.save would write, and appears whole or not at all;
    writing fewer or more than `shape[0]` rows is a ValueError. It is appended to rather
    than filled through `np.lib.format.open_memmap`: a writable memory map keeps every page
    written resident in the process (and counted in its RSS) until it is closed, so a 4 GB
    id matrix would cost 4 GB of memory; plain writes leave the pages to the page cache.
    """
    shape, dtype = tuple(shape), np.dtype(dtype)
    written = 0

    def write(block: np.ndarray) -> None:
        nonlocal written
        if block.dtype != dtype or block.shape[1:] != shape[1:] or written + len(block) > shape[0]:
            raise ValueError(f"{path}: a {block.dtype} block of shape {block.shape} does not fit "
                             f"{dtype} {shape} after {written} rows")
        file.write(np.ascontiguousarray(block).tobytes())
        written += len(block)

    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(file, header)
        yield write
        if written != shape[0]:
            raise ValueError(f"{path}: {written} rows written, {shape[0]} expected")


def read_json(path):
    return json.loads(Path(path).read_text())
