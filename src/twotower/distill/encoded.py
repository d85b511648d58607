"""Which texts the teacher stage encodes, and reading back the manifest it writes.

The test split is never encoded here: its queries are for reporting only (the
teacher_passages stage encodes the test passages as a search index). Of the rest, the
validation and real splits are encoded whole (validation gives the teacher's own figures,
real is what the query tower learns from); the train and pseudo-query splits only as far as
their triplets use their passages.
"""

import json
from pathlib import Path

import pandas as pd

from twotower.errors import TwoTowerError

SPLITS = ("train", "validation", "real", "ict")
WHOLE = ("validation", "real")


def splits_to_encode(prepared) -> list[str]:
    """The splits of `SPLITS` that subsample made, in that order."""
    return [split for split in SPLITS if Path(prepared, split).is_dir()]


def passages_to_encode(split: str, passages: pd.DataFrame, triplets) -> pd.DataFrame:
    """All of a whole split's passages; of the others only those their triplets use."""
    if split in WHOLE:
        return passages
    used = pd.read_parquet(Path(triplets, f"{split}.parquet"), columns=["pos_pid", "neg_pid"])
    return passages[passages["pid"].isin(set(used["pos_pid"]) | set(used["neg_pid"]))]


def teacher_manifest(folder) -> dict:
    """The teacher stage's manifest.json (its dimension and space), or one line saying to run it."""
    path = Path(folder, "manifest.json")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TwoTowerError(f"teacher vectors missing: {path} (run `dvc repro teacher`; training uses the "
                            "teacher's vectors)") from None
