"""Training throughput (triplets/s) of the default model on synthetic batches.

Builds the model of params.yaml's `model` section over a 400k x 50 random word table (the
size of our GloVe vocabulary) and times the steps of `twotower.model.training.train`: encode a
batch of queries and its positive + negative passages, loss, backward, gradient clipping,
Adam. Lengths are MS MARCO-like (queries median 5.5 tokens, passages median 52 with a long
tail, cut at tokenize.max_len_*). Batches come from `twotower.model.training.epoch_batches`:
  random    - `train.bucket_size: 1`, batches of a random permutation;
  bucketed  - `train.bucket_size: --bucket-size` (default 50), each window of that many
              batches sorted by passage length before cutting, batch order shuffled;
with the word table trained by SparseAdam (`train.sparse_embeddings: true`, the default),
by dense Adam (`false`), or frozen (`model.freeze_embeddings`), and 1 vs all torch threads.
It also splits each step's time into forward + backward and gradient clipping + optimizer
steps (dense Adam walks the whole 400k x 50 table each step).

    python benchmarks/train_throughput.py                  # a few minutes on 2 busy cores
    python benchmarks/train_throughput.py --steps 100 --threads 2
"""

import argparse
import os
import time
from dataclasses import replace

import numpy as np
import torch

from twotower.model.losses import LossInputs, build_loss
from twotower.model.towers import ModelConfig, TwoTower
from twotower.params import load_section
from twotower.text.tokenizers import TokenArrays
from twotower.model.training import clip_gradients, epoch_batches, make_optimizers


def token_arrays(rng, n, median, max_len, vocab_size) -> TokenArrays:
    lengths = np.clip(rng.lognormal(np.log(median), 0.45, n), 1, max_len).astype(np.int32)
    ids = rng.integers(2, vocab_size, (n, max_len), dtype=np.int32)
    ids[np.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return TokenArrays(ids, lengths)


def run(model, optimizers, queries, passages, triplets, batch_list, loss, grad_clip):
    """Seconds spent in (forward + backward, clip + Adam step) over `batch_list`."""
    q_rows, pos_rows, neg_rows = triplets
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    compute = update = 0.0
    for rows in batch_list:
        start = time.perf_counter()
        q, both = model(*queries.batch(q_rows[rows], "cpu"),
                        *passages.batch(np.concatenate([pos_rows[rows], neg_rows[rows]]), "cpu"))
        same = torch.as_tensor(q_rows[rows][:, None] == q_rows[rows][None, :])
        loss(LossInputs(q, both[: len(rows)], both[len(rows):], same)).backward()
        middle = time.perf_counter()
        if grad_clip > 0:
            clip_gradients(trainable, grad_clip)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        compute += middle - start
        update += time.perf_counter() - middle
    return compute, update


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--vocab", type=int, default=400_002)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    parser.add_argument("--bucket-size", type=int, default=50)
    parser.add_argument("--batch-size", type=int, help="triplets per batch (default: train.batch_size)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model_params = load_section("model", args.params)
    train_params = load_section("train", args.params)
    tokenize_params = load_section("tokenize", args.params)
    if args.batch_size:
        train_params = replace(train_params, batch_size=args.batch_size)

    rng = np.random.default_rng(args.seed)
    n = train_params.batch_size * 2 * max(args.steps + 3, args.bucket_size)
    queries = token_arrays(rng, n, 5.5, tokenize_params.max_len_query, args.vocab)
    passages = token_arrays(rng, 2 * n, 52, tokenize_params.max_len_passage, args.vocab)
    triplets = (np.arange(n), rng.integers(0, 2 * n, n), rng.integers(0, 2 * n, n))
    longest = np.maximum(passages.lengths[triplets[1]], passages.lengths[triplets[2]])
    embeddings = torch.randn(args.vocab, 50) * 0.4
    idf = torch.rand(args.vocab) * 10

    print(f"cores: {os.cpu_count()} (torch default threads {torch.get_num_threads()}), load average "
          f"{os.getloadavg()[0]:.1f}; model "
          f"{model_params.rnn_type} hidden {model_params.hidden_dim} bidirectional {model_params.bidirectional}, "
          f"vocab {args.vocab}, batch {train_params.batch_size}, loss {model_params.loss}, {args.steps} steps each")
    print(f"{'threads':>7} {'embeddings':<10} {'batches':<9} {'triplets/s':>10} {'fwd+bwd ms':>10} {'clip+opt ms':>11}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for table in ("sparse", "dense", "frozen"):
            torch.manual_seed(args.seed)
            config = ModelConfig.from_params(replace(model_params, freeze_embeddings=table == "frozen"),
                                             vocab_size=args.vocab, embed_dim=50)
            model = TwoTower(config, embeddings, idf)
            optimizers = make_optimizers(model, train_params.lr, sparse_embeddings=table != "dense")
            settings = (build_loss(model_params), train_params.grad_clip)
            for bucket_size in (1, args.bucket_size):
                batch_list = epoch_batches(rng.permutation(n), longest, train_params.batch_size, bucket_size, rng)
                run(model, optimizers, queries, passages, triplets, batch_list[:3], *settings)
                timed = batch_list[3: 3 + args.steps]
                compute, update = run(model, optimizers, queries, passages, triplets, timed, *settings)
                count = sum(len(b) for b in timed)
                batching = "random" if bucket_size == 1 else f"bucket {bucket_size}"
                print(f"{threads:>7} {table:<10} "
                      f"{batching:<9} {count / (compute + update):>10.0f} "
                      f"{1000 * compute / len(timed):>10.1f} {1000 * update / len(timed):>11.1f}", flush=True)


if __name__ == "__main__":
    main()
