"""Corpus embedding throughput (passages/s) of the passage tower, via `twotower.retrieval.dense.embed`.

Uses models/model.pt when it exists, else the model of params.yaml's `model` section over a
400k x 50 random word table (untrained weights embed at the same speed). Passages are
synthetic with MS MARCO-like lengths (median 52 tokens, mean ~58, long tail cut at
tokenize.max_len_passage). Tries each torch thread count and batch size given.

    python benchmarks/embed_throughput.py                       # 20k passages, ~1-2 minutes
    python benchmarks/embed_throughput.py --passages 100000 --threads 1 2 --batch-sizes 512
"""

import argparse
import contextlib
import io
import os
import time
from pathlib import Path

import numpy as np
import torch

from twotower.retrieval.dense import embed
from twotower.model.towers import ModelConfig, TwoTower, load_model
from twotower.params import load_section


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--passages", type=int, default=20_000)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    max_len = load_section("tokenize", args.params).max_len_passage

    if args.model.is_file():
        model, _ = load_model(args.model)
        source = str(args.model)
    else:
        config = ModelConfig.from_params(load_section("model", args.params), vocab_size=400_002, embed_dim=50)
        model = TwoTower(config, torch.randn(400_002, 50) * 0.4).eval()
        source = "random weights (no model file)"
    rng = np.random.default_rng(args.seed)
    lengths = np.clip(rng.lognormal(np.log(52), 0.45, args.passages), 1, max_len).astype(np.int32)
    ids = rng.integers(2, model.cfg.vocab_size, (args.passages, max_len), dtype=np.int32)
    ids[np.arange(max_len)[None, :] >= lengths[:, None]] = 0

    print(f"cores: {os.cpu_count()} (torch default threads {torch.get_num_threads()}), load average "
          f"{os.getloadavg()[0]:.1f}; model {source}: "
          f"{model.cfg.rnn_type} hidden {model.cfg.hidden_dim}; {args.passages} passages, "
          f"mean length {lengths.mean():.1f}, max {max_len}")
    print(f"{'threads':>7} {'batch':>6} {'passages/s':>10}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size in args.batch_sizes:
            with contextlib.redirect_stderr(io.StringIO()):  # embed's progress bar
                embed(model.encode_passages, ids[:batch_size], lengths[:batch_size], batch_size, "cpu")
                start = time.perf_counter()
                embed(model.encode_passages, ids, lengths, batch_size, "cpu")
                rate = args.passages / (time.perf_counter() - start)
            print(f"{threads:>7} {batch_size:>6} {rate:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
