"""Choose the hybrid fusion on the validation queries, never on test.

Ranks the validation split with the trained model (models/model.pt, with the `feedback`
params, as the evaluate stage ranks test) and with BM25 (the `bm25` params), fuses the two runs with every `hybrid.weight` in 0, 0.1, ..., 1 and with RRF,
and prints validation nDCG@10 and MRR@10 for each, best nDCG@10 first (the figure that
picks epochs too). Put the winner in params.yaml's `hybrid` section; the hybrid stage then
applies it to the test queries. A model without a passage tower ranks the teacher's
vectors of the validation passages (data/teacher), as training's validation does.

    python benchmarks/tune_hybrid.py [--model models/model.pt] [--params params.yaml]
"""

import argparse
from dataclasses import replace

import numpy as np

from twotower.retrieval.bm25 import bm25_run
from twotower.retrieval.fusion import fuse
from twotower.retrieval.dense import rank
from twotower.evaluation.metrics import evaluate_run
from twotower.model.towers import load_model
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.model.tokenized import load_tokenized


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--split", default="validation")
    args = parser.parse_args(argv)
    hybrid, bm25 = load_section("hybrid", args.params), load_section("bm25", args.params)
    feedback = load_section("feedback", args.params)

    tables = load_split(args.prepared, args.split)
    model, _ = load_model(args.model)
    split = load_tokenized(args.prepared, args.tokens, args.split, args.teacher if model.teacher_passages else None)
    vectors = split.teacher_passages.astype(np.float32) if model.teacher_passages else None
    dense = rank(model, split, depth=hybrid.depth, batch_size=512, device="cpu", passage_vectors=vectors,
                 feedback=feedback)
    sparse = bm25_run(tables.queries, tables.passages, bm25)
    names = ["MRR@10", "nDCG@10"]
    rows = [("dense alone", evaluate_run(dense, tables.qrels, names)),
            ("bm25 alone", evaluate_run(sparse, tables.qrels, names)),
            ("rrf", evaluate_run(fuse(dense, sparse, replace(hybrid, method="rrf")), tables.qrels, names))]
    for weight in np.round(np.arange(0.1, 1.0, 0.1), 1):
        fused = fuse(dense, sparse, replace(hybrid, method="weighted", weight=float(weight)))
        rows.append((f"weighted {weight}", evaluate_run(fused, tables.qrels, names)))
    print(f"{args.split}: {len(tables.queries)} queries over {len(tables.passages)} passages")
    print(f"{'fusion':<16} {'nDCG@10':>8} {'MRR@10':>7}")
    for name, figures in sorted(rows, key=lambda row: -row[1]["nDCG@10"]):
        print(f"{name:<16} {figures['nDCG@10']:8.4f} {figures['MRR@10']:7.4f}")


if __name__ == "__main__":
    main()
