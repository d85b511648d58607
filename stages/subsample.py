"""Stage subsample: raw MS MARCO parquet -> normalised queries, passages and qrels per split.

Keeps a seeded fraction `data.subsample` of each split's queries (test whole unless
`data.subsample_test`), drops queries without a selected passage, and reports every
dropped row and every cleaned text by reason. The raw files are streamed in record batches
(`twotower.data.prepare_split`), so memory stays bounded whatever their size. With
`data.ict_passages > 0` it also writes an `ict` split of inverse-cloze pairs made from the
unlabelled `collection.parquet`, or, when the raw folder has none (the Hugging Face files),
from the train split's passages; no pairs (no passage of two sentences), no `ict` split.
"""

import argparse

from twotower.data import prepare_split
from twotower.errors import exit_on_error
from twotower.files import atomic_path
from twotower.ict import inverse_cloze_pairs, pseudo_query_passages
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.prepared import SPLITS, write_split
from twotower.raw import check_raw


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/prepared")
    args = parser.parse_args(argv)
    params = load_section("data", args.params)
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
        if params.ict_passages:
            passages, source = pseudo_query_passages(params.raw_dir, out / "train" / "passages.parquet",
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
