"""Stage build_triplets: (qid, pos_pid, neg_pid) for the train and validation splits.

`triplets.negatives: bm25` ranks each split's passages with BM25 (`bm25.*` params) and takes
negatives from each query's top `triplets.bm25_depth`. An `ict` split, when subsample made
one, gets one triplet a pair with a random negative (in-batch negatives do the rest).
"""

import argparse
from collections import Counter
from dataclasses import replace
from pathlib import Path

from twotower.retrieval.bm25 import bm25_run
from twotower.errors import exit_on_error
from twotower.files import write_parquet
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.data.triplets import build_triplets


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/triplets")
    args = parser.parse_args(argv)
    params = load_section("triplets", args.params)
    bm25_params = load_section("bm25", args.params) if params.negatives == "bm25" else None
    check_params_file(args.params)

    splits = [("train", params.negatives, params.per_query), ("validation", params.negatives, params.per_query)]
    if Path(args.prepared, "ict").is_dir():
        splits.append(("ict", "random", 1))
    for offset, (split, negatives, per_query) in enumerate(splits):
        tables = load_split(args.prepared, split)
        candidates = None
        if negatives == "bm25":
            run = bm25_run(tables.queries, tables.passages, replace(bm25_params, depth=params.bm25_depth))
            candidates = run.groupby("qid")["pid"].agg(list).to_dict()
        stats = Counter()
        triplets = build_triplets(tables.qrels, tables.passages["pid"].to_numpy(), negatives,
                                  per_query, params.seed + offset, stats, candidates)
        write_parquet(triplets, Path(args.out) / f"{split}.parquet")
        print(f"{split}: {len(triplets)} triplets; " + ", ".join(f"{v} {k}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    main()
