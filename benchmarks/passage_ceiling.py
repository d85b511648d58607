"""How far a bag of word pieces can carry student mode's passage side, on validation.

Student mode's passage tower is a bag of word-piece vectors plus an RNN correction,
trained in three phases and regressed onto the teacher's passage vectors at the end. This
script asks what that training bought over no training at all. For every validation
passage it compares, with the teacher's own vector of it (mean cosine) and as a ranking
(validation nDCG@10, queried by the teacher's query vectors and by the model's query
tower):

- the model's passage tower (`--model`, a student-mode model), and the teacher's own
  passage vectors (the ceiling);
- the plain mean of the tokenize stage's token vectors, mapped into the teacher's space by
  one least-squares linear map fitted on `--fit` collection passages (the real split's,
  which the teacher encoded; never validation's);
- with `--context N`: the same over a table whose rows are the teacher's contextual token
  states of each piece, averaged over N other collection passages (the teacher's own
  passage vector is the mean of those states, so this is the bag nearest to it that needs
  no training; pieces unseen there are mapped from their static rows). It runs the teacher
  the params' `teacher` section names, at its `max_seq_length`, on N passages (~25 a
  second on 2 cores).

The mapped bags' cosine on `--fit` passages themselves and on held-out collection passages
shows how much of the gap to validation is the passages, not the fit.

    dvc exp apply <a student-mode run>   # models/model.pt, data/ of a student run
    python benchmarks/passage_ceiling.py [--fit 10000] [--context 4000] [--out results/passage_ceiling.json]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from twotower.distill.teacher import load_teacher, teacher_dir
from twotower.errors import TwoTowerError, exit_on_error
from twotower.evaluation.metrics import evaluate_run
from twotower.files import write_json
from twotower.model.tokenized import load_tokenized
from twotower.model.towers import load_model
from twotower.params import load_section
from twotower.retrieval.dense import embed, to_run, top_k

RIDGE = 0.01


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def mean_rows(table: np.ndarray, split, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Plain (unweighted) mean of each passage's token rows, with a constant column for the
    map; `chunk` passages at a time, so the gathered rows stay small."""
    means = []
    for start in range(0, len(rows), chunk):
        ids = np.asarray(split.passages.ids[rows[start: start + chunk]])
        mask = ids > 0
        means.append((table[ids] * mask[..., None]).sum(1) / np.maximum(mask.sum(1), 1)[:, None])
    means = np.concatenate(means) if means else np.zeros((0, table.shape[1]), np.float32)
    return np.hstack([means, np.ones((len(means), 1), np.float32)])


