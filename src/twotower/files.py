"""Atomic writes: every output appears whole or not at all, so DVC never caches a half file."""

import contextlib
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
    yielded path. The temporary lives in the same directory so the rename is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_npy(array: np.ndarray, path) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def read_json(path):
    return json.loads(Path(path).read_text())
