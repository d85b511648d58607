"""Stage train: fit the two-tower model, pick the epoch by validation nDCG@10.

Writes models/model.pt (weights + model config + vocabulary or WordPiece tokenizer:
loadable without params.yaml), metrics/train.json (the best epoch's figures) and
plots/train/ (per-epoch curves by dvclive). Runs as is under
`torchrun --nproc_per_node N -m stages.train ...` (DistributedDataParallel; the first
process writes the outputs).

The phases (pseudo-query pairs, real queries, labelled triplets, passage regression) and their order are
`twotower.model.phases`'s; the labelled phase mixes the labels with the teacher
(`train.distill_weight`, `twotower.model.losses.build_loss`).
With `model.passage_encoder: teacher` the model has no passage tower: passages are the
teacher's vectors, in training, validation and search.
The training state is checkpointed after every epoch under --checkpoints (not a DVC
output); rerunning after a crash or kill continues from there (`train.resume`), and the
checkpoints are removed once the model is saved.
"""

import argparse
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live

from twotower.devices import select_device
from twotower.distill.encoded import teacher_manifest
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import atomic_path, write_json
from twotower.model import distributed
from twotower.model.losses import build_loss, needs_projection
from twotower.model.phases import fit_phases, plan_phases, run_fingerprint
from twotower.model.tokenized import load_tokenized
from twotower.model.towers import ModelConfig, TwoTower, save_model
from twotower.model.training import SELECT_ON, seed_everything
from twotower.param_rules import check_params_file
from twotower.params import load_section


@dataclass
class TrainRun:
    """What `setup` builds from params and the input folders: everything the phases need."""

    model: TwoTower
    phases: list
    val_split: object
    loss: object
    device: object
    fingerprint: str
    vocab: list
    tokenizer_json: str | None
    model_params: object
    train_params: object
    tokenize_params: object
    teacher_params: object
    teacher: str | None  # the teacher folder the phases read, None when they need none


def train_fingerprint(args, model_params, train_params, tokenize_params, phases, teacher) -> str:
    """What a checkpoint of the run must match (`twotower.model.phases.run_fingerprint`);
    `benchmarks/tune_passage_phase.py` keys its saved start by it too, with the passage
    phase's own params set aside."""
    return run_fingerprint([asdict(model_params), asdict(train_params), asdict(tokenize_params)],
                           args.tokens, args.triplets, phases, teacher)


def setup(args) -> TrainRun:
    """The model, its phases and validation from `args` (the stage's command line); also
    used by `benchmarks/tune_passage_phase.py`, so a tuning run starts where the stage does."""
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
    regress = train_params.passage_epochs > 0 and model_params.passage_encoder == "student"
    if regress and model_params.shared_encoder:
        print("note: train.passage_epochs skipped: with model.shared_encoder the passage tower is the query tower")
        regress = False
    teacher_losses = (train_params.distill_weight > 0 or train_params.query_epochs > 0 or train_params.ict_epochs > 0
                      or regress)
    teacher = args.teacher if teacher_losses or model_params.passage_encoder == "teacher" else None
    manifest = teacher_manifest(teacher) if teacher else {}
    train_split = load_tokenized(args.prepared, args.tokens, "train", teacher)
    teacher_dim = manifest.get("dim", 0) if needs_projection(model_params, teacher_losses) or regress else 0
    config = ModelConfig.from_params(model_params, vocab_size=len(vocab), embed_dim=embeddings.shape[1],
                                     teacher_dim=teacher_dim, teacher=manifest.get("space", "") if teacher_dim else "")
    model = TwoTower(config, embeddings, term_weights)
    loss = build_loss(model_params, train_params.distill_weight)
    val_split = load_tokenized(args.prepared, args.tokens, "validation",
                               teacher if model_params.passage_encoder == "teacher" else None)
    triplets = pd.read_parquet(Path(args.triplets, "train.parquet"))
    print(f"device {device}; {len(triplets)} training triplets; "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} trainable parameters")

    phases = plan_phases(train_params, train_split, triplets, args.prepared, args.tokens, args.triplets,
                         teacher, args.teacher, bm25_params, passage_tower=regress, held_out_pids=val_split.pids)
    fingerprint = train_fingerprint(args, model_params, train_params, tokenize_params, phases, teacher)
    return TrainRun(model, phases, val_split, loss, device, fingerprint, vocab, tokenizer_json, model_params,
                    train_params, tokenize_params, teacher_params, teacher)


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
    run = setup(args)
    checkpoints = Path(args.checkpoints)

    def fit(on_epoch):
        return fit_phases(run.model, run.phases, run.val_split, run.loss, run.device, on_epoch, checkpoints,
                          run.fingerprint)

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
    teacher = run.teacher_params
    save_model(run.model, run.vocab, run.tokenize_params.max_len_query, run.tokenize_params.max_len_passage,
               args.model, tokenizer_json=run.tokenizer_json,
               teacher=({"model": teacher.model, "max_seq_length": teacher.max_seq_length}
                        if run.model_params.passage_encoder == "teacher" else None))
    write_json({"best_epoch": best.pop("epoch"), **{f"val/{k}" if k != "loss" else "train/loss": round(v, 6)
                                                    for k, v in best.items()}}, args.metrics)
    shutil.rmtree(checkpoints, ignore_errors=True)
    distributed.cleanup()
    print(f"kept epoch with validation {SELECT_ON} {best[SELECT_ON]:.4f}")


if __name__ == "__main__":
    main()
