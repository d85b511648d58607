"""Stage teacher: encode the texts training learns from with the teacher sentence encoder.

Outputs (data/teacher/), every vector float16 and L2-normalised:
- {split}/queries.npy, {split}/passages.npy: the queries and passages of each split training
  reads (train and, when subsample made them, the pseudo-query pairs `ict` made from
  unlabelled passages: their passages only as far as the triplets use them), of the `real`
  split (unlabelled real queries and their candidate passages, all of them) and of the
  validation split (all of it: metrics/teacher.json has the teacher's own validation
  figures, the ceiling for the student's), with their ids in {split}/queries_ids.parquet /
  passages_ids.parquet. The test split is never encoded here: its queries are for reporting
  only (the teacher_passages stage encodes the test passages as a search index).
- pieces.txt + pieces.npy: the teacher's output for each token of its own WordPiece
  vocabulary alone, and its tokenizer.json (the `tokenize.tokenizer: wordpiece` table);
  with `tokenize.tokenizer: word`, also words.txt + words.npy: each word alone, for every
  word of the training texts and the `teacher.glove_words` most frequent GloVe words, so
  tokenize can compose any other word from its word pieces.
- manifest.json: the teacher, its dimension and the rows of each part (the log has the
  seconds each part took).
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from twotower.devices import select_device
from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy, write_json, write_parquet
from twotower.retrieval.dense import to_run, top_k
from twotower.evaluation.metrics import evaluate_run
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.distill.encoded import WHOLE, passages_to_encode, splits_to_encode
from twotower.distill.teacher import (check_teacher_dir, encode_texts, encode_token_pieces, load_teacher, teacher_dir,
                              teacher_identity, training_words)
from twotower.text.glove import load_glove


def teacher_figures(folder, tables) -> dict:
    """The teacher's own validation MRR@10, nDCG@10 and Recall@100 (ranking every validation
    passage): the ceiling the student is distilled towards, on the split that picks epochs."""
    queries = np.load(Path(folder) / "queries.npy").astype(np.float32)
    passages = np.load(Path(folder) / "passages.npy").astype(np.float32)
    scores, rows = top_k(queries, passages, 100)
    run = to_run(tables.queries["qid"].to_numpy(), tables.passages["pid"].to_numpy(), scores, rows)
    return evaluate_run(run, tables.qrels, names=["MRR@10", "nDCG@10", "Recall@100"])


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--triplets", default="data/triplets")
    parser.add_argument("--out", default="data/teacher")
    parser.add_argument("--metrics", default="metrics/teacher.json")
    args = parser.parse_args(argv)
    params = load_section("teacher", args.params)
    tokenizer = load_section("tokenize", args.params).tokenizer
    check_params_file(args.params)

    model_dir = check_teacher_dir(teacher_dir(params.model))
    teacher = load_teacher(model_dir, select_device(params.device), params.max_seq_length)
    splits = splits_to_encode(args.prepared)
    seconds, counts = {}, {}
    with atomic_path(args.out) as out:
        for split in splits:
            tables = load_split(args.prepared, split)
            passages = passages_to_encode(split, tables.passages, args.triplets)
            for table, frame, key, batch_size in (("queries", tables.queries, "qid", params.query_batch_size),
                                                  ("passages", passages, "pid", params.batch_size)):
                start = time.perf_counter()
                vectors = encode_texts(teacher, frame["text"].tolist(), batch_size, desc=f"{split} {table}")
                save_npy(vectors, out / split / f"{table}.npy")
                write_parquet(frame[[key]].reset_index(drop=True), out / split / f"{table}_ids.parquet")
                seconds[f"{split}/{table}"] = round(time.perf_counter() - start, 1)
                counts[f"{split}/{table}"] = len(frame)
            if split == "validation":
                figures = teacher_figures(out / split, tables)
                write_json({f"val/{k}": round(v, 6) for k, v in figures.items()}, args.metrics)
                print("teacher on validation: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))

        if tokenizer == "word":
            start = time.perf_counter()
            glove_words, _ = load_glove()
            words = training_words(args.prepared, [s for s in splits if s not in WHOLE],
                                   glove_words[: params.glove_words])
            save_npy(encode_texts(teacher, words, params.word_batch_size, desc="words alone"), out / "words.npy")
            (out / "words.txt").write_text("\n".join(words) + "\n")
            seconds["words"], counts["words"] = round(time.perf_counter() - start, 1), len(words)

        start = time.perf_counter()
        pieces, piece_vectors = encode_token_pieces(teacher, params.word_batch_size, desc="word pieces")
        save_npy(piece_vectors, out / "pieces.npy")
        (out / "pieces.txt").write_text("\n".join(pieces) + "\n")
        shutil.copyfile(model_dir / "tokenizer.json", out / "tokenizer.json")
        seconds["pieces"], counts["pieces"] = round(time.perf_counter() - start, 1), len(pieces)

        # No timings in the output: it must be the same bytes at every rerun (they go to the log).
        (out / "manifest.json").write_text(json.dumps({
            "model": params.model, "dim": int(teacher.get_embedding_dimension()),
            "space": teacher_identity(params.model, teacher), "rows": counts}, indent=2) + "\n")
    print("teacher seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
