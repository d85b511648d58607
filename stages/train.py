"""Stage train: fit the two-tower model on train triplets, pick the epoch by validation MRR@10.

Writes models/model.pt (weights + model config + vocabulary: loadable without params.yaml),
metrics/train.json (the best epoch's figures) and plots/train/ (per-epoch curves by dvclive).
Runs as is under `torchrun --nproc_per_node N -m stages.train ...` (DistributedDataParallel;
the first process writes the outputs).
With `train.ict_epochs > 0` the model is first trained on the inverse-cloze split that
subsample made from unlabelled passages; those epochs come first in the curves. Without
such a split (subsample made no pairs) that phase is skipped, with a note.
With `train.distill_weight > 0` the teacher stage's vectors (--teacher) join the batches and
the loss mixes the labels with the teacher's scores (`twotower.losses.build_loss`); the
pseudo-query pairs then learn from the teacher alone.
The training state is checkpointed after every epoch under --checkpoints (not a DVC
output); rerunning after a crash or kill continues from there (`train.resume`), and the
checkpoints are removed once the model is saved.
"""

import argparse
import hashlib
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live

from twotower import distributed
from twotower.devices import select_device
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import atomic_path, write_json
from twotower.losses import build_loss, needs_projection
from twotower.model import ModelConfig, TwoTower, save_model
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.tokenized import load_tokenized
from twotower.training import seed_everything, train


def inputs_fingerprint(param_sections, files) -> str:
    """What a checkpoint must match to be resumed: the params and the input files' bytes."""
    digest = hashlib.sha256(json.dumps(param_sections, sort_keys=True).encode())
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def ict_split(prepared, tokens, teacher):
    """The inverse-cloze split to pretrain on, or None, with a note, when subsample made no
    pairs (no passage it sampled had two sentences; older runs left an empty split)."""
    ict = load_tokenized(prepared, tokens, "ict", teacher) if Path(prepared, "ict").is_dir() else None
    if ict is None or len(ict.qids) == 0:
        print(f"note: no inverse-cloze pairs in {Path(prepared, 'ict')}: skipping the train.ict_epochs pretraining")
        return None
    return ict


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--triplets", default="data/triplets")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--model", default="models/model.pt")
    parser.add_argument("--metrics", default="metrics/train.json")
    parser.add_argument("--plots", default="plots/train")
    parser.add_argument("--checkpoints", default="models/checkpoints")
    args = parser.parse_args(argv)
    model_params = load_section("model", args.params)
    train_params = load_section("train", args.params)
    tokenize_params = load_section("tokenize", args.params)
    check_params_file(args.params)

    seed_everything(train_params.seed)
    device = distributed.setup(select_device(train_params.device))
    try:
        vocab = Path(args.tokens, "vocab.txt").read_text().splitlines()
        embeddings = torch.from_numpy(np.load(Path(args.tokens, "embeddings.npy")))
    except FileNotFoundError as exc:
        raise TwoTowerError(f"tokens missing: {exc.filename} (run the tokenize stage)") from None
    teacher = args.teacher if train_params.distill_weight > 0 else None
    train_split = load_tokenized(args.prepared, args.tokens, "train", teacher)
    teacher_dim = (train_split.teacher_queries.shape[1]
                   if needs_projection(model_params, train_params.distill_weight) else 0)
    config = ModelConfig.from_params(model_params, vocab_size=len(vocab), embed_dim=embeddings.shape[1],
                                     teacher_dim=teacher_dim)
    idf = torch.from_numpy(np.load(Path(args.tokens, "idf.npy")))
    model = TwoTower(config, embeddings, idf)
    loss = build_loss(model_params, train_params.distill_weight)
    val_split = load_tokenized(args.prepared, args.tokens, "validation")
    ict = ict_split(args.prepared, args.tokens, teacher) if train_params.ict_epochs else None
    triplets = pd.read_parquet(Path(args.triplets, "train.parquet"))
    print(f"device {device}; {len(triplets)} training triplets; "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} trainable parameters")

    fingerprint = inputs_fingerprint(
        [asdict(model_params), asdict(train_params), asdict(tokenize_params)],
        [Path(args.tokens, "vocab.txt"), Path(args.tokens, "embeddings.npy"), Path(args.triplets, "train.parquet"),
         *([Path(args.triplets, "ict.parquet")] if ict is not None else []),
         *([Path(teacher, "train", f"{table}.npy") for table in ("queries", "passages")] if teacher else [])])
    checkpoints = Path(args.checkpoints)

    def fit(on_epoch):
        if ict is not None:
            print(f"pretraining on inverse-cloze pairs for {train_params.ict_epochs} epoch(s)")
            train(model, ict,
                  pd.read_parquet(Path(args.triplets, "ict.parquet")), val_split,
                  replace(train_params, epochs=train_params.ict_epochs, early_stopping=0), loss, device,
                  on_epoch=on_epoch, checkpoint=checkpoints / "ict.pt", fingerprint=fingerprint)
        return train(model, train_split, triplets, val_split, train_params, loss, device, on_epoch=on_epoch,
                     checkpoint=checkpoints / "train.pt", fingerprint=fingerprint)

    if not distributed.is_main():
        fit(on_epoch=None)
        distributed.cleanup()
        return
    with atomic_path(args.plots) as curves:
        live_dir = curves.parent / "dvclive"
        with Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
            def log_epoch(epoch, figures):
                for name, value in figures.items():
                    live.log_metric(("train/" if name == "loss" else "val/") + name, value)
                live.next_step()
                print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))

            best = fit(log_epoch)
        shutil.move(live_dir / "plots" / "metrics", curves)
    save_model(model, vocab, tokenize_params.max_len_query, tokenize_params.max_len_passage, args.model)
    write_json({"best_epoch": best.pop("epoch"), **{f"val/{k}" if k != "loss" else "train/loss": round(v, 6)
                                                    for k, v in best.items()}}, args.metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    distributed.cleanup()
    print(f"kept epoch with validation MRR@10 {best['MRR@10']:.4f}")


if __name__ == "__main__":
    main()
