"""Stage embed_corpus: encode every test passage with the passage tower, or take the
teacher's vectors of them (data/teacher_index) when the model has none
(`model.passage_encoder: teacher`).

Writes data/index/: embeddings.npy (float32 [n, dim], unit rows) and pids.parquet
(pid: str, row-aligned with the embeddings); with `eval.index` hnsw or ivf also
faiss.index, the approximate index that evaluate searches (ids are embedding rows).

Sharded, with a byte-identical result (see `twotower.retrieval.shards`):
  torchrun --nproc_per_node N -m stages.embed_corpus    each process embeds its rank's shard
                                                        into --shard-dir, the first merges
  --shard K --num-shards N --shard-dir DIR              embed shard K only (one per machine)
  --merge --num-shards N --shard-dir DIR                merge the N shards and write --out
"""

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from twotower.model import distributed
from twotower.retrieval.ann import build_index, save_index, settings
from twotower.devices import select_device
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import atomic_path, save_npy
from twotower.model.towers import load_model
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.retrieval.shards import check_shard, embed_shard, merge_shards, shard_path
from twotower.distill.teacher_index import load_teacher_index
from twotower.text.tokenizers import TokenArrays


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--split", default="test")
    parser.add_argument("--teacher-index", default="data/teacher_index")
    parser.add_argument("--out", default="data/index")
    parser.add_argument("--shard", type=int, metavar="K", help="embed only shard K (0-based) into --shard-dir")
    parser.add_argument("--merge", action="store_true", help="merge the shards of --shard-dir into --out")
    parser.add_argument("--num-shards", type=int, metavar="N")
    parser.add_argument("--shard-dir", type=Path, help="where shards go (under torchrun: default .OUT.shards, "
                                                       "removed after the merge)")
    args = parser.parse_args(argv)
    params = load_section("eval", args.params)
    check_params_file(args.params)
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    check_args(args, torchrun)
    pids = load_split(args.prepared, args.split).passages["pid"]
    if args.merge:
        write_index(args.out, pids, params, lambda path: merge_shards(args.shard_dir, args.num_shards, len(pids),
                                                                      params.batch_size, path))
        return

    device = distributed.setup(select_device(params.device)) if torchrun else select_device(params.device)
    model, _ = load_model(args.model, device)
    if model.teacher_passages:
        if torchrun or args.shard is not None:
            raise TwoTowerError("the teacher's passage vectors are ready-made: run embed_corpus without shards")
        vectors = load_teacher_index(args.teacher_index, model.cfg.teacher, pids.astype(str).to_numpy())
        write_index(args.out, pids, params, lambda path: save_npy(np.asarray(vectors, dtype=np.float32), path))
        return
    passages = TokenArrays.load(Path(args.tokens) / args.split, "passages")

    def embed_into(path, shard=0, num_shards=1):
        return embed_shard(model.encode_passages, model.output_dim, passages.ids, passages.lengths,
                           params.batch_size, device, path, shard, num_shards)

    if not torchrun and args.shard is None:
        write_index(args.out, pids, params, embed_into)
        return
    shard, num_shards = (distributed.rank(), distributed.world_size()) if torchrun else (args.shard, args.num_shards)
    shard_dir = args.shard_dir or Path(args.out).with_name(f".{Path(args.out).name}.shards")
    rows = embed_into(shard_path(shard_dir, shard, num_shards), shard, num_shards)
    print(f"shard {shard} of {num_shards}: embedded passages {rows.start} to {rows.stop - 1} into {shard_dir}")
    if torchrun:
        distributed.cleanup()  # its barrier waits for every shard; the other processes end here
        if shard == 0:
            write_index(args.out, pids, params, lambda path: merge_shards(shard_dir, num_shards, len(pids),
                                                                          params.batch_size, path))
            if args.shard_dir is None:
                shutil.rmtree(shard_dir)


def check_args(args, torchrun: bool) -> None:
    """One line for each combination of the shard options that cannot work."""
    if args.shard is not None and args.merge:
        raise TwoTowerError("--shard and --merge are separate steps: give one of them")
    if torchrun and (args.shard is not None or args.merge or args.num_shards is not None):
        raise TwoTowerError("under torchrun each process embeds its rank's shard and the first merges: "
                            "drop --shard, --merge and --num-shards")
    if args.shard is None and not args.merge:
        if args.num_shards is not None:
            raise TwoTowerError("--num-shards goes with --shard K or --merge")
        return
    if args.num_shards is None or args.shard_dir is None:
        raise TwoTowerError(f"{'--merge' if args.merge else '--shard'} needs --num-shards and --shard-dir")
    check_shard(0 if args.merge else args.shard, args.num_shards)


def write_index(path, pids, params, write_embeddings) -> None:
    """The index folder at `path`: embeddings.npy written by `write_embeddings(file)`,
    pids.parquet and, unless `eval.index` is exact, faiss.index."""
    with atomic_path(path) as out:
        out.mkdir()
        write_embeddings(out / "embeddings.npy")
        pd.DataFrame({"pid": pids}).to_parquet(out / "pids.parquet", index=False)
        vectors = np.load(out / "embeddings.npy", mmap_mode="r")
        if params.index != "exact":
            save_index(build_index(vectors, params.index, **settings(params)), out / "faiss.index")
    print(f"embedded {len(vectors)} passages into {vectors.shape[1]} dimensions"
          + (f"; built a {params.index} index" if params.index != "exact" else ""))


if __name__ == "__main__":
    main()
