"""Stage compare: our runs and the official TREC-DL 2019 runs, scored by the same metric code.

Writes plots/compare/: scores.json ({system: {metric: value}}), results.md (the table),
per_query_ndcg.csv/.png (nDCG@10 of two-tower vs BM25 on each query: who wins where) and
precision_recall.csv/.png (P@K and R@K of every system). If the `--official` file is absent,
only our systems are compared. The scores are no DVC metric: our systems' figures are
evaluate's, bm25's and hybrid's metrics already, and the official runs' would add a column
per run and measure to `dvc exp show`.
"""

import argparse
from pathlib import Path

import pandas as pd

from twotower.evaluation.compare import (TABLE_METRICS, curves, curves_table, official_runs, per_query_wins,
                              results_markdown, score_systems)
from twotower.errors import exit_on_error
from twotower.files import atomic_path, write_json
from twotower.evaluation.plots import plot_per_query_delta, plot_precision_recall
from twotower.data.prepared import load_split
from twotower.data.runs import read_trec_run


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--split", default="test")
    parser.add_argument("--twotower", default="data/runs/twotower.trec")
    parser.add_argument("--bm25", default="data/runs/bm25.trec")
    parser.add_argument("--hybrid", default="data/runs/hybrid.trec")
    parser.add_argument("--official", default="../shared/data/trec-dl-2019/runs.parquet",
                        help="published runs: parquet with run, qid, pid, rank, score")
    parser.add_argument("--plots", default="plots/compare")
    args = parser.parse_args(argv)

    tables = load_split(args.prepared, args.split)
    runs = {"twotower": read_trec_run(args.twotower), "bm25": read_trec_run(args.bm25), "hybrid": read_trec_run(args.hybrid)}
    judged = tables.qrels.loc[tables.qrels["selected"], "qid"].nunique()
    caption = (f"{args.split}: {judged} queries ranked over {len(tables.passages):,} passages; nDCG@10 "
               "with graded relevance, the other measures with relevance >= 2.")
    if Path(args.official).is_file():
        runs.update(official_runs(pd.read_parquet(args.official)))
        caption += (" DL19 rows: published runs over the full MS MARCO collection, top-100 a query "
                    "(RepLLaMA top-200), so their MAP is cut at that depth.")
    else:
        print(f"note: no official runs at {args.official}; comparing our systems only")

    scores = score_systems(runs, tables.qrels)
    wins = per_query_wins({"twotower": runs["twotower"], "bm25": runs["bm25"]}, tables.qrels, tables.queries)
    by_system = curves(runs, tables.qrels)

    with atomic_path(args.plots) as out:
        out.mkdir()
        write_json(scores, out / "scores.json")
        (out / "results.md").write_text(results_markdown(scores, TABLE_METRICS, caption))
        wins.to_csv(out / "per_query_ndcg.csv", index=False)
        plot_per_query_delta(wins, "twotower", "bm25", out / "per_query_ndcg.png")
        curves_table(by_system).to_csv(out / "precision_recall.csv", index=False)
        plot_precision_recall(by_system, out / "precision_recall.png")
    print(results_markdown(scores, TABLE_METRICS))
    counts = wins["winner"].value_counts()
    print(f"per-query nDCG@10: twotower wins {counts.get('twotower', 0)}, bm25 wins {counts.get('bm25', 0)}, "
          f"ties {counts.get('tie', 0)}")


if __name__ == "__main__":
    main()
