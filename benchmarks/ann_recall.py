"""Recall@10 of an index folder's faiss index against exact search, for real queries.

`twotower index` calibrates an ivf index's nprobe on the collection's own vectors; this
checks the choice with queries as a user sends them: each query is encoded by the folder's
model (`Searcher.embed_query`), searched as the server searches (dense.faiss, and for
ivf_pq the re-ranking of its candidates) and, exactly, over vectors.npy (block by block,
never the whole matrix in memory). Prints recall@10 at the folder's nprobe and at others,
with that search's p50 per query (one query at a time, as a server with one client searches).

    python benchmarks/ann_recall.py --index /tmp/idx57k --queries data/prepared/test/queries.parquet \
        data/prepared/validation/queries.parquet data/prepared/real/queries.parquet --max-queries 2000
"""

import argparse
import os
import time

import faiss
import numpy as np
import pandas as pd

from twotower.serve.index_folder import VECTORS, NpyRows
from twotower.serve.index_plan import exact_top
from twotower.serve.search import Searcher


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", nargs="+", required=True, help="parquet files with a text column")
    parser.add_argument("--max-queries", type=int, default=2000)
    parser.add_argument("--nprobe", type=int, nargs="*", default=None, help="also measure these")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    searcher = Searcher.from_index(args.index, device="cpu")
    texts = pd.concat([pd.read_parquet(path, columns=["text"]) for path in args.queries])["text"]
    texts = texts.drop_duplicates().sample(frac=1.0, random_state=0).head(args.max_queries).tolist()
    queries = np.concatenate([searcher.embed_query(text) for text in texts])
    vectors = NpyRows(os.path.join(args.index, VECTORS))
    start = time.perf_counter()
    truth = exact_top(queries, vectors, 10, 65536)
    exact_s = time.perf_counter() - start
    index = searcher.faiss_index
    kind = searcher.manifest["dense"]["kind"]
    print(f"{len(texts)} queries over {len(vectors):,} passages ({kind}); exact search {exact_s:.1f} s for all")
    probes = [None] if not hasattr(index, "nprobe") else sorted({index.nprobe, *(args.nprobe or [])})
    for nprobe in probes:
        found, times = [], []
        for query in queries:
            begin = time.perf_counter()
            found.append(searcher.dense_search(query[None], 10, nprobe=nprobe)[1][0])  # refined where the kind is
            times.append((time.perf_counter() - begin) * 1000)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        setting = f"nprobe {nprobe} of {index.nlist}" if nprobe is not None else "exact"
        print(f"{setting:<22} recall@10 {recall:.4f}   search p50 {np.percentile(times, 50):.2f} ms, "
              f"p99 {np.percentile(times, 99):.2f} ms")


if __name__ == "__main__":
    main()
