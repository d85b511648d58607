"""Passages embedded by the teacher: the index the query tower searches with
`model.passage_encoder: teacher`.

Encoding a pool with the teacher costs minutes on a CPU (~55 passages/s on 2 cores), so it
has its own cached stage (retraining the query tower never re-encodes passages) and its work
is kept in parts of `CHUNK` passages as they finish: a killed run resumes at the first part
not yet written, and the parts' names hash what made them, so other passages or another
teacher never reuse them.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from twotower.errors import TwoTowerError
from twotower.files import save_npy
from twotower.distill.teacher import encode_texts

CHUNK = 2048
MANIFEST = "manifest.json"


def encode_resumable(teacher, space: str, pids, texts: list[str], batch_size: int, parts_dir) -> np.ndarray:
    """float32 unit vectors [len(texts), dim] of `texts`, each CHUNK of them saved under
    `parts_dir` as soon as it is encoded and reused by a rerun that asks for the same chunk."""
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for start in range(0, len(texts), CHUNK):
        key = hashlib.sha256(json.dumps([space, teacher.max_seq_length, list(map(str, pids[start: start + CHUNK])),
                                         texts[start: start + CHUNK]]).encode()).hexdigest()[:20]
        part = parts_dir / f"part-{start // CHUNK:05d}-{key}.npy"
        if part.is_file():
            out.append(np.load(part))
            continue
        desc = f"passages {start + 1}-{min(start + CHUNK, len(texts))} of {len(texts)}"
        vectors = encode_texts(teacher, texts[start: start + CHUNK], batch_size, desc=desc, dtype=np.float32)
        save_npy(vectors, part)
        out.append(vectors)
    dim = teacher.get_embedding_dimension()
    return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)


def clear_parts(parts_dir) -> None:
    shutil.rmtree(parts_dir, ignore_errors=True)


def read_manifest(folder) -> dict:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TwoTowerError(f"{path} not found (run `dvc repro teacher_passages`)") from None
    except ValueError:
        raise TwoTowerError(f"{path} is not valid JSON (rerun `dvc repro teacher_passages`)") from None


def load_teacher_index(folder, space: str, pids) -> np.ndarray:
    """The teacher's vectors of the passages `pids` (in that order), checked to be in the
    space `space` the query tower was trained for."""
    manifest = read_manifest(folder)
    if manifest.get("encoder") != "teacher":
        raise TwoTowerError(f"{folder}: no teacher vectors (made with model.passage_encoder: student); "
                            "rerun `dvc repro teacher_passages`")
    if manifest.get("space") != space:
        raise TwoTowerError(f"{folder}: vectors of teacher {manifest.get('space')!r}, but the query tower was "
                            f"trained for {space!r}: rerun `dvc repro`")
    import pandas as pd

    try:
        saved = pd.read_parquet(Path(folder) / "pids.parquet")["pid"].astype(str).to_numpy()
        vectors = np.load(Path(folder) / "embeddings.npy", mmap_mode="r")
    except FileNotFoundError as exc:
        raise TwoTowerError(f"{exc.filename} not found (rerun `dvc repro teacher_passages`)") from None
    if len(saved) != len(pids) or (saved != np.asarray(pids, dtype=str)).any():
        raise TwoTowerError(f"{folder}: its passages are not the split's (rerun `dvc repro teacher_passages`)")
    if len(vectors) != len(saved):
        raise TwoTowerError(f"{folder}: {len(vectors)} vectors for {len(saved)} passages "
                            "(rerun `dvc repro teacher_passages`)")
    return vectors
