"""How near are the collection passages to each query set, in the teacher's space?

The collection (`collection.parquet`) is unlabelled, but it came from TREC-DL retrieval pools:
if it holds the unjudged candidates of the TREC-DL 2020/21 queries, it is topically close to
the validation queries (held out from those) and far from the TREC-DL 2019 test queries. Then
training on collection passages (student mode's passage phase regresses onto them) fits
validation's neighbourhood, not the test's. This prints, per query set, the teacher's cosine
of each query to its nearest collection passages (the real split's candidates, which the
teacher stage encoded) and how many lie above 0.5 and 0.6. The test queries are encoded here
by the teacher, for this measurement only.

    python benchmarks/collection_neighbours.py [--teacher data/teacher] [--prepared data/prepared] [--params params.yaml]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from twotower.distill.teacher import encode_texts, load_teacher, teacher_dir
from twotower.params import load_section


def neighbourhood(queries: np.ndarray, passages: np.ndarray) -> dict:
    """Mean over queries of the 1st/10th/100th best cosine and of the counts above 0.5 / 0.6."""
    scores = queries @ passages.T
    best = -np.sort(-scores, axis=1)
    depth = min(100, passages.shape[0])
    return {"best": float(best[:, 0].mean()), "10th": float(best[:, min(9, depth - 1)].mean()),
            "100th": float(best[:, depth - 1].mean()),
            "above 0.5": float((scores > 0.5).sum(1).mean()), "above 0.6": float((scores > 0.6).sum(1).mean())}


def unit_rows(path: Path) -> np.ndarray:
    vectors = np.load(path).astype(np.float32)
    return vectors[~np.isnan(vectors[:, 0])]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--params", default="params.yaml", help="its teacher section names the teacher")
    parser.add_argument("--real-sample", type=int, default=200, help="real queries to compare with (seeded sample)")
    args = parser.parse_args(argv)

    folder = Path(args.teacher)
    passages = unit_rows(folder / "real" / "passages.npy")
    sets = {"train": unit_rows(folder / "train" / "queries.npy"),
            "validation": unit_rows(folder / "validation" / "queries.npy")}
    test = pd.read_parquet(Path(args.prepared, "test", "queries.parquet"))
    teacher_params = load_section("teacher", args.params)
    teacher = load_teacher(teacher_dir(teacher_params.model), "cpu", teacher_params.max_seq_length)
    sets["test"] = np.asarray(encode_texts(teacher, test["text"].tolist(), teacher_params.query_batch_size),
                              dtype=np.float32)
    real = unit_rows(folder / "real" / "queries.npy")
    sample = np.random.default_rng(0).choice(len(real), min(args.real_sample, len(real)), replace=False)
    sets[f"real ({len(sample)})"] = real[sample]

    print(f"{len(passages)} collection passages with teacher vectors (the real split's candidates)")
    print("| queries | n | best cosine | 10th | 100th | passages > 0.5 | > 0.6 |")
    print("|---|---|---|---|---|---|---|")
    for name, queries in sets.items():
        row = neighbourhood(queries, passages)
        print(f"| {name} | {len(queries)} | {row['best']:.3f} | {row['10th']:.3f} | {row['100th']:.3f} | "
              f"{row['above 0.5']:.1f} | {row['above 0.6']:.1f} |")


if __name__ == "__main__":
    main()
