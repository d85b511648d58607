"""Stage hybrid: fuse the two-tower run with the BM25 run and score the result.

`hybrid.method: rrf` is reciprocal rank fusion with constant `hybrid.rrf_k`; `weighted`
mixes min-max normalised scores, `hybrid.weight` being the two-tower run's share. Writes
data/runs/hybrid.trec (tag hybrid) and metrics/hybrid.json (same measures as eval.json).
"""

import argparse

from twotower.errors import exit_on_error
from twotower.retrieval.fusion import fuse
from twotower.evaluation.metrics import save_run_and_metrics
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.data.runs import read_trec_run


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--split", default="test")
    parser.add_argument("--dense", default="data/runs/twotower.trec", help="the run hybrid.weight applies to")
    parser.add_argument("--sparse", default="data/runs/bm25.trec")
    parser.add_argument("--run", default="data/runs/hybrid.trec")
    parser.add_argument("--metrics", default="metrics/hybrid.json")
    args = parser.parse_args(argv)
    params = load_section("hybrid", args.params)
    check_params_file(args.params)

    tables = load_split(args.prepared, args.split)
    how = f"rrf, k {params.rrf_k}" if params.method == "rrf" else f"weighted, two-tower weight {params.weight}"
    print(f"fusing {args.dense} and {args.sparse} ({how})")
    run = fuse(read_trec_run(args.dense), read_trec_run(args.sparse), params)

    save_run_and_metrics(run, tables.qrels, args.run, args.metrics, tag="hybrid")


if __name__ == "__main__":
    main()
