"""The folder `twotower index` writes, and what reading it back checks.

    manifest.json     written last: a folder without it is not an index
    vectors.npy       float32 [n, dim] unit passage vectors, row i = passage i
    passages.parquet  id, text in row order, in row groups of TEXT_GROUP_ROWS
    texts.bin         the same texts, UTF-8, back to back; text_offsets.npy int64 [n + 1]
                      says where each starts: a hit's text is one slice of a memory map
    dense.faiss       the faiss index of vectors.npy (exact, hnsw or ivf)
    bm25/             bm25s' saved index over the same rows

The manifest names the model file and its sha256: vectors from one model are meaningless
to another, so opening an index with a different model is an error naming both.
"""

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twotower.errors import TwoTowerError
from twotower.files import read_json

FORMAT = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
PASSAGES = "passages.parquet"
TEXTS = "texts.bin"
TEXT_OFFSETS = "text_offsets.npy"
DENSE = "dense.faiss"
BM25 = "bm25"
TEXT_GROUP_ROWS = 256  # a hit's text costs one group's decoding: ~1 ms at 256 rows, ~4 at 1024


def partial_path(out) -> Path:
    """Where a build works until it is finished and renamed onto `out`."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def file_sha256(path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder) -> dict:
    """The manifest of a finished index; one line naming what is wrong otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        hint = (f" (a build was interrupted: rerun `twotower index ... --out {folder}` to finish it)"
                if partial_path(folder).is_dir() else " (build one with `twotower index COLLECTION --out DIR`)")
        raise TwoTowerError(f"index folder not found: {folder}{hint}")
    path = folder / MANIFEST
    if not path.is_file():
        raise TwoTowerError(f"{folder} is not a twotower index: it has no {MANIFEST}")
    try:
        manifest = read_json(path)
    except ValueError:
        raise TwoTowerError(f"{path} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TwoTowerError(f"{path}: not a twotower index manifest of format {FORMAT}")
    return manifest


def resolve_model(folder, manifest: dict, model=None) -> Path:
    """The model file to search `folder` with: `model` if given, else the one that built it.
    Either way its sha256 must be the manifest's, or the vectors would not be its own."""
    built_with = manifest["model"]
    path = Path(model if model is not None else built_with["path"])
    if not path.is_file():
        raise TwoTowerError(f"model not found: {path} (the index {folder} was built with "
                            f"{built_with['path']}; pass --model to name where it is now)")
    digest = file_sha256(path)
    if digest != built_with["sha256"] and built_with.get("passage_encoder") == "teacher":
        _check_teacher_space(folder, built_with, path)
    elif digest != built_with["sha256"]:
        raise TwoTowerError(f"the index {folder} was built with model {built_with['path']} "
                            f"(sha256 {built_with['sha256'][:12]}), but {path} is a different model "
                            f"(sha256 {digest[:12]}): rebuild the index with `twotower index` using {path}")
    return path


def _check_teacher_space(folder, built_with: dict, path) -> None:
    """An index of the teacher's passage vectors serves any query tower trained into that
    teacher's space; one trained for another space (or with its own passage tower) is refused."""
    from twotower.model.towers import load_model

    model, _ = load_model(path)
    if model.cfg.passage_encoder != "teacher" or model.cfg.teacher != built_with.get("space"):
        made = (f"a query tower for teacher space {model.cfg.teacher!r}" if model.teacher_passages
                else "a model with its own passage tower")
        raise TwoTowerError(f"the index {folder} holds passage vectors of teacher space {built_with.get('space')!r}, "
                            f"but {path} is {made}: use a model trained for that space or rebuild the index")


class PassageStore:
    """Ids of every row in memory; texts read on demand.

    A million texts would be ~400 MB of Python strings; a search shows ten. A folder with
    texts.bin (every folder built since) serves each text as one slice of a memory map
    of it, ~1 us: decoding a 256-row parquet group cost ~1 ms a hit, most of a request's
    time. The maps are opened once, here, so a folder replaced on disk while this store is
    in use (`twotower index --force`) cannot mix its texts into this one's: the old files
    live on until unmapped. Older folders are read from passages.parquet a row group at a
    time, the last `cache_groups` groups kept, each thread through its own ParquetFile.
    """

    def __init__(self, path, cache_groups: int = 1024):
        self.path = Path(path)
        try:
            # Mapped once, here: every thread reads this file's bytes, not whatever is at `path`
            # later, so a searcher stays whole while `twotower index --force` replaces the folder.
            self._bytes = pa.memory_map(str(self.path)).read_buffer()  # zero-copy, keeps the map
            file = pq.ParquetFile(pa.BufferReader(self._bytes))
            self.ids = file.read(columns=["id"]).column("id").to_numpy(zero_copy_only=False).astype(object)
        except Exception as exc:  # pyarrow raises several types for a missing or broken file
            raise TwoTowerError(f"cannot read {self.path} ({type(exc).__name__})") from None
        self._blob = self._offsets = None
        blob, offsets = self.path.with_name(TEXTS), self.path.with_name(TEXT_OFFSETS)
        if blob.is_file() and offsets.is_file():
            self._offsets = np.load(offsets, mmap_mode="r")
            if len(self._offsets) != len(self.ids) + 1 or int(self._offsets[-1]) != blob.stat().st_size:
                raise TwoTowerError(f"{blob} does not match {self.path}: rebuild the index")
            self._blob = np.memmap(blob, dtype=np.uint8, mode="r") if blob.stat().st_size else np.empty(0, np.uint8)
        meta = file.metadata
        self._group_starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._cache_groups = cache_groups
        self._lock = threading.Lock()
        self._local = threading.local()

    def __len__(self):
        return len(self.ids)

    def texts(self, rows) -> list[str]:
        if self._blob is not None:
            return [self._blob[self._offsets[row]: self._offsets[row + 1]].tobytes().decode("utf-8")
                    for row in rows]
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        return [self._group(int(g))[int(row - self._group_starts[g])] for row, g in zip(rows, groups)]

    def _group(self, group: int) -> list:
        with self._lock:
            if group in self._cache:
                self._cache.move_to_end(group)
                return self._cache[group]
        if not hasattr(self._local, "file"):
            self._local.file = pq.ParquetFile(pa.BufferReader(self._bytes))
        texts = self._local.file.read_row_group(group, columns=["text"]).column("text").to_pylist()
        with self._lock:
            self._cache[group] = texts
            if len(self._cache) > self._cache_groups:
                self._cache.popitem(last=False)
        return texts


class NpyRows:
    """Rows of a 2-D .npy file, read with plain file reads when sliced.

    A memory map would do the same, but every page it touches stays resident and counts in
    the process's RSS until unmapped: indexing a million vectors through one would hold the
    whole file on top of faiss' own copy of it.
    """

    def __init__(self, path):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # reads the header; maps, touches no row
        shape, self.dtype, self.offset = header.shape, header.dtype, header.offset
        fortran = header.flags.f_contiguous and not header.flags.c_contiguous
        del header
        if len(shape) != 2 or fortran:
            raise TwoTowerError(f"{self.path}: expected a C-ordered 2-D array, found shape {shape}")
        self.shape = shape
        self._row_bytes = shape[1] * self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """A contiguous slice, or rows by index (ivf's training sample), through one open file."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("NpyRows slices must be contiguous")
            runs = [(start, max(0, stop - start))]
        else:
            runs = [(int(row), 1) for row in np.asarray(key)]
        out = np.empty((sum(n for _, n in runs), self.shape[1]), dtype=self.dtype)
        with open(self.path, "rb") as file:
            at = 0
            for first, n in runs:
                file.seek(self.offset + first * self._row_bytes)
                out[at: at + n] = np.fromfile(file, dtype=self.dtype, count=n * self.shape[1]).reshape(n, self.shape[1])
                at += n
        return out