def fit_map(bags: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least squares bags -> targets, lightly ridged."""
    return np.linalg.solve(bags.T @ bags + RIDGE * np.eye(bags.shape[1]), bags.T @ targets)


def contextual_table(teacher, texts: list[str], vocab: list[str], static: np.ndarray, batch_size: int) -> np.ndarray:
    """Each vocabulary piece's mean contextual state in `teacher` over `texts`; pieces not
    seen there get a linear map of their static row, fitted on those seen at least 3 times."""
    from tqdm.auto import tqdm

    row = {piece: i for i, piece in enumerate(vocab)}
    teacher_vocab = teacher.tokenizer.get_vocab()
    ours = np.full(len(teacher_vocab), -1)
    for piece, i in teacher_vocab.items():
        ours[i] = row.get(piece, -1)
    sums = np.zeros((len(vocab), teacher.get_embedding_dimension()))
    counts = np.zeros(len(vocab))
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="teacher token states", unit="batch"):
            features = teacher.preprocess(texts[start: start + batch_size])
            states = teacher[0](dict(features))["token_embeddings"].numpy()
            ids = ours[features["input_ids"].numpy()]
            keep = features["attention_mask"].numpy().astype(bool) & (ids >= 0)
            np.add.at(sums, ids[keep], states[keep])
            np.add.at(counts, ids[keep], 1)
    table = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    known = np.flatnonzero(counts >= 3)
    with_constant = np.hstack([static, np.ones((len(static), 1), np.float32)])
    unseen = counts == 0
    table[unseen] = with_constant[unseen] @ fit_map(with_constant[known], table[known])
    table[0] = 0.0
    return table


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--params", default="params.yaml", help="its teacher section names the teacher")
    parser.add_argument("--fit", type=int, default=10000, help="collection passages the linear maps are fitted on")
    parser.add_argument("--held-out", type=int, default=3000, help="other collection passages, scored like validation")
    parser.add_argument("--context", type=int, default=0, help="collection passages for the contextual table (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    model, _ = load_model(args.model)
    if model.teacher_passages:
        raise TwoTowerError(f"{args.model} has no passage tower (teacher mode): apply a student-mode run first")
    model.eval()
    val = load_tokenized(args.prepared, args.tokens, "validation", args.teacher)
    real = load_tokenized(args.prepared, args.tokens, "real", args.teacher)
    vocab = Path(args.tokens, "vocab.txt").read_text().splitlines()
    static = np.load(Path(args.tokens, "embeddings.npy")).astype(np.float32)
    rows = np.flatnonzero(~np.isnan(real.teacher_passages[:, 0]))
    rows = np.random.default_rng(args.seed).permutation(rows)
    if len(rows) < args.fit + args.held_out + args.context:
        raise TwoTowerError(f"the real split has {len(rows)} encoded passages; --fit + --held-out + --context "
                            f"ask for {args.fit + args.held_out + args.context}")
    fit, held, context = np.split(rows[: args.fit + args.held_out + args.context],
                                  [args.fit, args.fit + args.held_out])
    all_val = np.arange(len(val.pids))
    teacher_p, teacher_q = unit(val.teacher_passages), unit(val.teacher_queries)
    with torch.no_grad():
        model_q = embed(model.encode_queries, val.queries.ids, val.queries.lengths, 256, "cpu", show_progress=False)
        model_p = embed(model.encode_passages, val.passages.ids, val.passages.lengths, 256, "cpu",
                        show_progress=False)

    def ranked(queries, passages) -> float:
        scores, found = top_k(queries, passages, 100)
        return evaluate_run(to_run(val.qids, val.pids, scores, found), val.qrels, names=["nDCG@10"])["nDCG@10"]

    def report(name, passages, extra=None) -> dict:
        passages = unit(passages)
        figures = {"validation cosine": float((passages * teacher_p).sum(1).mean()),
                   "nDCG@10, teacher queries": ranked(teacher_q, passages),
                   "nDCG@10, model queries": ranked(model_q, passages), **(extra or {})}
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()), flush=True)
        return {"name": name, **figures}

    results = [report("the model's passage tower", model_p), report("the teacher's passage vectors", teacher_p)]
    tables = [("token table mean + linear map", static)]
    if args.context:
        texts = pd.read_parquet(Path(args.prepared, "real", "passages.parquet")).set_index("pid").loc[
            [real.pids[i] for i in context], "text"].tolist()
        teacher_params = load_section("teacher", args.params)
        teacher = load_teacher(teacher_dir(teacher_params.model), "cpu", teacher_params.max_seq_length)
        tables.append((f"contextual table ({args.context} passages) mean + linear map",
                       contextual_table(teacher, texts, vocab, static, 32)))
    targets = unit(real.teacher_passages[fit])
    for name, table in tables:
        bags = mean_rows(table, real, fit)
        mapping = fit_map(bags, targets)
        held_cosine = float((unit(mean_rows(table, real, held) @ mapping) * unit(real.teacher_passages[held]))
                            .sum(1).mean())
        results.append(report(name, mean_rows(table, val, all_val) @ mapping,
                              {"fit cosine": float((unit(bags @ mapping) * targets).sum(1).mean()),
                               "held-out collection cosine": held_cosine}))
    if args.out:
        write_json({"fit": args.fit, "held_out": args.held_out, "context": args.context, "results": results},
                   args.out)


if __name__ == "__main__":
    main()
