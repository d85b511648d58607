"""Choose student mode's passage phase (`train.passage_lr`, `train.passage_epochs`,
`train.passage_table`, `train.passage_contrast`) on the validation queries, never on test.

Trains the phases before the passage phase once, exactly as the train stage does
(`stages.train.setup` on params.yaml and the pipeline's data), saves that model to
--start (reused while the params those phases read and the inputs are the same: a change
of the passage phase's own params does not retrain them), then runs the
passage phase from it for every word-table setting in --tables, learning rate in --lrs,
contrast weight in --contrasts and seed in --seeds, each
`train.passage_epochs` epochs, and prints each run's validation nDCG@10 per epoch. The train
stage keeps the best epoch of all phases, so a run's worth is the best epoch it reaches
(the phases before it included); the setting with the best mean over the seeds is the
project's rule of *Choices made on validation*. Only the passage phase's seed varies, so
the spread is its own, not a whole run's.

    dvc exp apply <a student-mode run>   # or dvc repro train with model.passage_encoder: student
    python benchmarks/tune_passage_phase.py [--tables freeze train] [--lrs 0.002 0.001 0.0005 0.0002] \
        [--contrasts 0.1 1 3] [--seeds 42 7]
"""

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from stages.train import setup, train_fingerprint
from twotower.errors import TwoTowerError, exit_on_error
from twotower.files import write_json
from twotower.model.passage_regression import regress_passages
from twotower.model.phases import PASSAGE_PHASE, fit_phases
from twotower.model.training import SELECT_ON
from twotower.param_checks import PASSAGE_TABLES
from twotower.params import TrainParams

# What only the passage phase reads; the phases before it are the same model without them.
PASSAGE_PHASE_PARAMS = ("passage_epochs", "passage_lr", "passage_table", "passage_contrast")


def earlier_phases_fingerprint(args, run) -> str:
    """The run's fingerprint with the passage phase's own params at their defaults: the
    earlier phases never read them, so a saved start stays valid when only those change."""
    defaults = TrainParams()
    earlier = replace(run.train_params, **{name: getattr(defaults, name) for name in PASSAGE_PHASE_PARAMS})
    return train_fingerprint(args, run.model_params, earlier, run.tokenize_params, run.phases, run.teacher)


def before_passage_phase(run, start: Path, checkpoints: Path, fingerprint: str) -> float:
    """Trains (or loads from `start`, when it was saved under `fingerprint`) the phases
    before the passage phase; returns their best validation figure."""
    if start.is_file():
        saved = torch.load(start, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fingerprint:
            run.model.load_state_dict(saved["state"])
            print(f"phases before the passage phase: loaded from {start} ({SELECT_ON} {saved['best']:.4f})")
            return saved["best"]
        print(f"note: {start} was saved for other params or inputs: training the earlier phases again")
    best = fit_phases(run.model, run.phases[:-1], run.val_split, run.loss, run.device,
                      lambda epoch, figures: print(f"epoch {epoch}: {SELECT_ON} {figures[SELECT_ON]:.4f}"),
                      checkpoints, run.fingerprint)
    start.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": run.model.state_dict(), "best": best[SELECT_ON], "fingerprint": fingerprint}, start)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return best[SELECT_ON]


@exit_on_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--tokens", default="data/tokens")
    parser.add_argument("--triplets", default="data/triplets")
    parser.add_argument("--teacher", default="data/teacher")
    parser.add_argument("--checkpoints", default="models/tune/checkpoints")
    parser.add_argument("--start", type=Path, default=Path("models/tune/before_passage_phase.pt"))
    parser.add_argument("--tables", nargs="+", choices=PASSAGE_TABLES, default=["freeze"],
                        help="train.passage_table settings to compare")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.002, 0.001, 0.0005, 0.0002])
    parser.add_argument("--contrasts", type=float, nargs="+", default=None,
                        help="train.passage_contrast settings to compare (default: the params' own)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--out", type=Path, default=None, help="write every curve here as JSON")
    args = parser.parse_args(argv)

    run = setup(args)
    if not run.phases or run.phases[-1].name != PASSAGE_PHASE:
        raise TwoTowerError("no passage phase to tune: set model.passage_encoder: student and train.passage_epochs > 0")
    before = before_passage_phase(run, args.start, Path(args.checkpoints), earlier_phases_fingerprint(args, run))
    start_state = {k: v.clone() for k, v in run.model.state_dict().items()}
    phase = run.phases[-1]
    results = []
    contrasts = args.contrasts or [phase.params.passage_contrast]
    settings = [(table, lr, contrast) for table in args.tables for lr in args.lrs for contrast in contrasts]
    for table, lr, contrast in settings:
        for seed in args.seeds:
            run.model.load_state_dict(start_state)
            curve = []
            regress_passages(run.model, phase.targets, run.val_split,
                             replace(phase.params, lr=lr, seed=seed, passage_table=table, passage_contrast=contrast),
                             run.device, on_epoch=lambda epoch, figures: curve.append(figures[SELECT_ON]))
            results.append({"table": table, "lr": lr, "contrast": contrast, "seed": seed, "curve": curve})
            print(f"table {table} lr {lr:g} contrast {contrast:g} seed {seed}: "
                  + " ".join(f"{value:.4f}" for value in curve), flush=True)

    print(f"\nbefore the passage phase: {SELECT_ON} {before:.4f}")
    print(f"{'table':>6} {'lr':>8} {'contrast':>8} {'mean best':>9} "
          + " ".join(f"{'seed ' + str(s):>17}" for s in args.seeds))
    for table, lr, contrast in settings:
        runs = [r for r in results if (r["table"], r["lr"], r["contrast"]) == (table, lr, contrast)]
        curves = [[before, *r["curve"]] for r in runs]  # epoch 0: the earlier phases' best, kept if none beats it
        bests = [max(curve) for curve in curves]
        cells = " ".join(f"{b:.4f} (epoch {curve.index(b):>2})" for b, curve in zip(bests, curves))
        print(f"{table:>6} {lr:8g} {contrast:8g} {sum(bests) / len(bests):9.4f} {cells}")
    if args.out:
        write_json({"before": before, "runs": results}, args.out)
        print(f"curves: {args.out}")


if __name__ == "__main__":
    main()
