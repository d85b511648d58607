"""Stage teacher: encode the texts training learns from with the teacher sentence encoder.

Outputs (data/teacher/), every vector float16 and L2-normalised:
- {split}/queries.npy, {split}/passages.npy: one row per row of the prepared
  queries.parquet / passages.parquet of each split training reads (train, validation and,
  with data.ict_passages > 0, the pseudo-query pairs `ict` made from unlabelled passages),
  with their ids in {split}/queries_ids.parquet / passages_ids.parquet. The test split is
  never encoded: its queries are for reporting only.
- words.txt + words.npy: the teacher's output for each word alone, for every word of the
  training texts and the `teacher.glove_words` most frequent GloVe words;
  pieces.txt + pieces.npy: the same for each token of the teacher's own vocabulary, and its
  tokenizer.json, so tokenize can compose any other word from its word pieces.
- manifest.json: the teacher, its dimension, counts and seconds per part.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy, write_parquet
from twotower.params import load_section
from twotower.prepared import load_split
from twotower.devices import select_device
from twotower.teacher import encode_texts, encode_token_pieces, load_teacher, teacher_dir, training_words
from twotower.vectors import load_glove

SPLITS = ("train", "validation", "ict")


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/teacher")
    args = parser.parse_args(argv)
    params = load_section("teacher", args.params)

    model_dir = teacher_dir(params.model)
    teacher = load_teacher(model_dir, select_device(params.device))
    splits = [s for s in SPLITS if Path(args.prepared, s).is_dir()]
    seconds, counts = {}, {}
    with atomic_path(args.out) as out:
        for split in splits:
            tables = load_split(args.prepared, split)
            for table, frame, key in (("queries", tables.queries, "qid"), ("passages", tables.passages, "pid")):
                start = time.perf_counter()
                vectors = encode_texts(teacher, frame["text"].tolist(), params.batch_size, desc=f"{split} {table}")
                save_npy(vectors, out / split / f"{table}.npy")
                write_parquet(frame[[key]], out / split / f"{table}_ids.parquet")
                seconds[f"{split}/{table}"] = round(time.perf_counter() - start, 1)
                counts[f"{split}/{table}"] = len(frame)

        start = time.perf_counter()
        glove_words, _ = load_glove()
        words = training_words(args.prepared, [s for s in splits if s != "validation"],
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

        (out / "manifest.json").write_text(json.dumps({
            "model": params.model, "dim": int(teacher.get_embedding_dimension()),
            "rows": counts, "seconds": seconds}, indent=2) + "\n")
    print("teacher seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
