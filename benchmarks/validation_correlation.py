"""Does validation predict test? Run a sweep of configurations and correlate.

Runs `dvc exp run -n NAME -S ...` for each configuration below, one after another in this
workspace (params.yaml is reset to the committed one before each), reads the selected
epoch's validation nDCG@10 (metrics/train.json), the same model's validation nDCG@10 with
the `feedback` the test's search uses (training validates without it), and the test
nDCG@10 (metrics/eval.json), and prints them per configuration with Spearman's rank
correlation of each validation figure with test. Model
selection is only worth doing on a validation whose ranking of configurations is the
test's; the test queries choose nothing here, they only check the validation.

    python benchmarks/validation_correlation.py [--out benchmarks/results/validation_correlation.json]

Takes ~4-7 min a configuration on 2 cores (teacher outputs come from DVC's run cache).
Afterwards the workspace is the committed one again (`git checkout` + `dvc checkout`); every
run stays in `dvc exp show`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from twotower.model.tokenized import load_tokenized
from twotower.model.towers import load_model
from twotower.model.training import validate
from twotower.params import load_section

# Each a change from the default of 1 Dec 2026 (train.lr 0.0005, train.distill_weight 0.9), from
# which every sweep in benchmarks/results/validation_correlation*.json ran. Today's default is
# that sweep's `lr-0.002` (chosen on its validation), so its `default` is the previous one.
BASE = ["train.lr=0.0005"]  # under each configuration, unless it sets the same key
CONFIGS = {
    "default": [],
    "query-epochs-3": ["train.query_epochs=3"],
    "query-epochs-10": ["train.query_epochs=10"],
    "no-labelled": ["train.epochs=0"],
    "no-real-queries": ["train.query_epochs=0"],
    "gru": ["model.rnn_type=GRU"],
    "lr-0.002": ["train.lr=0.002"],
    "lr-0.005": ["train.lr=0.005"],
    "batch-256": ["train.batch_size=256"],
    "distill-0.5": ["train.distill_weight=0.5"],
    "bm25-candidates": ["train.candidates=bm25"],
    "vector-weight-1": ["model.vector_weight=1"],
    "seed-7": ["train.seed=7"],
    "gru-seed-7": ["model.rnn_type=GRU", "train.seed=7"],
    "bm25-candidates-seed-7": ["train.candidates=bm25", "train.seed=7"],
    "distill-0.5-seed-7": ["train.distill_weight=0.5", "train.seed=7"],
    "lr-0.002-seed-7": ["train.lr=0.002", "train.seed=7"],
    "no-labelled-seed-7": ["train.epochs=0", "train.seed=7"],
    # Wider: runs that train less or smaller, as a sweep over training length and size
    # would (the runs above differ from the default by less than test can resolve).
    "query-epochs-1": ["train.query_epochs=1"],
    "query-epochs-2": ["train.query_epochs=2"],
    "lr-0.0001": ["train.lr=0.0001"],
    "distill-0": ["train.distill_weight=0"],
    "hidden-16": ["model.hidden_dim=16"],
}


def with_base(overrides: list[str]) -> list[str]:
    """BASE's settings, less those `overrides` sets itself, then `overrides`."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [b for b in BASE if b.split("=", 1)[0] not in keys] + overrides


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    return float(spearmanr(x, y).statistic)


def validation_with_feedback(prepared="data/prepared", tokens="data/tokens", teacher="data/teacher",
                             model_path="models/model.pt", params="params.yaml") -> float:
    """The kept model's validation nDCG@10 under the search the evaluate stage runs."""
    model, _ = load_model(model_path)
    split = load_tokenized(prepared, tokens, "validation", teacher if model.teacher_passages else None)
    train = load_section("train", params)
    figures = validate(model, split, train.val_depth, train.val_batch_size, "cpu",
                       feedback=load_section("feedback", params))
    return figures["nDCG@10"]


def run(cmd) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/validation_correlation.json")
    parser.add_argument("--only", nargs="*", help="run these configurations only")
    args = parser.parse_args(argv)
    dvc = str(Path(sys.executable).with_name("dvc"))
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    try:
        for name, overrides in CONFIGS.items():
            if (args.only and name not in args.only) or name in results:
                continue
            run(["git", "checkout", "--", "params.yaml"])
            run([dvc, "exp", "run", "-n", f"corr-{name}", *(x for o in with_base(overrides) for x in ("-S", o))])
            val = json.loads(Path("metrics/train.json").read_text())["val/nDCG@10"]
            val_feedback = validation_with_feedback()
            test = json.loads(Path("metrics/eval.json").read_text())["nDCG@10"]
            results[name] = {"overrides": overrides, "val/nDCG@10": val, "val_feedback/nDCG@10": val_feedback,
                             "test/nDCG@10": test}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
            print(f"{name}: validation nDCG@10 {val:.4f} ({val_feedback:.4f} with feedback), "
                  f"test nDCG@10 {test:.4f}", flush=True)
    finally:
        run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots"])
        run([dvc, "checkout", "--quiet"])
    report(results)


def report(results: dict) -> None:
    names = list(results)
    val = [results[n]["val/nDCG@10"] for n in names]
    # Results from before the feedback column have none: nan, and no correlation for it.
    val_feedback = [results[n].get("val_feedback/nDCG@10", float("nan")) for n in names]
    test = [results[n]["test/nDCG@10"] for n in names]
    print(f"\n{'configuration':<24} {'val nDCG@10':>11} {'with feedback':>13} {'test nDCG@10':>12}")
    for n, v, f, t in sorted(zip(names, val, val_feedback, test), key=lambda row: -row[1]):
        print(f"{n:<24} {v:11.4f} {f:13.4f} {t:12.4f}")
    if len(names) >= 3:
        print(f"\nSpearman correlation with test nDCG@10 over {len(names)} configurations: "
              f"validation {spearman(val, test):.3f}", end="")
        print("" if np.isnan(val_feedback).any() else f", validation with feedback {spearman(val_feedback, test):.3f}")


if __name__ == "__main__":
    main()
