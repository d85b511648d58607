"""A hand-built model and a small collection for the index, search-server and browser tests.

Each word has its own unit vector and an untrained tower is the mean of its words' vectors,
so the passage made of a query's words is its top dense hit, as it is BM25's.
"""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import torch

from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.text.tokenizers import PAD, UNK

WORDS = ["flea", "life", "cycle", "dog", "cat", "bread", "recipe", "oven", "river", "bank", "loan",
         "interest", "rate", "python", "snake", "venom", "coffee", "bean", "roast", "tea"]
PASSAGES = pd.DataFrame({
    "id": [f"d{i}" for i in range(8)],
    "text": ["bread recipe for the oven",
             "the flea life cycle takes weeks",
             "a dog and a cat",
             "the river bank after rain",
             "a bank loan and its interest rate",
             "python snake venom",
             "how to roast a coffee bean",
             "green tea or coffee"],
})
# What a rebuild puts in the same folder: other ids, other texts, another row count.
OTHER_PASSAGES = pd.DataFrame({
    "id": [f"b{i}" for i in range(6)],
    "text": ["coffee bean and tea", "a cat on the river bank", "interest rate of a loan",
             "the life of a python snake", "bread in the oven", "roast coffee recipe"],
})


def make_model(path, hidden_dim: int = 4, seed: int = 0) -> None:
    """An untrained two-tower model over WORDS; `seed` changes its (unused) RNN weights and
    so the file's hash, which is how the tests make 'a different model'."""
    torch.manual_seed(seed)
    vocab = [PAD, UNK, *WORDS]
    vectors = torch.zeros(len(vocab), len(WORDS))
    vectors[2:] = torch.eye(len(WORDS))
    model = TwoTower(ModelConfig(vocab_size=len(vocab), embed_dim=len(WORDS), hidden_dim=hidden_dim),
                     vectors).eval()
    save_model(model, vocab, max_len_query=8, max_len_passage=16, path=path)


def write_collection(table: pd.DataFrame, path, format: str, header: bool = True) -> None:
    """`table` (columns as given) as parquet, jsonl or tsv."""
    if format == "parquet":
        table.to_parquet(path, index=False)
    elif format == "jsonl":
        with open(path, "w") as file:
            for row in table.to_dict("records"):
                file.write(json.dumps(row) + "\n")
    else:  # as MS MARCO's tsv files are: no quoting, a tab between fields
        lines = ["\t".join(table.columns)] if header else []
        lines += ["\t".join(map(str, row)) for row in table.itertuples(index=False)]
        Path(path).write_text("\n".join(lines) + "\n")


def build_index(root, table: pd.DataFrame = PASSAGES):
    """The model and `table` (the collection above), indexed into root/index; returns that folder."""
    from twotower.serve.collection import open_source
    from twotower.serve.indexer import build_index_folder
    from twotower.params import Bm25Params, EvalParams, HybridParams

    make_model(root / "model.pt")
    write_collection(table, root / "c.parquet", "parquet")
    build_index_folder([open_source(root / "c.parquet")], root / "index", root / "model.pt", device="cpu",
                       kind="exact",
                       eval_params=EvalParams(), bm25_params=Bm25Params(), hybrid_params=HybridParams(),
                       show_progress=False, log=lambda line: None)
    return root / "index"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_pids(url: str) -> tuple[set[int], set[int]]:
    """(the `twotower serve` process of `url`'s port, the workers it forked), from Linux /proc:
    the processes whose command line names `serve` and the port (forked workers share their
    parent's), split into the one started and its children."""
    port = url.rsplit(":", 1)[1].encode()
    serving = {}  # pid -> parent pid
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            ppid = int(next(line for line in (proc / "status").read_text().splitlines()
                            if line.startswith("PPid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if b"serve" in cmdline and port in cmdline:
            serving[int(proc.name)] = ppid
    parents = {pid for pid, ppid in serving.items() if ppid not in serving}
    return parents, set(serving) - parents


def worker_pids(url: str) -> set[int]:
    """The pids of the workers a `served(..., options=["--workers", N])` server forked."""
    return server_pids(url)[1]


@contextlib.contextmanager
def served(index, timeout: float = 120, options=()):
    """`twotower serve` over `index` on a free port, as a user starts it (plus `options`);
    yields its base URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "twotower.cli", "serve", "--index", str(index),
                               "--port", str(port), "--device", "cpu", "--log-level", "warning", *options],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"twotower serve exited: {server.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
