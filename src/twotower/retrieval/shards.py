"""Corpus embedding split across processes or machines: shard k of N embeds one contiguous
range of passage rows into its own file, and a merge concatenates the N files in order.

Shard file: `{shard_dir}/embeddings-{k:05d}-of-{N:05d}.npy`, float32 [rows of shard k, dim],
the same rows of the same vectors that a single-process run writes to `embeddings.npy`.
Embedding goes in windows of `WINDOW_BATCHES` batches (sorted by length within a window,
see `twotower.retrieval.dense.embed_windows`) and shard boundaries fall on window boundaries, so
every batch is the same in a sharded and an unsharded run and the merge is byte-identical
to it, given the same `eval.batch_size`, kind of device and software on every shard.
"""

from pathlib import Path

import numpy as np

from twotower.errors import TwoTowerError
from twotower.files import npy_writer
from twotower.retrieval.dense import embed_windows

# 32 batches of 512 = 16,384 rows: sorting within a window instead of the whole corpus costs
# about 3% more padded tokens on MS MARCO lengths, and a corpus up to that size embeds as before.
WINDOW_BATCHES = 32
COPY_ROWS = 65_536


def check_shard(shard: int, num_shards: int) -> None:
    if num_shards < 1:
        raise TwoTowerError(f"the number of shards must be at least 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise TwoTowerError(f"shard {shard} does not exist: {num_shards} shards are numbered 0 to {num_shards - 1}")


def shard_rows(n: int, shard: int, num_shards: int, window: int = 1) -> range:
    """Rows of shard `shard` of `num_shards` over `n` rows: whole windows of `window` rows,
    dealt out in order as evenly as they go, so the shards cover 0..n-1 once, in order
    (with more shards than windows, some are empty)."""
    check_shard(shard, num_shards)
    windows = -(-n // window)
    return range(min(n, shard * windows // num_shards * window),
                 min(n, (shard + 1) * windows // num_shards * window))


def shard_path(shard_dir, shard: int, num_shards: int) -> Path:
    return Path(shard_dir) / f"embeddings-{shard:05d}-of-{num_shards:05d}.npy"


def embed_shard(encode, dim: int, ids: np.ndarray, lengths: np.ndarray, batch_size: int, device, path,
                shard: int = 0, num_shards: int = 1, desc: str = "passages") -> range:
    """Embed shard `shard`'s rows of (ids, lengths) with `encode` into a new .npy at `path`;
    returns those rows. Shard 0 of 1 is the whole corpus. The file is appended to a window at
    a time (`npy_writer`: a writable memory map would keep every page written in memory) and
    appears only once complete."""
    window = WINDOW_BATCHES * batch_size
    rows = shard_rows(len(lengths), shard, num_shards, window)
    with npy_writer(path, (len(rows), dim), np.float32) as write:
        for vectors in embed_windows(encode, ids[rows.start: rows.stop], lengths[rows.start: rows.stop],
                                     batch_size, device, window, desc):
            write(vectors)
    return rows


def merge_shards(shard_dir, num_shards: int, n: int, batch_size: int, path) -> tuple[int, int]:
    """Concatenate the `num_shards` shard files of `shard_dir` (for `n` rows, embedded with
    `batch_size`) in shard order into a new .npy at `path`; returns its shape.

    Every shard is checked before anything is written; then each is read and appended
    `COPY_ROWS` rows at a time (plain reads: a memory map's pages would count in memory too).
    """
    check_shard(0, num_shards)
    window = WINDOW_BATCHES * batch_size
    shards = [_open_shard_header(shard_dir, k, num_shards, len(shard_rows(n, k, num_shards, window)))
              for k in range(num_shards)]
    dim = shards[0].shape[1]
    for k, shard in enumerate(shards):
        if shard.shape[1] != dim:
            raise TwoTowerError(f"shard {k} of {num_shards} ({shard_path(shard_dir, k, num_shards)}) has "
                                f"{shard.shape[1]} dimensions, shard 0 has {dim}")
    with npy_writer(path, (n, dim), np.float32) as write:
        for k, shard in enumerate(shards):
            with open(shard_path(shard_dir, k, num_shards), "rb") as file:
                file.seek(shard.offset)
                for first in range(0, len(shard), COPY_ROWS):
                    rows = min(COPY_ROWS, len(shard) - first)
                    write(np.frombuffer(file.read(rows * dim * 4), dtype=np.float32).reshape(rows, dim))
    return n, dim


def _open_shard_header(shard_dir, shard: int, num_shards: int, rows: int) -> np.memmap:
    """The shard's file, opened as a memory map only to check its header."""
    path = shard_path(shard_dir, shard, num_shards)
    name = f"shard {shard} of {num_shards} ({path})"
    try:
        vectors = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise TwoTowerError(f"shard {shard} of {num_shards} is missing: {path}") from None
    except (OSError, ValueError) as exc:
        raise TwoTowerError(f"{name} is not a readable .npy file ({type(exc).__name__})") from None
    if vectors.dtype != np.float32 or vectors.ndim != 2 or not vectors.flags.c_contiguous:
        raise TwoTowerError(f"{name} holds {vectors.dtype} of shape {vectors.shape}, "
                            f"not float32 [rows, dim] in C order")
    if len(vectors) != rows:
        raise TwoTowerError(f"{name} has {len(vectors)} rows, not {rows}: made from other passages, "
                            f"another shard count or another eval.batch_size")
    return vectors
