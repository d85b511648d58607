"""Stage build_triplets: (qid, pos_pid, neg_pid) for the train and validation splits."""

import argparse
from collections import Counter
from pathlib import Path

from twotower.data import load_split
from twotower.errors import exit_on_error
from twotower.files import write_parquet
from twotower.params import load_section
from twotower.triplets import build_triplets


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/triplets")
    args = parser.parse_args(argv)
    params = load_section("triplets", args.params)

    for offset, split in enumerate(("train", "validation")):
        tables = load_split(args.prepared, split)
        stats = Counter()
        triplets = build_triplets(tables.qrels, tables.passages["pid"].to_numpy(), params.negatives,
                                  params.per_query, params.seed + offset, stats)
        write_parquet(triplets, Path(args.out) / f"{split}.parquet")
        print(f"{split}: {len(triplets)} triplets; " + ", ".join(f"{v} {k}" for k, v in sorted(stats.items())))


if __name__ == "__main__":
    main()
