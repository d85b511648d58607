"""Stage bm25: the lexical baseline. Rank the test corpus for the test queries with BM25 (bm25s).

Writes data/runs/bm25.trec (TREC run, `bm25.depth` passages a query, tag bm25) and
metrics/bm25.json (the same ir-measures figures as metrics/eval.json, so the two compare).
"""

import argparse

from twotower.retrieval.bm25 import bm25_run
from twotower.errors import exit_on_error
from twotower.evaluation.metrics import save_run_and_metrics
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--split", default="test")
    parser.add_argument("--run", default="data/runs/bm25.trec")
    parser.add_argument("--metrics", default="metrics/bm25.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    params = load_section("bm25", args.params)
    check_params_file(args.params)

    tables = load_split(args.prepared, args.split)
    print(f"BM25 (k1 {params.k1}, b {params.b}, {params.method}, stemmer {params.stemmer}, "
          f"stopwords {params.stopwords}): {len(tables.queries)} queries over {len(tables.passages)} passages")
    run = bm25_run(tables.queries, tables.passages, params, show_progress=not args.quiet)
    unanswered = len(set(tables.queries["qid"]) - set(run["qid"]))
    if unanswered:
        print(f"note: {unanswered} query(ies) share no term with any passage and get no results")

    save_run_and_metrics(run, tables.qrels, args.run, args.metrics, tag="bm25")


if __name__ == "__main__":
    main()
