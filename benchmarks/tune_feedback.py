"""Choose the feedback settings on the validation queries, never on test.

Ranks the validation split with the trained model (models/model.pt) for every
`feedback.depth` in --depths and `feedback.weight` in --weights (depth 0: no feedback), and
prints validation nDCG@10 and MRR@10 for each, best nDCG@10 first (the figure that picks
epochs too). Put the winner in params.yaml's `feedback` section; the evaluate stage then
applies it to the test queries. A model without a passage tower ranks the teacher's vectors
of the validation passages (data/teacher), as training's validation does.

    python benchmarks/tune_feedback.py [--model models/model.pt] [--depths 0 1 2 3 5 10]
"""

import argparse

import numpy as np

from twotower.evaluation.metrics import evaluate_run
from twotower.model.tokenized import load_tokenized
from twotower.model.towers import load_model
from twotower.params import FeedbackParams
from twotower.retrieval.dense import embed, rank


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 1, 2, 3, 5, 10])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
    args = parser.parse_args(argv)

    model, _ = load_model(args.model)
    split = load_tokenized(args.prepared, args.tokens, args.split, args.teacher if model.teacher_passages else None)
    if model.teacher_passages:
        vectors = split.teacher_passages.astype(np.float32)
    else:
        vectors = embed(model.encode_passages, split.passages.ids, split.passages.lengths, 512, "cpu",
                        desc="passages")
    settings = sorted({FeedbackParams(depth=0)} | {FeedbackParams(depth, weight) for depth in args.depths if depth
                                                   for weight in args.weights}, key=lambda p: (p.depth, p.weight))
    names = ["MRR@10", "nDCG@10"]
    rows = []
    for feedback in settings:
        feedback.validate()
        run = rank(model, split, depth=100, batch_size=512, device="cpu", passage_vectors=vectors, feedback=feedback)
        rows.append((feedback, evaluate_run(run, split.qrels, names)))
    print(f"{args.split}: {len(split.qids)} queries over {len(split.pids)} passages")
    print(f"{'depth':>5} {'weight':>6} {'nDCG@10':>8} {'MRR@10':>7}")
    for feedback, figures in sorted(rows, key=lambda row: -row[1]["nDCG@10"]):
        weight = f"{feedback.weight:g}" if feedback.depth else "-"
        print(f"{feedback.depth:>5} {weight:>6} {figures['nDCG@10']:8.4f} {figures['MRR@10']:7.4f}")


if __name__ == "__main__":
    main()
