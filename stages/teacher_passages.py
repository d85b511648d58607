"""Stage teacher_passages: embed the test passages with the teacher, for
`model.passage_encoder: teacher`.

Writes data/teacher_index/: embeddings.npy (float32 [n, dim] unit rows, row-aligned with the
prepared test passages), pids.parquet and manifest.json (`encoder: teacher`, the teacher's
space). With `model.passage_encoder: student` it writes only a manifest saying so (the
student embeds its own passages in embed_corpus), so switching modes with `dvc exp run -S`
costs the teacher's minutes only for the mode that needs them, and DVC's run cache brings
them back on switching back. A killed run resumes from the parts already encoded
(`twotower.distill.teacher_index`).
"""

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from twotower.devices import select_device
from twotower.errors import exit_on_error
from twotower.files import atomic_path, save_npy
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.distill.teacher import check_teacher_dir, load_teacher, teacher_dir, teacher_identity
from twotower.distill.teacher_index import MANIFEST, clear_parts, encode_resumable


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default="data/teacher_index")
    args = parser.parse_args(argv)
    params = load_section("teacher", args.params)
    encoder = load_section("model", args.params).passage_encoder
    check_params_file(args.params)

    passages = load_split(args.prepared, args.split).passages
    parts = Path(args.out).with_name(f".{Path(args.out).name}.parts")
    with atomic_path(args.out) as out:
        out.mkdir()
        manifest = {"encoder": encoder, "split": args.split, "passages": len(passages)}
        if encoder == "teacher":
            teacher = load_teacher(check_teacher_dir(teacher_dir(params.model)), select_device(params.device),
                                   params.max_seq_length)
            space = teacher_identity(params.model, teacher)
            start = time.perf_counter()
            vectors = encode_resumable(teacher, space, passages["pid"].to_numpy(), passages["text"].tolist(),
                                       params.batch_size, parts)
            seconds = time.perf_counter() - start
            save_npy(vectors, out / "embeddings.npy")
            pd.DataFrame({"pid": passages["pid"].astype(str)}).to_parquet(out / "pids.parquet", index=False)
            manifest.update(space=space, dim=int(vectors.shape[1]), max_seq_length=params.max_seq_length)
            print(f"teacher: {len(passages)} {args.split} passages in {seconds:.0f} s "
                  f"({len(passages) / max(seconds, 1e-9):.0f} passages/s)")
        else:
            print("model.passage_encoder: student: the student embeds the passages (embed_corpus)")
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    clear_parts(parts)


if __name__ == "__main__":
    main()
