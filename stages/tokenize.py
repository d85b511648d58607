"""Stage tokenize: vocabulary, embedding matrix and token-id arrays for every split.

Outputs (data/tokens/): vocab.txt (one word a line; line 0 <pad>, line 1 <unk>),
embeddings.npy (float32 [vocab, dim]: with `tokenize.vectors: glove` GloVe's 50d rows where
known; with `teacher`, the teacher stage's vector of each word alone reduced by PCA to
`tokenize.dim` and SIF-weighted, as Model2Vec makes them), idf.npy (float32 [vocab],
inverse document frequency over the training passages), and per split
queries_{ids,lengths}.npy / passages_{ids,lengths}.npy, row-aligned with the
prepared queries.parquet / passages.parquet.
Texts are streamed from the prepared parquet and encoded batch by batch straight into the
.npy files (`twotower.text.encode_to_files`), so memory stays bounded whatever their size.
"""

import argparse
from pathlib import Path

import numpy as np

from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.static_vectors import load_teacher_words, teacher_word_vectors
from twotower.prepared import SPLITS, prepared_file, table_rows, text_batches
from twotower.text import Tokenizer, build_vocab, embedding_matrix, encode_to_files, idf_weights
from twotower.vectors import load_glove

TABLES = ("queries", "passages")


def train_texts(files: dict):
    """Every training query and passage text, streamed: what the vocabulary is counted on."""
    for table in TABLES:
        for batch in text_batches(files["train", table], desc=f"vocabulary: train {table}"):
            yield from batch


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--out", default="data/tokens")
    args = parser.parse_args(argv)
    params = load_section("tokenize", args.params)
    check_params_file(args.params)

    names = [*SPLITS, *(["ict"] if Path(args.prepared, "ict").is_dir() else [])]
    files = {(name, table): prepared_file(args.prepared, name, table) for name in names for table in TABLES}
    glove_words, glove = load_glove()
    vocab = build_vocab(train_texts(files), glove_words, params.min_freq, params.max_vocab)
    if params.vectors == "teacher":
        matrix, counts = teacher_word_vectors(vocab, *load_teacher_words(args.teacher), dim=params.dim)
        print(f"vocabulary: {len(vocab)} entries; teacher vectors: {counts['whole']} words encoded whole, "
              f"{counts['composed']} composed from word pieces, {counts['missing']} none")
    else:
        matrix, pretrained = embedding_matrix(vocab, glove_words, glove, params.seed)
        print(f"vocabulary: {len(vocab)} entries, {pretrained} with GloVe vectors")

    tokenizer = Tokenizer(vocab)
    max_len = {"queries": params.max_len_query, "passages": params.max_len_passage}
    with atomic_path(args.out) as out:
        out.mkdir()
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        save_npy(matrix, out / "embeddings.npy")
        for name in names:
            for table in TABLES:
                path = files[name, table]
                df = np.zeros(len(vocab), dtype=np.int64) if (name, table) == ("train", "passages") else None
                batches = text_batches(path, desc=f"{name} {table}")
                counts = encode_to_files(tokenizer, batches, table_rows(path), max_len[table], out / name, table, df)
                if df is not None:
                    save_npy(idf_weights(df, counts.rows), out / "idf.npy")
                print(f"{name} {table}: {counts.rows} rows, mean length "
                      f"{counts.tokens / max(1, counts.rows):.1f}, "
                      f"{counts.unknown / max(1, counts.tokens):.1%} unknown tokens")


if __name__ == "__main__":
    main()
