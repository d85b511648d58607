"""Stage train: fit the two-tower model, pick the epoch by validation nDCG@10.

Writes models/model.pt (weights + model config + vocabulary or WordPiece tokenizer:
loadable without params.yaml), metrics/train.json (the best epoch's figures) and
plots/train/ (per-epoch curves by dvclive). Runs as is under
`torchrun --nproc_per_node N -m stages.train ...` (DistributedDataParallel; the first
process writes the outputs).

Up to three phases, each validated every epoch, in this order (their epochs follow each
other in the curves; the best epoch of all of them is kept):
1. `train.ict_epochs` on the inverse-cloze pairs subsample made from unlabelled passages;
2. `train.query_epochs` on unlabelled real queries: the query tower learns the teacher's
   vector of each query and the teacher's scores over its candidate passages
   (`train.candidates` mines them, `twotower.distill.candidates`), teacher losses only;
3. `train.epochs` on the labelled train triplets, the loss mixing the labels with the
   teacher (`train.distill_weight`, `twotower.model.losses.build_loss`).
With `model.passage_encoder: teacher` the model has no passage tower: passages are the
teacher's vectors, in training, validation and search.
The training state is checkpointed after every epoch under --checkpoints (not a DVC
output); rerunning after a crash or kill continues from there (`train.resume`), and the
checkpoints are removed once the model is saved.
"""

import argparse
import copy
import hashlib
import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live

from twotower.model import distributed
from twotower.distill.candidates import bm25_candidates, candidate_triplets, teacher_candidates
from twotower.devices import select_device
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import atomic_path, write_json
from twotower.model.losses import build_loss, needs_projection
from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.param_rules import check_params_file
from twotower.params import load_section
from twotower.data.prepared import load_split
from twotower.model.tokenized import load_tokenized
from twotower.model.training import SELECT_ON, seed_everything, train


def inputs_fingerprint(param_sections, files) -> str:
    """What a checkpoint must match to be resumed: the params and the input files' bytes."""
    digest = hashlib.sha256(json.dumps(param_sections, sort_keys=True).encode())
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def teacher_manifest(folder) -> dict:
    """The teacher stage's manifest.json (its dimension and space), or one line saying to run it."""
    path = Path(folder, "manifest.json")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TwoTowerError(f"teacher vectors missing: {path} (run `dvc repro teacher`; training uses the "
                            "teacher's vectors)") from None


def ict_split(prepared, tokens, teacher):
    """The inverse-cloze split to pretrain on, or None, with a note, when subsample made no
    pairs (no passage it sampled had two sentences; older runs left an empty split)."""
    ict = load_tokenized(prepared, tokens, "ict", teacher) if Path(prepared, "ict").is_dir() else None
    if ict is None or len(ict.qids) == 0:
        print(f"note: no inverse-cloze pairs in {Path(prepared, 'ict')}: skipping the train.ict_epochs pretraining")
        return None
    return ict


