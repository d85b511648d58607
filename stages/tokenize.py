"""Stage tokenize: vocabulary, embedding matrix and token-id arrays for every split.

Outputs (data/tokens/): vocab.txt (one word a line; line 0 <pad>, line 1 <unk>),
embeddings.npy (float32 [vocab, 50], GloVe rows where known), idf.npy (float32 [vocab],
inverse document frequency over the training passages), and per split
queries_{ids,lengths}.npy / passages_{ids,lengths}.npy, row-aligned with the
prepared queries.parquet / passages.parquet.
"""

import argparse
from pathlib import Path

from twotower.data import SPLITS, load_split
from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy
from twotower.params import load_section
from twotower.text import TokenArrays, Tokenizer, build_vocab, embedding_matrix, inverse_document_frequency
from twotower.vectors import load_glove


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/tokens")
    args = parser.parse_args(argv)
    params = load_section("tokenize", args.params)

    names = [*SPLITS, *(["ict"] if Path(args.prepared, "ict").is_dir() else [])]
    splits = {name: load_split(args.prepared, name) for name in names}
    train = splits["train"]
    glove_words, glove = load_glove()
    vocab = build_vocab([*train.queries["text"], *train.passages["text"]], glove_words,
                        params.min_freq, params.max_vocab)
    matrix, pretrained = embedding_matrix(vocab, glove_words, glove, params.seed)
    print(f"vocabulary: {len(vocab)} entries, {pretrained} with GloVe vectors")

    tokenizer = Tokenizer(vocab)
    with atomic_path(args.out) as out:
        out.mkdir()
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        save_npy(matrix, out / "embeddings.npy")
        for name, tables in splits.items():
            for prefix, texts, max_len in (
                ("queries", tables.queries["text"], params.max_len_query),
                ("passages", tables.passages["text"], params.max_len_passage),
            ):
                arrays = TokenArrays(*tokenizer.encode_batch(texts, max_len))
                arrays.save(Path(out) / name, prefix)
                if (name, prefix) == ("train", "passages"):
                    save_npy(inverse_document_frequency(arrays.ids, len(vocab)), out / "idf.npy")
                unknown = (arrays.ids == 1).sum() / max(1, arrays.lengths.sum())
                print(f"{name} {prefix}: {len(arrays)} rows, mean length "
                      f"{arrays.lengths.mean():.1f}, {unknown:.1%} unknown tokens")


if __name__ == "__main__":
    main()
