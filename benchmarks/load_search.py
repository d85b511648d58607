"""Latency and throughput of `twotower serve`: p50/p99 of GET /search with 1 and 32 clients.

Starts the real server (`twotower serve`, uvicorn) over an index folder in a child process,
then each client thread keeps one HTTP/1.1 connection open and sends its share of the
requests back to back, queries drawn (seeded) from the validation queries. Prints, per mode
and client count: requests, errors (any status but 200, or a dropped connection), p50, p99
and mean latency as the client sees it, and requests/s; then the server's peak RSS.

    python benchmarks/load_search.py --index /tmp/twotower-bench/index-1000000-exact
    python benchmarks/load_search.py --index my-index --clients 1 8 32 --requests 300
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny_index import served, server_pids  # noqa: E402  (the tests' way to start and stop the server)


def run_clients(url: str, queries: list[str], mode: str, k: int, clients: int):
    """(latencies in ms, errors, wall seconds) for `queries` shared out among `clients` threads."""
    parts = urllib.parse.urlsplit(url)
    latencies, errors, lock = [], [0], threading.Lock()
    shares = [queries[i::clients] for i in range(clients)]

    def client(share):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        for query in share:
            path = "/search?" + urllib.parse.urlencode({"q": query, "k": k, "mode": mode})
            start = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and "hits" in json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - start


def server_memory_mib(url: str) -> dict | None:
    """Memory of the serving processes (the one started on the server's port and, with
    --workers, the workers it forked), Linux /proc; None elsewhere. VmHWM is each one's peak
    RSS, summed: it counts every page the forked workers share with their parent once per
    process. PSS (proportional set size, now) splits each shared page among the processes
    that share it, so its sum is what the processes hold together. RSS now splits into
    anonymous memory (summed) and pages of memory-mapped files (the largest process's)."""
    parents, workers = server_pids(url)
    serving = {}
    for pid in parents | workers:
        try:
            status = Path("/proc", str(pid), "status").read_text().splitlines()
        except OSError:
            continue
        serving[str(pid)] = dict(line.split(":", 1) for line in status if ":" in line)
    if not serving:
        return None
    mib = [{name: int(fields[name].split()[0]) / 1024 for name in ("VmHWM", "RssAnon", "RssFile")}
           for fields in serving.values()]
    return {"VmHWM": sum(m["VmHWM"] for m in mib), "RssAnon": sum(m["RssAnon"] for m in mib),
            "RssFile": max(m["RssFile"] for m in mib), "Pss": sum(_pss_mib(pid) for pid in serving),
            "processes": len(mib)}


def _pss_mib(pid: str) -> float:
    try:
        rollup = Path("/proc", pid, "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in rollup if line.startswith("Pss:")), 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", default="data/prepared/validation/queries.parquet")
    parser.add_argument("--requests", type=int, default=400, help="requests per mode and client count")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--modes", nargs="+", default=["dense", "bm25", "hybrid"])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="`twotower serve --workers`")
    args = parser.parse_args()

    pool = pd.read_parquet(args.queries, columns=["text"])["text"].tolist()
    rng = np.random.default_rng(args.seed)
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; {len(pool)} validation queries; "
          f"k={args.k}")
    print("| mode | clients | requests | errors | p50 ms | p99 ms | mean ms | requests/s |")
    print("|---|---|---|---|---|---|---|---|")
    with served(args.index, timeout=600, options=["--workers", str(args.workers)]) as url:
        run_clients(url, [pool[i] for i in rng.integers(0, len(pool), 20)], "hybrid", args.k, 1)  # warm-up
        for mode in args.modes:
            for clients in args.clients:
                queries = [pool[i] for i in rng.integers(0, len(pool), args.requests)]
                latencies, errors, wall = run_clients(url, queries, mode, args.k, clients)
                p50, p99 = np.percentile(latencies, [50, 99])
                print(f"| {mode} | {clients} | {len(latencies)} | {errors} | {p50:.1f} | {p99:.1f} | "
                      f"{statistics.fmean(latencies):.1f} | {len(latencies) / wall:.1f} |", flush=True)
        memory = server_memory_mib(url)
    if memory is not None:
        print(f"server peak RSS {memory['VmHWM']:,.0f} MiB over {memory['processes']} process(es); at the end "
              f"{memory['RssAnon']:,.0f} MiB anonymous + {memory['RssFile']:,.0f} MiB of mapped files; "
              f"PSS summed {memory['Pss']:,.0f} MiB")


if __name__ == "__main__":
    main()
