"""Stage subsample: raw MS MARCO parquet -> normalised queries, passages and qrels per split.

Keeps a seeded fraction `data.subsample` of each split's queries (test whole unless
`data.subsample_test`), drops queries without a selected passage, and reports every
dropped row and every cleaned text by reason. The raw files are streamed in record batches
(`twotower.data.prepare.prepare_split`), so memory stays bounded whatever their size.
With `data.validation: trec` the validation split is `data.val_queries` graded queries held
out of the train split, over their pools plus `data.val_distractors` unlabelled passages,
taken first from the collection passages BM25 ranks in each held-out query's top
`data.val_neighbours` (with the `bm25` section's scoring); none of those neighbours is
trained on (`twotower.data.holdout`). `data.val_trec_set` limits the held-out queries to
one TREC-DL set. With `data.real_queries > 0` and a
`queries.parquet`, it writes a `real` split: unlabelled real queries and
`data.candidate_passages` of the collection passages left to training
(`twotower.data.unlabelled`). With `data.ict_passages > 0` it also writes an `ict` split of
inverse-cloze pairs made from those passages, or, when the raw folder has none (the Hugging
Face files), from the train split's passages; no pairs (no passage of two sentences), no
`ict` split.
"""

import argparse
from pathlib import Path

from twotower.data.prepare import prepare_split
from twotower.errors import exit_on_error
from twotower.files import atomic_path
from twotower.data.holdout import add_distractors, hold_out, split_collection, trec_set_queries
from twotower.data.ict import inverse_cloze_pairs, pseudo_query_passages
from twotower.param_rules import check_params_file
from twotower.retrieval.neighbours import nearest_passages
from twotower.params import load_section
from twotower.data.prepared import SPLITS, load_split, write_split
from twotower.data.raw import check_raw, read_collection
from twotower.data.unlabelled import exclude, exclude_passages, read_real_queries, real_query_split, sample


def unlabelled_passages(raw_dir, seed: int, evaluated):
    """The collection's passages in a seeded order (past the validation queries' neighbours,
    random distractors and then candidates are taken in it), less
    any passage of the `evaluated` splits (validation and test pools: see
    `unlabelled.exclude_passages`), or None without a collection.parquet."""
    if not (Path(raw_dir) / "collection.parquet").is_file():
        return None
    collection = read_collection(raw_dir).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    kept = exclude_passages(collection, *evaluated)
    if len(kept) < len(collection):
        print(f"collection: {len(collection) - len(kept)} of its {len(collection)} passages left out: "
              "they are validation or test passages")
    return kept


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/prepared")
    args = parser.parse_args(argv)
    params = load_section("data", args.params)
    bm25 = load_section("bm25", args.params)
    check_params_file(args.params)
    check_raw(params.raw_dir)

    with atomic_path(args.out) as out:
        for split in SPLITS:
            fraction = params.subsample if split != "test" or params.subsample_test else 1.0
            summary = prepare_split(params.raw_dir, split, out / split, fraction, params.seed)
            print(f"{split}: {summary.queries} queries, {summary.passages} passages, "
                  f"{summary.selected} selected of {summary.judged} judged")
            for reason, count in sorted(summary.dropped.items()):
                if count:
                    print(f"{split}: dropped {count} {reason}")
            for reason, count in sorted(summary.cleaned.items()):
                if count:
                    print(f"{split}: cleaned {count} {reason}")
        if params.validation == "trec":
            train, validation = hold_out(load_split(out, "train"), params.val_queries, params.seed,
                                         among=trec_set_queries(params.raw_dir, params.val_trec_set))
        else:
            validation = load_split(out, "validation")
        test = load_split(out, "test")
        collection = unlabelled_passages(params.raw_dir, params.seed, (validation, test))
        if params.validation == "trec":
            if collection is not None:
                neighbours = nearest_passages(validation.queries, collection, params.val_neighbours, bm25)
                distractors, collection = split_collection(collection, neighbours, params.val_distractors)
                validation = add_distractors(validation, distractors)
                if params.val_neighbours:
                    print(f"validation: {len(neighbours)} collection passages are among the held-out queries' "
                          f"top {params.val_neighbours} by BM25: none is trained on")
            else:
                distractors = None
                print("note: no collection.parquet, so the validation pools have no distractors")
            write_split(train, out / "train")
            write_split(validation, out / "validation")
            print(f"validation: {len(validation.queries)} TREC-DL queries held out of train, "
                  f"{len(validation.passages)} passages ({len(distractors) if distractors is not None else 0} "
                  f"distractors); train keeps {len(train.queries)} queries")
        real = read_real_queries(params.raw_dir) if params.real_queries else None
        if real is not None:
            real = sample(exclude(real, *(load_split(out, split) for split in SPLITS)), params.real_queries,
                          params.seed)
            if collection is not None:
                candidates = collection.iloc[: params.candidate_passages]
            else:
                candidates = load_split(out, "train").passages
                print("note: no collection.parquet, so the real queries' candidates are the train passages")
            write_split(real_query_split(real, candidates), out / "real")
            print(f"real: {len(real)} unlabelled real queries, {len(candidates)} candidate passages")
        elif params.real_queries:
            print(f"note: no {Path(params.raw_dir) / 'queries.parquet'}: training without real queries")
        if params.ict_passages:
            passages, source = pseudo_query_passages(collection, out / "train" / "passages.parquet",
                                                     params.ict_passages, params.seed)
            if source == "train":
                print(f"note: no collection.parquet in {params.raw_dir}: the inverse-cloze pairs are made "
                      "from the train split's passages")
            pairs = inverse_cloze_pairs(passages, params.ict_passages, params.seed)
            if len(pairs.queries):
                write_split(pairs, out / "ict")
                print(f"ict: {len(pairs.queries)} inverse-cloze pairs from "
                      f"{'unlabelled' if source == 'collection' else 'train'} passages")
            else:
                print("note: no inverse-cloze pairs (no sampled passage has two sentences of 4+ words): no ict split")


if __name__ == "__main__":
    main()
