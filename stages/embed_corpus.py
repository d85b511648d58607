"""Stage embed_corpus: encode every test passage with the passage tower.

Writes data/index/: embeddings.npy (float32 [n, dim], unit rows) and pids.parquet
(pid: str, row-aligned with the embeddings); with `eval.index` hnsw or ivf also
faiss.index, the approximate index that evaluate searches (ids are embedding rows).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.ann import build_index, save_index
from twotower.data import load_split
from twotower.errors import exit_on_error
from twotower.files import atomic_path
from twotower.index import embed
from twotower.model import load_model
from twotower.params import load_section
from twotower.text import TokenArrays
from twotower.training import select_device


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default="data/index")
    args = parser.parse_args(argv)
    params = load_section("eval", args.params)

    device = select_device(params.device)
    model, _ = load_model(args.model, device)
    pids = load_split(args.prepared, args.split).passages["pid"]
    passages = TokenArrays.load(Path(args.tokens) / args.split, "passages")
    vectors = embed(model.encode_passages, passages.ids, passages.lengths, params.batch_size, device,
                    desc="passages")
    with atomic_path(args.out) as out:
        out.mkdir()
        np.save(out / "embeddings.npy", vectors)
        pd.DataFrame({"pid": pids}).to_parquet(out / "pids.parquet", index=False)
        if params.index != "exact":
            save_index(build_index(vectors, params.index, hnsw_m=params.hnsw_m,
                                   hnsw_ef_construction=params.hnsw_ef_construction,
                                   hnsw_ef_search=params.hnsw_ef_search, ivf_nlist=params.ivf_nlist,
                                   ivf_nprobe=params.ivf_nprobe), out / "faiss.index")
    print(f"embedded {len(vectors)} passages into {vectors.shape[1]} dimensions"
          + (f"; built a {params.index} index" if params.index != "exact" else ""))


if __name__ == "__main__":
    main()