def real_query_triplets(split, prepared, params, bm25_params) -> pd.DataFrame:
    """Each real query's mined candidate pair (`twotower.distill.candidates`)."""
    if params.candidates == "bm25":
        tables = load_split(prepared, "real")
        ranked = bm25_candidates(tables.queries, tables.passages, bm25_params, params.candidate_depth)
    else:
        ranked = teacher_candidates(split.teacher_queries, split.teacher_passages, params.candidate_depth)
    return candidate_triplets(split.qids, split.pids, ranked, params.seed)


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
    teacher_params = load_section("teacher", args.params)
    bm25_params = load_section("bm25", args.params) if train_params.candidates == "bm25" else None
    check_params_file(args.params)

    seed_everything(train_params.seed)
    device = distributed.setup(select_device(train_params.device))
    try:
        vocab = Path(args.tokens, "vocab.txt").read_text().splitlines()
        embeddings = torch.from_numpy(np.load(Path(args.tokens, "embeddings.npy")))
        term_weights = torch.from_numpy(np.load(Path(args.tokens, "term_weights.npy")))
    except FileNotFoundError as exc:
        raise TwoTowerError(f"tokens missing: {exc.filename} (run the tokenize stage)") from None
    tokenizer_path = Path(args.tokens, "tokenizer.json")
    tokenizer_json = tokenizer_path.read_text() if tokenizer_path.is_file() else None
    uses_teacher = (train_params.distill_weight > 0 or train_params.query_epochs > 0 or train_params.ict_epochs > 0
                    or model_params.passage_encoder == "teacher")
    teacher = args.teacher if uses_teacher else None
    manifest = teacher_manifest(teacher) if teacher else {}
    train_split = load_tokenized(args.prepared, args.tokens, "train", teacher)
    teacher_losses = train_params.distill_weight > 0 or train_params.query_epochs > 0 or train_params.ict_epochs > 0
    teacher_dim = manifest.get("dim", 0) if needs_projection(model_params, teacher_losses) else 0
    config = ModelConfig.from_params(model_params, vocab_size=len(vocab), embed_dim=embeddings.shape[1],
                                     teacher_dim=teacher_dim, teacher=manifest.get("space", "") if teacher_dim else "")
    model = TwoTower(config, embeddings, term_weights)
    loss = build_loss(model_params, train_params.distill_weight)
    val_split = load_tokenized(args.prepared, args.tokens, "validation",
                               teacher if model_params.passage_encoder == "teacher" else None)
    triplets = pd.read_parquet(Path(args.triplets, "train.parquet"))
    print(f"device {device}; {len(triplets)} training triplets; "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} trainable parameters")

    phases = []  # (name, split, triplets, params)
    ict = ict_split(args.prepared, args.tokens, teacher) if train_params.ict_epochs else None
    if ict is not None:
        phases.append(("inverse-cloze pairs", ict, pd.read_parquet(Path(args.triplets, "ict.parquet")),
                       replace(train_params, epochs=train_params.ict_epochs, early_stopping=0)))
    if train_params.query_epochs:
        if Path(args.prepared, "real").is_dir():
            real = load_tokenized(args.prepared, args.tokens, "real", args.teacher)
            phases.append(("real queries", real, real_query_triplets(real, args.prepared, train_params, bm25_params),
                           replace(train_params, epochs=train_params.query_epochs, early_stopping=0)))
        else:
            print("note: train.query_epochs > 0 but there is no real split (no queries.parquet, or "
                  "data.real_queries: 0): phase skipped")
    if train_params.epochs:
        phases.append(("labelled triplets", train_split, triplets, train_params))

    fingerprint = inputs_fingerprint(
        [asdict(model_params), asdict(train_params), asdict(tokenize_params)],
        [Path(args.tokens, "vocab.txt"), Path(args.tokens, "embeddings.npy"), Path(args.triplets, "train.parquet"),
         *([Path(args.triplets, "ict.parquet")] if any(p[0].startswith("inverse") for p in phases) else []),
         *([Path(teacher, "manifest.json")] if teacher else [])])
    checkpoints = Path(args.checkpoints)

    def fit(on_epoch):
        """Each phase in turn from the previous one's best weights; returns the best epoch
        of all (numbered across phases) and leaves its weights in the model."""
        best, best_state, offset = None, None, 0
        for number, (name, split, phase_triplets, phase_params) in enumerate(phases):
            print(f"phase {number + 1}: {name}, {phase_params.epochs} epoch(s), {len(phase_triplets)} triplets")

            def shifted(epoch, figures, offset=offset):
                if on_epoch:
                    on_epoch(offset + epoch, figures)

            found = train(model, split, phase_triplets, val_split, phase_params, loss, device, on_epoch=shifted,
                          checkpoint=checkpoints / f"phase{number + 1}.pt", fingerprint=fingerprint)
            if best is None or found[SELECT_ON] > best[SELECT_ON]:
                best = {**found, "epoch": offset + found["epoch"]}
                best_state = copy.deepcopy(model.state_dict())
            offset += phase_params.epochs
        model.load_state_dict(best_state)
        return best

    if not phases:
        raise TwoTowerError("nothing to train: train.epochs, train.query_epochs and train.ict_epochs are all 0")
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
    save_model(model, vocab, tokenize_params.max_len_query, tokenize_params.max_len_passage, args.model,
               tokenizer_json=tokenizer_json,
               teacher=({"model": teacher_params.model, "max_seq_length": teacher_params.max_seq_length}
                        if model_params.passage_encoder == "teacher" else None))
    write_json({"best_epoch": best.pop("epoch"), **{f"val/{k}" if k != "loss" else "train/loss": round(v, 6)
                                                    for k, v in best.items()}}, args.metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    distributed.cleanup()
    print(f"kept epoch with validation {SELECT_ON} {best[SELECT_ON]:.4f}")


if __name__ == "__main__":
    main()
