"""Text -> vectors: the distilled two-tower model against its teacher, in one run.

Both embed the same real passages (the test pool's texts, data/prepared/test/passages.parquet)
from raw text: the student through `twotower.Searcher.embed_passages` (tokenizing included),
the teacher through sentence-transformers' `encode` (its own tokenizer included). Prints
passages/s for each and the ratio. Run on an idle machine.

    python benchmarks/distill_speed.py [--passages 8000] [--teacher-passages 640]
"""

import argparse
import contextlib
import io
import os
import time

import pandas as pd
import torch

from twotower.params import load_section
from twotower.serve.search import Searcher
from twotower.distill.teacher import encode_texts, load_teacher, teacher_dir


def rate(encode, texts) -> float:
    encode(texts[:64])  # warm-up: first-call allocations and thread pools
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        encode(texts)
    return len(texts) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--passages", type=int, default=8000)
    parser.add_argument("--teacher-passages", type=int, default=640)
    args = parser.parse_args()
    texts = pd.read_parquet("data/prepared/test/passages.parquet", columns=["text"])["text"].tolist()
    teacher_params = load_section("teacher", args.params)

    searcher = Searcher.from_model(args.model, device="cpu")
    teacher = load_teacher(teacher_dir(teacher_params.model), "cpu")
    print(f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f}; student {searcher.model.cfg.rnn_type} {searcher.model.cfg.hidden_dim}, "
          f"{searcher.model.output_dim} dims; teacher {teacher_params.model}")
    student = rate(searcher.embed_passages, texts[: args.passages])
    print(f"student: {student:,.0f} passages/s ({args.passages} passages)", flush=True)
    slow = rate(lambda t: encode_texts(teacher, t, teacher_params.batch_size), texts[: args.teacher_passages])
    print(f"teacher: {slow:,.1f} passages/s ({args.teacher_passages} passages, batch {teacher_params.batch_size})")
    print(f"student / teacher: {student / slow:,.0f}x")


if __name__ == "__main__":
    main()
