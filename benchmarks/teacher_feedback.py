"""The teacher as a retriever on the test pool, without and with the `feedback` params: what
the feedback adds to the teacher's own query vectors, next to what it adds to the query
tower's (metrics/eval.json). Reporting only: nothing is chosen on it.

Encodes the test queries with the teacher and ranks the teacher's vectors of the pool
(data/index, as `dvc repro` leaves it with `model.passage_encoder: teacher`).

    python benchmarks/teacher_feedback.py [--params params.yaml]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.data.prepared import load_split
from twotower.distill.teacher import encode_texts, load_teacher, teacher_dir
from twotower.evaluation.metrics import evaluate_run
from twotower.params import FeedbackParams, load_section
from twotower.retrieval.dense import top_k, to_run
from twotower.retrieval.feedback import expand

NAMES = ["P@10", "MRR@10", "Recall@100", "nDCG@10", "MAP"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--index", default="data/index")
    args = parser.parse_args()
    teacher_params, feedback = load_section("teacher", args.params), load_section("feedback", args.params)

    tables = load_split(args.prepared, "test")
    pids = pd.read_parquet(Path(args.index, "pids.parquet"))["pid"].to_numpy()
    if not np.array_equal(pids, tables.passages["pid"].to_numpy()):
        raise SystemExit(f"{args.index} holds other passages than the test pool: rerun `dvc repro`")
    passages = np.load(Path(args.index, "embeddings.npy"))
    teacher = load_teacher(teacher_dir(teacher_params.model), "cpu", teacher_params.max_seq_length)
    queries = encode_texts(teacher, tables.queries["text"].tolist(), teacher_params.query_batch_size,
                           dtype=np.float32)
    print(f"{'teacher':<28} " + " ".join(f"{name:>10}" for name in NAMES))
    for name, setting in (("no feedback", FeedbackParams(depth=0)),
                          (f"feedback {feedback.depth} x {feedback.weight:g}", feedback)):
        vectors = expand(queries, lambda q, k: top_k(q, passages, k), lambda rows: passages[rows], setting)
        scores, rows = top_k(vectors, passages, 1000)
        figures = evaluate_run(to_run(tables.queries["qid"].to_numpy(), pids, scores, rows), tables.qrels, NAMES)
        print(f"{name:<28} " + " ".join(f"{figures[n]:10.4f}" for n in NAMES))


if __name__ == "__main__":
    main()
