"""Search latency per query (p50/p99, ms) and recall@10 of approximate faiss indexes vs exact.

Passages and queries are random unit vectors of dim 50 (the model's output size). Uniform
random vectors have no cluster structure, the worst case for ivf and a hard one for hnsw;
`--vectors clustered` draws them around 1,000 random topics instead, closer to real
embeddings. Queries are searched one at a time, as a search box would send them. Methods:
`numpy` (`twotower.retrieval.dense.top_k`, what evaluate uses), faiss `flat` (exact), `hnsw`, `ivf`,
each approximate index at several search-time settings (efSearch, nprobe).

    python benchmarks/search_latency.py                          # 16k and 1M passages
    python benchmarks/search_latency.py --sizes 16000 1000000 8000000
    python benchmarks/search_latency.py --sizes 16000 --vectors clustered

hnsw is built only up to `--hnsw-max` passages (default 1M): its build at 8M takes far
too long on 2 cores. `--nlist 0` (default) picks ivf's cell count as 4 * sqrt(n), at most
4096, so k-means (on 256 vectors a cell) stays a few minutes at 8M.

Searches run on OMP_NUM_THREADS threads, 1 unless set: a single query is too small to
split, and on a busy machine a second BLAS/OpenMP thread waiting for a core turned
0.1-0.3 ms searches into 8-16 ms ones. Index builds use every core.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by OpenBLAS and faiss when they load

import argparse  # noqa: E402
import time  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from twotower.retrieval.ann import build_index, search  # noqa: E402
from twotower.retrieval.dense import top_k  # noqa: E402


def unit_vectors(rng, n, dim, centres=None, chunk=1_000_000):
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        x = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        if centres is not None:
            x = centres[rng.integers(0, len(centres), len(x))] + 0.1 * x
        out[start: start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies_ms(search_one, queries):
    times = []
    for q in queries:
        start = time.perf_counter()
        search_one(q[None])
        times.append((time.perf_counter() - start) * 1000)
    return np.percentile(times, 50), np.percentile(times, 99)


def recall_at_10(rows, exact_rows):
    return np.mean([len(np.intersect1d(a[:10], b[:10])) / 10 for a, b in zip(rows, exact_rows)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--vectors", choices=["random", "clustered"], default="random")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--hnsw-max", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=0)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    search_threads = faiss.omp_get_max_threads()
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; search threads {search_threads} "
          f"(OMP_NUM_THREADS), builds on "
          f"{os.cpu_count()}; dim {args.dim}, {args.vectors} unit vectors, {args.queries} queries one at a time")
    print(f"{'passages':>9} {'method':<6} {'setting':<12} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>9}")
    rng = np.random.default_rng(args.seed)
    centres = unit_vectors(rng, 1000, args.dim) if args.vectors == "clustered" else None
    queries = unit_vectors(rng, args.queries, args.dim, centres)

    def row(n, method, setting, build_s, p50, p99, recall):
        print(f"{n:>9} {method:<6} {setting:<12} {build_s:>8.1f} {p50:>8.2f} {p99:>8.2f} {recall:>9.3f}", flush=True)

    def timed_build(*args, **kwargs):
        faiss.omp_set_num_threads(os.cpu_count())
        start = time.perf_counter()
        index = build_index(*args, **kwargs)
        faiss.omp_set_num_threads(search_threads)
        return index, time.perf_counter() - start

    for n in args.sizes:
        passages = unit_vectors(rng, n, args.dim, centres)
        row(n, "numpy", "top_k", 0, *latencies_ms(lambda q: top_k(q, passages, 10), queries), 1.0)
        flat, build_s = timed_build(passages, "exact")
        exact_rows = search(flat, queries, 10)[1]
        row(n, "flat", "exact", build_s, *latencies_ms(lambda q: search(flat, q, 10), queries), 1.0)
        del flat

        if n <= args.hnsw_max:
            hnsw, build_s = timed_build(passages, "hnsw", hnsw_m=args.hnsw_m, deterministic=False,
                                        hnsw_ef_construction=args.ef_construction)
            for ef in args.ef_search:
                rows = search(hnsw, queries, 10, ef_search=ef)[1]
                p50, p99 = latencies_ms(lambda q: search(hnsw, q, 10, ef_search=ef), queries)
                row(n, "hnsw", f"M{args.hnsw_m} ef{ef}", build_s, p50, p99, recall_at_10(rows, exact_rows))
            del hnsw
        else:
            print(f"{n:>9} hnsw   skipped: more than --hnsw-max {args.hnsw_max} passages")

        nlist = args.nlist or min(4096, int(4 * np.sqrt(n)))
        ivf, build_s = timed_build(passages, "ivf", ivf_nlist=nlist, seed=args.seed)
        for nprobe in args.nprobe:
            rows = search(ivf, queries, 10, nprobe=nprobe)[1]
            p50, p99 = latencies_ms(lambda q: search(ivf, q, 10, nprobe=nprobe), queries)
            row(n, "ivf", f"{ivf.nlist}/{nprobe}", build_s, p50, p99, recall_at_10(rows, exact_rows))
        del ivf, passages


if __name__ == "__main__":
    main()
