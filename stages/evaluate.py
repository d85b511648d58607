"""Stage evaluate: rank the whole embedded test corpus for every test query and score it.

Ranks by exact dot product (`eval.index: exact`) or searches the faiss index that
embed_corpus built (`hnsw`, `ivf`, with `eval.hnsw_ef_search` / `eval.ivf_nprobe`), each
query first moved toward its first passages (`feedback`; `feedback.depth: 0` turns it off).
Writes data/runs/twotower.trec (TREC run, `eval.depth` passages a query), metrics/eval.json
(ir-measures: P@1/5/10, MRR@10, Recall@10/100, nDCG@10, MAP) and plots/eval/: the
Precision@K / Recall@K curve as data for `dvc plots` and as a PNG.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.retrieval.ann import load_index, search
from twotower.devices import select_device
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import atomic_path
from twotower.retrieval.dense import Split, embed, rank, to_run
from twotower.retrieval.feedback import expand
from twotower.evaluation.metrics import precision_recall_curve, save_run_and_metrics
from twotower.model.towers import load_model
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.evaluation.plots import plot_precision_recall
from twotower.data.prepared import load_split
from twotower.text.tokenizers import TokenArrays


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--index", default="data/index")
    parser.add_argument("--split", default="test")
    parser.add_argument("--run", default="data/runs/twotower.trec")
    parser.add_argument("--metrics", default="metrics/eval.json")
    parser.add_argument("--plots", default="plots/eval")
    args = parser.parse_args(argv)
    params, feedback = load_section("eval", args.params), load_section("feedback", args.params)
    check_params_file(args.params)

    device = select_device(params.device)
    model, _ = load_model(args.model, device)
    tables = load_split(args.prepared, args.split)
    vectors = np.load(Path(args.index, "embeddings.npy"), mmap_mode="r")
    pids = pd.read_parquet(Path(args.index, "pids.parquet"))["pid"].to_numpy()
    if not np.array_equal(pids, tables.passages["pid"].to_numpy()):
        raise TwoTowerError(f"{args.index} was embedded from other passages; rerun embed_corpus")
    split = Split(tables.queries["qid"].to_numpy(), TokenArrays.load(Path(args.tokens) / args.split, "queries"),
                  pids, None, tables.qrels)
    if params.index == "exact":
        run = rank(model, split, params.depth, params.batch_size, device, passage_vectors=np.asarray(vectors),
                   feedback=feedback)
    else:
        index = load_index(Path(args.index, "faiss.index"), params.index, size=len(pids))

        def search_index(queries, k):
            return search(index, queries, k, ef_search=params.hnsw_ef_search, nprobe=params.ivf_nprobe)

        query_vectors = embed(model.encode_queries, split.queries.ids, split.queries.lengths,
                              params.batch_size, device, desc="queries")
        query_vectors = expand(query_vectors, search_index, lambda rows: vectors[rows], feedback)
        scores, rows = search_index(query_vectors, params.depth)
        run = to_run(split.qids, pids, scores, rows)

    save_run_and_metrics(run, tables.qrels, args.run, args.metrics, tag="twotower")
    curve = precision_recall_curve(run, tables.qrels)
    with atomic_path(args.plots) as out:
        out.mkdir()
        curve.to_csv(out / "precision_recall.csv", index=False)
        plot_precision_recall({"two-tower": curve}, out / "precision_recall.png")


if __name__ == "__main__":
    main()
