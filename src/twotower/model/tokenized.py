"""A prepared split joined with its token arrays (and, for distillation, its teacher
vectors): what training, validation and the benchmarks rank or learn from."""

from pathlib import Path

from twotower.retrieval.dense import Split
from twotower.data.prepared import load_split
from twotower.distill.teacher import load_split_vectors
from twotower.text.tokenizers import TokenArrays


def load_tokenized(prepared, tokens, split: str, teacher=None) -> Split:
    """`split`'s ids, token arrays and qrels; with `teacher` (the teacher stage's folder), its
    teacher vectors too. The `ict` split's pseudo-query pairs are marked unlabelled."""
    tables = load_split(prepared, split)
    folder = Path(tokens) / split
    qids, pids = tables.queries["qid"].to_numpy(), tables.passages["pid"].to_numpy()
    vectors = load_split_vectors(teacher, split, qids, pids) if teacher else (None, None)
    return Split(qids, TokenArrays.load(folder, "queries"), pids, TokenArrays.load(folder, "passages"),
                 tables.qrels, *vectors, labelled=split != "ict")
