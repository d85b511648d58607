"""The folder `twotower index` writes, and what reading it back checks.

    manifest.json     written last: a folder without it is not an index
    vectors.npy       float32 [n, dim] unit passage vectors, row i = passage i (an ivf_pq
                      index's searches re-rank their candidates with these rows)
    passages.parquet  id, text in row order, in row groups of TEXT_GROUP_ROWS
    texts.bin         the same texts, UTF-8, back to back; text_offsets.npy int64 [n + 1]
                      says where each starts: a hit's text is one read of a slice
    dense.faiss       the faiss index of vectors.npy (exact, hnsw, ivf, ivf_sq8 or ivf_pq)
    bm25/             bm25s' saved index over the same rows

The manifest names the model file and its sha256: vectors from one model are meaningless
to another, so opening an index with a different model is an error naming both.
"""

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


MAX_FIXED_ID = 64  # ids up to this many characters are stored fixed-width (4 bytes a character)


def compact_ids(column) -> np.ndarray:
    """A string column as a fixed-width numpy array when its ids are short (MS MARCO's are 1-7
    digits: 28 bytes each against ~57 for a Python string and 8 for its pointer). Besides the
    memory, it holds no objects to reference-count: forked server workers share its pages,
    where an object array's pages are copied into each worker as hits touch their strings."""
    width = pc.max(pc.utf8_length(column)).as_py() or 1  # None for an empty column
    ids = column.to_numpy(zero_copy_only=False)
    return ids.astype(f"<U{width}") if width <= MAX_FIXED_ID else ids.astype(object)


class PassageStore:
    """Ids of every row in memory; texts read on demand.

    A million texts would be ~400 MB of Python strings; a search shows ten. A folder with
    texts.bin (every folder built since) serves each text as one `os.pread` of it, ~2 us:
    decoding a 256-row parquet group cost ~1 ms a hit, most of a request's time, and a memory
    map of texts.bin grew the server's RSS by the whole file (the kernel reads ahead around
    every page a hit touches). The files are opened once, here, so a folder replaced on disk
    while this store is in use (`twotower index --force`) cannot mix its texts into this
    one's: the old files live on until closed. Older folders are read from passages.parquet
    a row group at a time, the last `cache_groups` groups kept, each thread through its own
    ParquetFile over one memory map of it.
    """

    def __init__(self, path, cache_groups: int = 1024):
        self.path = Path(path)
        blob, offsets = self.path.with_name(TEXTS), self.path.with_name(TEXT_OFFSETS)
        self._texts_fd = self._bytes = None
        try:
            if blob.is_file() and offsets.is_file():
                self._texts_fd = os.open(blob, os.O_RDONLY)  # before the ids: a rebuild may replace both
                file = pq.ParquetFile(self.path, memory_map=False, pre_buffer=False)
            else:  # texts come from this file's row groups: map it once, as every thread reads it
                self._bytes = pa.memory_map(str(self.path)).read_buffer()  # zero-copy, keeps the map
                file = pq.ParquetFile(pa.BufferReader(self._bytes))
            self.ids = compact_ids(file.read(columns=["id"]).column("id"))
        except Exception as exc:  # pyarrow raises several types for a missing or broken file
            raise TwoTowerError(f"cannot read {self.path} ({type(exc).__name__})") from None
        if self._texts_fd is not None:
            self._offsets = np.load(offsets)
            if len(self._offsets) != len(self.ids) + 1 or int(self._offsets[-1]) != os.fstat(self._texts_fd).st_size:
                raise TwoTowerError(f"{blob} does not match {self.path}: rebuild the index")
        meta = file.metadata
        self._group_starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self._cache: OrderedDict[int, list] = OrderedDict()
        self._cache_groups = cache_groups
        self._lock = threading.Lock()
        self._local = threading.local()

    def __len__(self):
        return len(self.ids)

    def __del__(self):
        if getattr(self, "_texts_fd", None) is not None:
            os.close(self._texts_fd)

    def texts(self, rows) -> list[str]:
        if self._texts_fd is not None:
            starts, ends = self._offsets[rows], self._offsets[np.asarray(rows) + 1]
            return [os.pread(self._texts_fd, int(end - start), int(start)).decode("utf-8")
                    for start, end in zip(starts, ends)]
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
        self._fd = os.open(self.path, os.O_RDONLY)  # take's reads: this file even if a rebuild replaces it

    def __len__(self):
        return self.shape[0]

    def take(self, rows) -> np.ndarray:
        """Rows by index, each one `os.pread` on a descriptor kept open: a refined search's
        candidates (`ann.search`), read without a memory map so they never count in RSS.
        Safe from many threads at once (pread moves no shared file position)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and not (0 <= rows.min() and rows.max() < self.shape[0]):
            bad = rows[(rows < 0) | (rows >= self.shape[0])][0]
            raise IndexError(f"row {bad} out of range for {self.path.name} ({self.shape[0]} rows)")
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if not out.size:
            return out
        buffer, size = memoryview(out).cast("B"), self._row_bytes
        for i, at in enumerate((self.offset + rows * size).tolist()):
            os.preadv(self._fd, [buffer[i * size: (i + 1) * size]], at)  # straight into out's row
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __getitem__(self, key) -> np.ndarray:
        """A contiguous slice, read in one go, or rows by index (ivf's training sample: `take`)."""
        if not isinstance(key, slice):
            return self.take(key)
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("NpyRows slices must be contiguous")
        n = max(0, stop - start)
        with open(self.path, "rb") as file:
            file.seek(self.offset + start * self._row_bytes)
            return np.fromfile(file, dtype=self.dtype, count=n * self.shape[1]).reshape(n, self.shape[1])
