"""TREC run files: `qid Q0 pid rank score tag`, the format every IR tool reads."""

import pandas as pd

from twotower.files import atomic_path

RUN_COLUMNS = ["qid", "pid", "rank", "score"]


def write_trec_run(run: pd.DataFrame, path, tag: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        for qid, pid, rank, score in run[RUN_COLUMNS].itertuples(index=False):
            out.write(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n")


def read_trec_run(path) -> pd.DataFrame:
    from pathlib import Path

    from twotower.errors import TwoTowerError

    if not Path(path).is_file():
        raise TwoTowerError(f"run file not found: {path}")
    run = pd.read_csv(path, sep=r"\s+", header=None, names=["qid", "q0", "pid", "rank", "score", "tag"],
                      dtype={"qid": str, "pid": str})
    return run[RUN_COLUMNS]
