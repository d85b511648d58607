"""One query to one vector: the query tower against the teacher, and passages/s for indexing.

Encodes each test query alone (tokenizing included), as a search request does, with the
query tower (`Searcher`'s path) and with the teacher (sentence-transformers `encode`), and
prints p50 / p99 milliseconds and the ratio; then a whole search of the pipeline's test
index (`Searcher.from_pipeline`: encode, search, top 10) without feedback and with the
`feedback` params, which search twice. Then the indexing rate of the model's passage
encoder: the student's passage tower, or the teacher for a model without one. Run on an
idle machine.

    python benchmarks/query_latency.py [--model models/model.pt] [--passages 2000]
"""

import argparse
import contextlib
import io
import time

import numpy as np
import pandas as pd
import torch

from twotower.params import FeedbackParams, load_section
from twotower.serve.search import Searcher
from twotower.distill.teacher import load_teacher, teacher_dir


def latencies(encode, texts) -> np.ndarray:
    """Milliseconds per call of `encode([text])`, after a warm-up call."""
    encode(texts[:1])
    out = []
    for text in texts:
        start = time.perf_counter()
        encode([text])
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--passages", type=int, default=2000, help="passages embedded for the indexing rate")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    queries = pd.read_parquet("data/prepared/test/queries.parquet")["text"].tolist()
    queries = (queries * 5)[:200]
    searcher = Searcher.from_model(args.model, device="cpu")
    params = load_section("teacher", args.params)
    teacher = load_teacher(teacher_dir(params.model), "cpu", params.max_seq_length)

    def tower(texts):
        return searcher.embed_query(texts[0])

    def whole_teacher(texts):
        return teacher.encode(texts, batch_size=1, normalize_embeddings=True, show_progress_bar=False)

    student_ms, teacher_ms = latencies(tower, queries), latencies(whole_teacher, queries)
    print(f"{len(queries)} test queries one at a time, {torch.get_num_threads()} torch threads")
    print(f"{'encoder':<34} {'p50 ms':>8} {'p99 ms':>8}")
    for name, ms in (("query tower (tokenize + RNN)", student_ms), ("teacher (all-MiniLM-L6-v2)", teacher_ms)):
        print(f"{name:<34} {np.percentile(ms, 50):8.2f} {np.percentile(ms, 99):8.2f}")
    print(f"query tower is {np.percentile(teacher_ms, 50) / np.percentile(student_ms, 50):.0f}x faster at p50")
    feedback = load_section("feedback", args.params)
    for name, setting in (("search, no feedback", FeedbackParams(depth=0)),
                          (f"search, feedback {feedback.depth} x {feedback.weight:g}", feedback)):
        pipeline = Searcher.from_pipeline(".", "cpu", setting)
        ms = latencies(lambda texts: pipeline.search(texts[0], 10), queries)
        print(f"{name:<34} {np.percentile(ms, 50):8.2f} {np.percentile(ms, 99):8.2f}   "
              f"({pipeline.size:,} passages, exact)")

    texts = pd.read_parquet("data/prepared/test/passages.parquet", columns=["text"])["text"].tolist()[: args.passages]
    searcher.embed_passages(texts[:64], show_progress=False)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        searcher.embed_passages(texts, show_progress=False)
    rate = len(texts) / (time.perf_counter() - start)
    who = "the teacher" if searcher.model.teacher_passages else "the passage tower"
    print(f"indexing: {rate:,.0f} passages/s by {who} ({len(texts)} test-pool passages, tokenizing included)")


if __name__ == "__main__":
    main()
