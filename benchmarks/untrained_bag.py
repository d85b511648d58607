"""Quality of the untrained starting point: the term-weighted bag of the tokenize stage's token
vectors (the teacher's word pieces, or words), no RNN, no training.

Builds the passage-tower model the train stage starts from (projection at zero, term weights
at tokens/term_weights.npy: SIF for word pieces, idf for words) and ranks the validation and
test splits with it, both sides bags: the row to compare with a static-vector model such as
Model2Vec, and the floor that training must beat.

    python benchmarks/untrained_bag.py [--tokens data/tokens] [--prepared data/prepared]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from twotower.retrieval.dense import rank
from twotower.evaluation.metrics import evaluate_run
from twotower.model.towers import ModelConfig, TwoTower
from twotower.model.tokenized import load_tokenized

NAMES = ["MRR@10", "nDCG@10", "Recall@100", "P@10"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--prepared", default="data/prepared")
    args = parser.parse_args()
    embeddings = torch.from_numpy(np.load(Path(args.tokens, "embeddings.npy")))
    idf = torch.from_numpy(np.load(Path(args.tokens, "term_weights.npy")))
    vocab_size, dim = embeddings.shape
    for weights, name in ((idf, "term-weighted"), (torch.ones_like(idf), "plain mean")):
        model = TwoTower(ModelConfig(vocab_size=vocab_size, embed_dim=dim), embeddings, weights).eval()
        for split_name, depth in (("validation", 100), ("test", 1000)):
            split = load_tokenized(args.prepared, args.tokens, split_name)
            figures = evaluate_run(rank(model, split, depth, 512, "cpu"), split.qrels, NAMES)
            print(f"{name:<13} {dim}d {split_name:<10} " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                  flush=True)


if __name__ == "__main__":
    main()
