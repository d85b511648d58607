"""Stage tokenize: vocabulary, embedding matrix and token-id arrays for every split.

Outputs (data/tokens/): vocab.txt (one token a line; line 0 <pad>, line 1 <unk>),
embeddings.npy (float32 [vocab, dim]), term_weights.npy (float32 [vocab]: the model's
starting term weights), and per split queries_{ids,lengths}.npy / passages_{ids,lengths}.npy,
row-aligned with the prepared queries.parquet / passages.parquet.
- `tokenize.tokenizer: wordpiece` (default): the vocabulary is the teacher's WordPiece
  vocabulary (its tokenizer.json is copied here too), each row the teacher's vector of that
  piece alone reduced by PCA to `tokenize.dim`; term weights are SIF's a/(a + p(piece)) with
  p counted over the training passages. No token is unknown.
- `word`: lowercase words (training words, then GloVe's); rows are GloVe's 50d vectors
  (`tokenize.vectors: glove`) or the teacher's vector of each word alone, composed from its
  pieces when not encoded whole, reduced by PCA and SIF-weighted by Zipf rank as Model2Vec
  makes them (`teacher`); term weights are idf over the training passages.
Texts are streamed from the prepared parquet and encoded batch by batch straight into the
.npy files (`twotower.text.tokenizers.encode_to_files`), so memory stays bounded whatever their size.
"""

import argparse
from pathlib import Path

import numpy as np

from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.distill.static_vectors import (load_teacher_pieces, load_teacher_words, sif_weights_from_counts,
                                     teacher_piece_vectors, teacher_word_vectors)
from twotower.data.prepared import SPLITS, prepared_file, table_rows, text_batches
from twotower.text.tokenizers import PAD, UNK, build_vocab, embedding_matrix, encode_to_files, idf_weights, \
    make_tokenizer
from twotower.text.glove import load_glove

OPTIONAL_SPLITS = ("real", "ict")

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

    names = [*SPLITS, *(name for name in OPTIONAL_SPLITS if Path(args.prepared, name).is_dir())]
    files = {(name, table): prepared_file(args.prepared, name, table) for name in names for table in TABLES}
    tokenizer_json = None
    if params.tokenizer == "wordpiece":
        pieces, piece_vectors, tokenizer_json = load_teacher_pieces(args.teacher)
        vocab = [PAD, UNK, *pieces]
        matrix = teacher_piece_vectors(piece_vectors, params.dim)
        print(f"vocabulary: the teacher's {len(pieces)} word pieces, each with its teacher vector")
    elif params.vectors == "teacher":
        vocab = build_vocab(train_texts(files), load_glove()[0], params.min_freq, params.max_vocab)
        matrix, counts = teacher_word_vectors(vocab, *load_teacher_words(args.teacher), dim=params.dim)
        print(f"vocabulary: {len(vocab)} entries; teacher vectors: {counts['whole']} words encoded whole, "
              f"{counts['composed']} composed from word pieces, {counts['missing']} none")
    else:
        glove_words, glove = load_glove()
        vocab = build_vocab(train_texts(files), glove_words, params.min_freq, params.max_vocab)
        matrix, pretrained = embedding_matrix(vocab, glove_words, glove, params.seed)
        print(f"vocabulary: {len(vocab)} entries, {pretrained} with GloVe vectors")

    tokenizer = make_tokenizer(vocab, tokenizer_json)
    max_len = {"queries": params.max_len_query, "passages": params.max_len_passage}
    with atomic_path(args.out) as out:
        out.mkdir()
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        if tokenizer_json:
            (out / "tokenizer.json").write_text(tokenizer_json)
        save_npy(matrix, out / "embeddings.npy")
        for name in names:
            for table in TABLES:
                path = files[name, table]
                counting = (name, table) == ("train", "passages")
                df = np.zeros(len(vocab), dtype=np.int64) if counting else None
                tf = np.zeros(len(vocab), dtype=np.int64) if counting else None
                batches = text_batches(path, desc=f"{name} {table}")
                counts = encode_to_files(tokenizer, batches, table_rows(path), max_len[table], out / name, table,
                                         df, tf)
                if counting:
                    weights = sif_weights_from_counts(tf) if tokenizer_json else idf_weights(df, counts.rows)
                    save_npy(weights, out / "term_weights.npy")
                print(f"{name} {table}: {counts.rows} rows, mean length "
                      f"{counts.tokens / max(1, counts.rows):.1f}, "
                      f"{counts.unknown / max(1, counts.tokens):.1%} unknown tokens")


if __name__ == "__main__":
    main()
